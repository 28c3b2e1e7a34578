//! PostgreSQL for the faults that need a cluster of their own: a throwaway cluster (as the load
//! benchmark starts one, run as the `postgres` user) that can be restarted `-m immediate` and
//! frozen with SIGSTOP, and a TCP proxy between the engine and it that can cut connections in
//! the middle of a commit.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &str) -> Command {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("payrail-soak-pg.")
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        Command::new("chmod")
            .arg("0755")
            .arg(&path)
            .status()
            .unwrap();
        std::fs::create_dir(path.join("data")).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&path)
            .stderr(Stdio::null())
            .status();
        let initdb = as_postgres(&format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(path.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(initdb.success(), "initdb failed");
        let cluster = PgCluster {
            dir,
            port: crate::engine::free_port(),
        };
        assert!(
            cluster.pg_ctl_start(),
            "pg_ctl start failed; see {}",
            cluster.log().display()
        );
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn pg_ctl_start(&self) -> bool {
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c max_connections=200 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-o", &options, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn pg_ctl_stop_immediate(&self) -> bool {
        as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `pg_ctl -m immediate stop`, down for `pause`, then started again (crash recovery).
    pub fn restart_immediate(&self, pause: std::time::Duration) {
        assert!(self.pg_ctl_stop_immediate(), "pg_ctl stop failed");
        std::thread::sleep(pause);
        assert!(
            self.pg_ctl_start(),
            "pg_ctl start failed; see {}",
            self.log().display()
        );
    }

    pub fn url(&self, port: u16, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{database}")
    }

    pub fn create_database(&self, name: &str) -> String {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut conn = diesel::PgConnection::establish(&self.url(self.port, "postgres")).unwrap();
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.url(self.port, name)
    }

    /// The postmaster and every process it forked.
    fn processes(&self) -> Vec<i32> {
        let Some(postmaster) = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if parent_of(pid) == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// SIGSTOP to the postmaster and its backends; answers what was stopped.
    pub fn freeze(&self) -> Vec<i32> {
        let pids = self.processes();
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
        }
        pids
    }

    pub fn thaw(pids: &[i32]) {
        for pid in pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
        }
    }
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        PgCluster::thaw(&self.processes());
        let _ = self.pg_ctl_stop_immediate();
    }
}

/// Forwards TCP to PostgreSQL; while armed, cuts a connection whose client sends a `COMMIT`,
/// either before the server sees it or just after (so the client never learns the outcome).
pub struct CommitCutter {
    pub port: u16,
    armed: Arc<AtomicBool>,
    pub cuts_before: Arc<AtomicU64>,
    pub cuts_after: Arc<AtomicU64>,
}

struct Shared {
    armed: Arc<AtomicBool>,
    rng: Mutex<StdRng>,
    before: Arc<AtomicU64>,
    after: Arc<AtomicU64>,
}

/// Share of the commits seen while armed that are cut.
const CUT_RATE: f64 = 0.5;

impl CommitCutter {
    pub async fn start(target_port: u16, seed: u64) -> CommitCutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cutter = CommitCutter {
            port,
            armed: Arc::new(AtomicBool::new(false)),
            cuts_before: Arc::new(AtomicU64::new(0)),
            cuts_after: Arc::new(AtomicU64::new(0)),
        };
        let shared = Arc::new(Shared {
            armed: cutter.armed.clone(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            before: cutter.cuts_before.clone(),
            after: cutter.cuts_after.clone(),
        });
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await {
                        relay(client, server, &shared).await;
                    }
                });
            }
        });
        cutter
    }

    pub fn arm(&self, on: bool) {
        self.armed.store(on, Ordering::SeqCst);
    }

    pub fn cuts(&self) -> u64 {
        self.cuts_before.load(Ordering::Relaxed) + self.cuts_after.load(Ordering::Relaxed)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Both directions of one connection; returning drops (closes) both sockets.
async fn relay(mut client: TcpStream, mut server: TcpStream, shared: &Shared) {
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            read = client.read(&mut up) => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                let chunk = &up[..n];
                let cut = shared.armed.load(Ordering::SeqCst)
                    && contains(chunk, b"COMMIT")
                    && shared.rng.lock().unwrap().random_bool(CUT_RATE);
                if cut {
                    let after = shared.rng.lock().unwrap().random_bool(0.5);
                    if after {
                        // The server gets the COMMIT; its answer never comes back.
                        let _ = server.write_all(chunk).await;
                        let _ = server.flush().await;
                        shared.after.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.before.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                if server.write_all(chunk).await.is_err() {
                    return;
                }
            }
            read = server.read(&mut down) => {
                let Ok(n) = read else { return };
                if n == 0 || client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
