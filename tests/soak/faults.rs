//! The faults, each injected while the workload runs, then undone, and the engine checked to
//! come back by itself: kill -9 and restart; the gateway down, slow or answering 500;
//! PostgreSQL restarted `-m immediate`, frozen for 10 s, or cut off in the middle of commits;
//! SQLite's disk full.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;

use crate::engine::Engine;
use crate::gateway::{Gateway, Mode};
use crate::history::{Kind, Op};
use crate::pg::{CommitCutter, PgCluster};
use crate::workload::Workload;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Kill9,
    GatewayDown,
    GatewaySlow,
    GatewayErrors,
    PgRestart,
    PgFreeze,
    PgCommitCut,
    DiskFull,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill9",
            Fault::GatewayDown => "gateway_down",
            Fault::GatewaySlow => "gateway_slow",
            Fault::GatewayErrors => "gateway_500",
            Fault::PgRestart => "pg_restart_immediate",
            Fault::PgFreeze => "pg_freeze",
            Fault::PgCommitCut => "pg_commit_cut",
            Fault::DiskFull => "sqlite_disk_full",
        }
    }
}

/// Share of the other faults during which the engine is killed too.
const COMPOUND_KILL_RATE: f64 = 0.5;
/// How long PostgreSQL stays frozen.
const FREEZE: Duration = Duration::from_secs(10);
/// A request during a storage outage must be answered within this: the engine's deadline on
/// a query nobody answers, and some slack for a loaded machine.
const OUTAGE_ANSWER_BOUND: Duration =
    Duration::from_secs(payrail::store::QUERY_DEADLINE.as_secs() + 5);
/// The engine must serve writes again within this once a fault is undone.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A small tmpfs holding the SQLite database, so its disk can be filled.
pub struct Disk {
    pub dir: PathBuf,
    mounted: bool,
}

/// Room for the engine's WAL at its largest (it checkpoints itself past 64 MiB) and a long
/// run's database.
const TMPFS_SIZE: &str = "size=512m";

impl Disk {
    /// Mounts a tmpfs at `dir`; answers why not if `mount` fails (the fault is then skipped).
    pub fn mount(dir: PathBuf) -> Result<Disk, String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount could not run: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Disk { dir, mounted: true })
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// The files on the disk and their sizes.
    pub fn usage(&self) -> Vec<(String, u64)> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let size = e.metadata().map_or(0, |m| m.len());
                (e.file_name().to_string_lossy().into_owned(), size)
            })
            .collect()
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let Ok(mut file) = std::fs::File::create(self.filler()) else {
            return 0;
        };
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0;
        while file.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        let _ = file.sync_all();
        written
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(&self.dir).status();
        }
    }
}

/// Everything a fault acts on.
pub struct Rig {
    pub engine: Engine,
    pub gateway: Gateway,
    pub cluster: Option<PgCluster>,
    pub cutter: Option<CommitCutter>,
    pub disk: Option<Disk>,
    pub workload: Arc<Workload>,
    pub rng: StdRng,
    pub injected: BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
    /// What a run could not exercise, reported beside its result.
    pub notes: Vec<String>,
    /// Makes the probes' idempotency keys unique to the run.
    pub label: String,
    probes: u64,
}

impl Rig {
    pub fn new(engine: Engine, gateway: Gateway, workload: Arc<Workload>, rng: StdRng) -> Rig {
        Rig {
            engine,
            gateway,
            cluster: None,
            cutter: None,
            disk: None,
            workload,
            rng,
            injected: BTreeMap::new(),
            violations: Vec::new(),
            notes: Vec::new(),
            label: String::new(),
            probes: 0,
        }
    }

    fn ms(&mut self, range: std::ops::Range<u64>) -> Duration {
        Duration::from_millis(self.rng.random_range(range))
    }

    /// One write, a single attempt, recorded in the history like every other.
    async fn probe(&mut self) -> (Option<u16>, Duration) {
        self.probes += 1;
        let key = format!("probe-{}-{}", self.label, self.probes);
        let op = Op {
            tenant: 0,
            kind: Kind::CreateInvoice,
            key: key.clone(),
            path: "/api/invoices".into(),
            body: Some(
                json!({"customerName": key, "currency": "USD", "finalize": true,
                "lineItems": [{"description": "Probe", "quantity": 1, "unitAmount": 100}]}),
            ),
            invoice: None,
            payment: None,
        };
        let client = reqwest::Client::new();
        let api_key = self.workload.tenants[0].key.clone();
        let entry = self
            .workload
            .history
            .run_once(&client, &self.engine.url, &api_key, op)
            .await;
        let attempt = entry.attempts.last().cloned();
        attempt.map_or((None, Duration::ZERO), |a| (a.status, a.elapsed))
    }

    /// Waits until a write succeeds again; a violation if it takes longer than the bound.
    async fn recovered(&mut self, after: Fault) {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        loop {
            if matches!(self.probe().await.0, Some(s) if (200..300).contains(&s)) {
                return;
            }
            if Instant::now() > deadline {
                self.violations.push(format!(
                    "writes did not come back within {RECOVERY_TIMEOUT:?} after {}",
                    after.name()
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Probes during a storage outage: every answer within its bound, a 2xx or a 503.
    async fn outage_probes(&mut self, fault: Fault, until: Instant) -> Vec<Option<u16>> {
        let mut seen = Vec::new();
        while Instant::now() < until {
            let (status, took) = self.probe().await;
            seen.push(status);
            let acceptable = matches!(status, Some(s) if (200..300).contains(&s) || s == 503);
            if !acceptable || took > OUTAGE_ANSWER_BOUND {
                self.violations.push(format!(
                    "{}: a write was answered {status:?} after {took:?} (expected 503 within {OUTAGE_ANSWER_BOUND:?})",
                    fault.name()
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        seen
    }

    /// Waits out a fault; half the time (seeded) the engine is also killed and restarted
    /// somewhere inside it, so recovery from a crash meets the fault too.
    async fn hold(&mut self, hold: Duration, fault: Fault, number: usize) {
        if !self.rng.random_bool(COMPOUND_KILL_RATE) {
            tokio::time::sleep(hold).await;
            return;
        }
        let at = self.ms(0..hold.as_millis() as u64);
        println!(
            "soak: fault {number}: kill -9 {} ms into {}",
            at.as_millis(),
            fault.name()
        );
        let started = Instant::now();
        tokio::time::sleep(at).await;
        *self.injected.entry(Fault::Kill9.name()).or_default() += 1;
        self.engine.kill9();
        self.engine.start().await;
        tokio::time::sleep(hold.saturating_sub(started.elapsed())).await;
    }

    pub async fn inject(&mut self, fault: Fault, number: usize) {
        *self.injected.entry(fault.name()).or_default() += 1;
        match fault {
            Fault::Kill9 => {
                let delay = self.ms(50..1_500);
                println!(
                    "soak: fault {number}: kill -9 after {} ms",
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
                self.engine.kill9();
                self.engine.start().await;
            }
            Fault::GatewayDown => {
                let hold = self.ms(1_000..4_000);
                println!(
                    "soak: fault {number}: gateway down for {} ms",
                    hold.as_millis()
                );
                self.gateway.down().await;
                self.hold(hold, fault, number).await;
                self.gateway.up();
            }
            Fault::GatewaySlow | Fault::GatewayErrors => {
                let hold = self.ms(3_000..8_000);
                let mode = if fault == Fault::GatewaySlow {
                    Mode::Slow
                } else {
                    Mode::Failing
                };
                println!(
                    "soak: fault {number}: gateway {mode:?} for {} ms",
                    hold.as_millis()
                );
                self.gateway.set_mode(mode);
                self.hold(hold, fault, number).await;
                self.gateway.set_mode(Mode::Normal);
            }
            Fault::PgRestart => {
                let pause = self.ms(200..2_000);
                println!(
                    "soak: fault {number}: PostgreSQL restart -m immediate, down {} ms",
                    pause.as_millis()
                );
                self.pg_restart(pause).await;
                self.recovered(fault).await;
            }
            Fault::PgFreeze => {
                println!(
                    "soak: fault {number}: PostgreSQL frozen (SIGSTOP) for {} s",
                    FREEZE.as_secs()
                );
                let Some(cluster) = &self.cluster else { return };
                let pids = cluster.freeze();
                let frozen = pids.clone();
                let thaw = tokio::spawn(async move {
                    tokio::time::sleep(FREEZE).await;
                    PgCluster::thaw(&frozen);
                });
                let seen = self.outage_probes(fault, Instant::now() + FREEZE).await;
                thaw.await.unwrap();
                println!(
                    "soak: fault {number}: {} processes thawed; answers while frozen {seen:?}",
                    pids.len()
                );
                self.recovered(fault).await;
            }
            Fault::PgCommitCut => {
                let hold = self.ms(2_000..5_000);
                println!(
                    "soak: fault {number}: commits cut for {} ms",
                    hold.as_millis()
                );
                let before = self.cutter.as_ref().map_or(0, CommitCutter::cuts);
                if let Some(cutter) = &self.cutter {
                    cutter.arm(true);
                }
                self.hold(hold, fault, number).await;
                if let Some(cutter) = &self.cutter {
                    cutter.arm(false);
                }
                let cuts = self.cutter.as_ref().map_or(0, CommitCutter::cuts) - before;
                println!("soak: fault {number}: {cuts} connections cut mid-commit");
                self.recovered(fault).await;
            }
            Fault::DiskFull => {
                let Some(disk) = &self.disk else { return };
                let usage = disk.usage();
                let written = disk.fill();
                println!(
                    "soak: fault {number}: disk full ({written} filler bytes beside {usage:?})"
                );
                let seen = self
                    .outage_probes(fault, Instant::now() + Duration::from_secs(3))
                    .await;
                if !seen.contains(&Some(503)) {
                    // SQLite reuses its WAL file from the start after each checkpoint, so
                    // writes need no new space until a checkpoint can no longer finish (the
                    // database file must grow) and the WAL outgrows its file. Every answer was
                    // still checked above (2xx or a prompt 503); what was acknowledged is
                    // checked for durability at the end.
                    self.notes.push(format!(
                        "sqlite_disk_full: writes fitted in the space SQLite's files held \
                         ({usage:?}), none needed more: {seen:?}"
                    ));
                }
                if let Some(disk) = &self.disk {
                    disk.free();
                }
                println!("soak: fault {number}: space back; answers while full {seen:?}");
                self.recovered(fault).await;
                if let Some(disk) = &self.disk {
                    println!(
                        "soak: fault {number}: recovered; disk holds {:?}",
                        disk.usage()
                    );
                }
            }
        }
    }

    async fn pg_restart(&mut self, pause: Duration) {
        let Some(cluster) = self.cluster.take() else {
            return;
        };
        let cluster = tokio::task::spawn_blocking(move || {
            cluster.restart_immediate(pause);
            cluster
        })
        .await
        .unwrap();
        self.cluster = Some(cluster);
    }
}
