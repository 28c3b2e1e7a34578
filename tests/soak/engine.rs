//! The real `payrail serve` as a child process on one fixed port for the whole run, so the
//! gateway's webhooks reach every incarnation: started, killed with SIGKILL, started again.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "soak-admin-token";
/// Keys for the engine processes (base64 of 32 bytes; test values only).
const MASTER_KEY: &str = "dGVzdCBtYXN0ZXIga2V5IGZvciBwYXlyYWlsIHRlc3Q=";
const HASHING_KEY: &str = "dGVzdCBoYXNoaW5nIGtleSBmb3IgcGF5cmFpbCB0ZXM=";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// How to start the engine, and the incarnation running now.
pub struct Engine {
    port: u16,
    db_url: String,
    gateway_url: String,
    log: PathBuf,
    child: Option<Child>,
    pub url: String,
    pub starts: usize,
}

impl Engine {
    pub fn new(db_url: &str, gateway_url: &str, dir: &Path) -> Engine {
        let port = free_port();
        Engine {
            port,
            db_url: db_url.to_owned(),
            gateway_url: gateway_url.to_owned(),
            log: dir.join("engine.log"),
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            starts: 0,
        }
    }

    /// Starts an incarnation and waits until `/readyz` answers 200.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "engine already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_payrail"));
        // The engine refuses unknown `PAYRAIL_*` variables: the soak's own are not for it.
        for (name, _) in std::env::vars() {
            if name.starts_with("PAYRAIL_SOAK_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("serve")
            .env("PAYRAIL_MASTER_KEY", MASTER_KEY)
            .env("PAYRAIL_HASHING_KEY", HASHING_KEY)
            .env("PAYRAIL_BIND", format!("127.0.0.1:{}", self.port))
            .env("PAYRAIL_PUBLIC_URL", &self.url)
            .env("DATABASE_URL", &self.db_url)
            .env("PAYRAIL_GATEWAY_URL", &self.gateway_url)
            .env("PAYRAIL_ADMIN_TOKEN", ADMIN)
            .env("PAYRAIL_RECOVERY_INTERVAL_SECS", "1")
            .env("PAYRAIL_RECOVERY_MIN_AGE_SECS", "1")
            .env("PAYRAIL_RATE_LIMIT_PER_SEC", "1000000")
            .env("PAYRAIL_RATE_LIMIT_BURST", "1000000")
            .env("PAYRAIL_TENANT_RATE_LIMIT_PER_SEC", "1000000")
            .env("PAYRAIL_TENANT_RATE_LIMIT_BURST", "1000000")
            .env("PAYRAIL_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    panic!("payrail exited at start ({status}): {tail:#?}");
                }
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("payrail not ready; see {}", self.log.display());
    }

    /// SIGKILL and reap the running incarnation.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill9();
    }
}
