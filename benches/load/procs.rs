//! The processes a load run drives: the release `payrail` binary, a throwaway PostgreSQL 15
//! cluster, the bench's own stub server (no-op handler + fake gateway), and what `/proc` says
//! about their CPU time and memory.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SEC: f64 = 100.0;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
pub const ADMIN_TOKEN: &str = "load-admin-token";

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `target/release/payrail` next to this bench executable (`target/release/deps/load-…`);
/// built with cargo if missing.
pub fn payrail_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .context("bench executable has no grandparent directory")?;
    let binary = release.join("payrail");
    if !binary.exists() {
        eprintln!("load: {} missing, building it", binary.display());
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "payrail"])
            .status()?;
        if !status.success() || !binary.exists() {
            bail!("cargo build --release --bin payrail failed");
        }
    }
    Ok(binary)
}

/// CPU seconds (user + system) of one process, all its threads.
pub fn cpu_secs(pid: u32) -> f64 {
    stat_fields(pid).map_or(0.0, |f| (f.utime + f.stime) as f64 / TICKS_PER_SEC)
}

/// CPU seconds of a process, its reaped children and its live children (PostgreSQL's
/// postmaster and its backends).
pub fn tree_cpu_secs(root: u32) -> f64 {
    let mut ticks = stat_fields(root).map_or(0, |f| f.utime + f.stime + f.cutime + f.cstime);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(f) = stat_fields(pid) {
                if f.ppid == root {
                    ticks += f.utime + f.stime;
                }
            }
        }
    }
    ticks as f64 / TICKS_PER_SEC
}

/// Resident set size in MiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&status, "VmRSS:")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The value of the line starting with `key` in a `status` file, trimmed.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// What one kind of thread of a process used: its threads' CPU and context switches.
#[derive(Clone, Copy, Default)]
pub struct ThreadUse {
    pub cpu_s: f64,
    pub voluntary: u64,
    pub involuntary: u64,
}

impl ThreadUse {
    /// What was used from `before` to `self`.
    fn since(&self, before: &ThreadUse) -> ThreadUse {
        ThreadUse {
            cpu_s: (self.cpu_s - before.cpu_s).max(0.0),
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }
}

/// A process's threads grouped by name, a trailing `-<number>` left out (the engine names its
/// `audit-writer-0`, `-1`, `actors-0`, …, `http-worker`), with what each group has used.
pub fn thread_use(pid: u32) -> BTreeMap<String, ThreadUse> {
    let mut groups: BTreeMap<String, ThreadUse> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return groups;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let name = comm.trim_end();
        let group = match name.rsplit_once('-') {
            Some((kind, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => kind,
            _ => name,
        };
        let cpu = stat_at(&dir.join("stat")).map_or(0, |f| f.utime + f.stime);
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let switches = |key| {
            status_field(&status, key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let used = groups.entry(group.to_owned()).or_default();
        used.cpu_s += cpu as f64 / TICKS_PER_SEC;
        used.voluntary += switches("voluntary_ctxt_switches:");
        used.involuntary += switches("nonvoluntary_ctxt_switches:");
    }
    groups
}

/// What each group of threads used between two `thread_use` snapshots (a thread that ended
/// in between takes its counts with it).
pub fn thread_use_since(
    before: &BTreeMap<String, ThreadUse>,
    after: &BTreeMap<String, ThreadUse>,
) -> BTreeMap<String, ThreadUse> {
    after
        .iter()
        .map(|(group, used)| {
            let start = before.get(group).copied().unwrap_or_default();
            (group.clone(), used.since(&start))
        })
        .collect()
}

struct StatFields {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

fn stat_fields(pid: u32) -> Option<StatFields> {
    stat_at(Path::new(&format!("/proc/{pid}/stat")))
}

/// A process's or a thread's `stat` file, read.
fn stat_at(path: &Path) -> Option<StatFields> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14–17.
    Some(StatFields {
        ppid: f.get(1)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
        cutime: f.get(13)?.parse().ok()?,
        cstime: f.get(14)?.parse().ok()?,
    })
}

/// The `payrail serve` child process.
pub struct Engine {
    child: Child,
    pub url: String,
}

impl Engine {
    pub async fn start(
        binary: &Path,
        db_url: &str,
        gateway_url: &str,
        extra_env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Engine> {
        let port = free_port()?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env("PAYRAIL_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", db_url)
            .env("PAYRAIL_ADMIN_TOKEN", ADMIN_TOKEN)
            // The load generator is one client with a few keys: the per-key and per-tenant
            // limits are not what is measured here.
            .env("PAYRAIL_RATE_LIMIT_PER_SEC", "10000000")
            .env("PAYRAIL_RATE_LIMIT_BURST", "10000000")
            .env("PAYRAIL_TENANT_RATE_LIMIT_PER_SEC", "10000000")
            .env("PAYRAIL_TENANT_RATE_LIMIT_BURST", "10000000")
            .env("PAYRAIL_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?);
        if !gateway_url.is_empty() {
            command.env("PAYRAIL_GATEWAY_URL", gateway_url);
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command.spawn().context("starting payrail")?;
        let mut engine = Engine {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = engine.child.try_wait()? {
                bail!("payrail exited early ({status}); see {}", log.display());
            }
            if let Ok(r) = client.get(format!("{}/readyz", engine.url)).send().await {
                if r.status() == 200 {
                    return Ok(engine);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("payrail did not become ready; see {}", log.display())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (graceful drain), then wait.
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This bench executable re-run as `--role stub`: a no-op JSON handler and a fake gateway.
pub struct Stub {
    child: Child,
    pub url: String,
}

impl Stub {
    pub async fn start() -> anyhow::Result<Stub> {
        let port = free_port()?;
        let child = Command::new(std::env::current_exe()?)
            .args(["--role", "stub", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()?;
        let stub = Stub {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if client
                .post(format!("{}/noop", stub.url))
                .send()
                .await
                .is_ok()
            {
                return Ok(stub);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("stub server did not start")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PostgreSQL's current WAL position in bytes, read with `psql` (None if it can't be read).
pub fn wal_position(port: u16) -> Option<u64> {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args([
            "-d",
            "postgres",
            "-Atc",
            "SELECT pg_current_wal_lsn() - '0/0'",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.trim().parse::<f64>().ok().map(|bytes| bytes as u64)
}

/// A throwaway PostgreSQL 15 cluster (fsync on), as `scripts/test` starts one; removed on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

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

impl PgCluster {
    /// `server`: settings (`name=value`) the server starts with, after the defaults below.
    pub fn start(server: &[String]) -> anyhow::Result<PgCluster> {
        let dir = tempfile::Builder::new()
            .prefix("payrail-load-pg.")
            .tempdir()?;
        let path = dir.path().to_path_buf();
        Command::new("chmod").arg("0755").arg(&path).status()?;
        std::fs::create_dir(path.join("data"))?;
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
            .status()?;
        if !initdb.success() {
            bail!("initdb failed");
        }
        let port = free_port()?;
        let mut options = format!(
            "-h 127.0.0.1 -p {port} -k {} -c max_connections=300 -c fsync=on \
             -c synchronous_commit=on -c shared_buffers=256MB",
            path.display()
        );
        for setting in server {
            if !setting.contains('=') || setting.contains(char::is_whitespace) {
                bail!("--pg-server takes name=value without spaces: {setting}");
            }
            options.push_str(&format!(" -c {setting}"));
        }
        let started = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(path.join("data"))
            .arg("-l")
            .arg(path.join("postgres.log"))
            .args(["-w", "-o", &options, "start"])
            .stdout(Stdio::null())
            .status()?;
        if !started.success() {
            bail!(
                "pg_ctl start failed; see {}",
                path.join("postgres.log").display()
            );
        }
        Ok(PgCluster { dir, port })
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn postmaster_pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// A fresh, empty database in this cluster, with `settings` (`name=value`) as its defaults.
    pub fn create_database(&self, name: &str, settings: &[String]) -> anyhow::Result<String> {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut conn = diesel::PgConnection::establish(&self.url("postgres"))?;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
        for setting in settings {
            let (key, value) = setting
                .split_once('=')
                .context("--pg-set takes name=value")?;
            conn.batch_execute(&format!("ALTER DATABASE {name} SET {key} = '{value}'"))?;
        }
        Ok(self.url(name))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
