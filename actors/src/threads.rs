//! Names for the engine's threads, so that `top -H`, `perf` and `/proc/<pid>/task/*/comm`
//! tell its audit writers, actor threads and HTTP workers apart (each actix arbiter is
//! otherwise `actix-rt|system`).

/// A new arbiter whose thread is named `name`.
pub(crate) fn arbiter(name: String) -> actix::Arbiter {
    let arbiter = actix::Arbiter::new();
    arbiter.spawn_fn(move || name_current(&name));
    arbiter
}

/// Names the calling thread `name`, cut to the kernel's 15 bytes. Best effort: a name that
/// cannot be set leaves the old one.
pub fn name_current(name: &str) {
    #[cfg(target_os = "linux")]
    {
        let mut bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
        bytes.push(0);
        if let Ok(name) = std::ffi::CStr::from_bytes_with_nul(&bytes) {
            if let Err(err) = nix::sys::prctl::set_name(name) {
                tracing::debug!(%err, "thread name not set");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_takes_its_name_cut_to_fifteen_bytes() {
        let comm = std::thread::spawn(|| {
            name_current("audit-writer-0123456789");
            let tid = nix::unistd::gettid();
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        })
        .join()
        .expect("thread");
        assert_eq!(comm.expect("comm").trim_end(), "audit-writer-01");
    }
}
