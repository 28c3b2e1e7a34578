//! Fault injection with a history checker: the real `payrail` binary under a mixed workload
//! (several tenants; invoices, payments, refunds, voids; webhooks delivered three times and
//! reordered) while faults are injected on each backend, then every recorded write and the
//! gateway's ledger are checked against the settled final state. The short run is part of the
//! test suite; `scripts/soak` runs the long one (see `config.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checker;
#[cfg(test)]
mod checker_tests;
mod config;
mod engine;
mod faults;
mod gateway;
mod history;
mod pg;
mod state;
mod workload;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;

use config::SoakConfig;
use engine::Engine;
use faults::{Disk, Fault, Rig};
use gateway::Gateway;
use workload::Workload;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The faults that apply, besides kill -9.
    fn faults(self) -> &'static [Fault] {
        const COMMON: [Fault; 3] = [Fault::GatewayDown, Fault::GatewaySlow, Fault::GatewayErrors];
        match self {
            Backend::Sqlite => &[
                Fault::GatewayDown,
                Fault::GatewaySlow,
                Fault::GatewayErrors,
                Fault::DiskFull,
            ],
            Backend::Postgres => &[
                COMMON[0],
                COMMON[1],
                COMMON[2],
                Fault::PgRestart,
                Fault::PgFreeze,
                Fault::PgCommitCut,
            ],
        }
    }
}

/// The faults in a seeded order: every kill and every other fault `repeats` times.
fn schedule(backend: Backend, config: &SoakConfig, rng: &mut StdRng) -> Vec<Fault> {
    let mut faults = vec![Fault::Kill9; config.kills];
    for _ in 0..config.fault_repeats {
        faults.extend_from_slice(backend.faults());
    }
    faults.shuffle(rng);
    faults
}

#[actix_web::test]
async fn soak_sqlite() {
    soak(Backend::Sqlite).await;
}

#[actix_web::test]
async fn soak_postgres() {
    soak(Backend::Postgres).await;
}

async fn soak(backend: Backend) {
    let config = SoakConfig::from_env();
    let seed = config.seed
        ^ if backend == Backend::Postgres {
            0x5157
        } else {
            0
        };
    println!(
        "soak {}: seed {seed} (PAYRAIL_SOAK_SEED={} reproduces the run), {} kills, other faults ×{}",
        backend.name(),
        config.seed,
        config.kills,
        config.fault_repeats
    );
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("payrail-soak.")
        .tempdir()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let gateway = Gateway::start(seed).await;
    let mut cluster = None;
    let mut cutter = None;
    let mut disk = None;
    let mut notes = Vec::new();
    let db_url = match backend {
        Backend::Postgres => {
            let pg = pg::PgCluster::start();
            pg.create_database("soak");
            let proxy = pg::CommitCutter::start(pg.port, seed).await;
            let url = pg.url(proxy.port, "soak");
            cluster = Some(pg);
            cutter = Some(proxy);
            url
        }
        Backend::Sqlite => {
            let path = dir.path().join("sqlite");
            match Disk::mount(path.clone()) {
                Ok(mounted) => disk = Some(mounted),
                Err(why) => {
                    println!("soak sqlite: full-disk fault not injected: {why}");
                    notes.push(format!("sqlite_disk_full not injected: {why}"));
                    std::fs::create_dir_all(&path).unwrap();
                }
            }
            format!("sqlite://{}", path.join("payrail.db").display())
        }
    };
    let mut engine = Engine::new(&db_url, &gateway.url(), dir.path());
    engine.start().await;
    let tenants = workload::tenants(&engine.url, config.tenants, seed).await;
    let workload = Workload::new(tenants);
    let mut clients = Vec::new();
    for tenant in 0..config.tenants {
        for worker in 0..config.workers_per_tenant {
            let run = workload
                .clone()
                .client(engine.url.clone(), tenant, worker, seed);
            clients.push(tokio::spawn(run));
        }
    }
    let faults = schedule(backend, &config, &mut rng);
    let mut rig = Rig::new(engine, gateway, workload.clone(), rng);
    rig.cluster = cluster;
    rig.cutter = cutter;
    rig.disk = disk;
    rig.label = seed.to_string();
    for (number, fault) in faults.iter().enumerate() {
        if *fault == Fault::DiskFull && rig.disk.is_none() {
            continue;
        }
        rig.inject(*fault, number + 1).await;
    }
    workload.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let settle_started = Instant::now();
    let settled = settle(&rig, &config).await;
    if let Some(disk) = &rig.disk {
        println!("soak {}: disk holds {:?}", backend.name(), disk.usage());
    }
    println!(
        "soak {}: settled in {:?}",
        backend.name(),
        settle_started.elapsed()
    );
    if let Err(why) = settled {
        rig.violations.push(format!(
            "did not settle within {:?}: {why}",
            config.settle_timeout
        ));
    }
    let (violations, outcomes) = check(&rig).await;
    notes.extend(rig.notes.iter().cloned());
    let mut all = rig.violations.clone();
    all.extend(violations);
    all.extend(workload.unseen.lock().unwrap().iter().cloned());
    if let Some(path) = db_url.strip_prefix("sqlite://") {
        let path = path.to_owned();
        let verdict = tokio::task::spawn_blocking(move || integrity(&path))
            .await
            .unwrap();
        if verdict != "ok" {
            all.push(format!("SQLite integrity_check: {verdict}"));
        }
    }
    let entries = workload.history.entries();
    let acked = entries.iter().filter(|e| e.acked.is_some()).count();
    let mut faults_by_kind: BTreeMap<&str, u64> = rig.injected.clone();
    if let Some(cutter) = &rig.cutter {
        faults_by_kind.insert("pg_connections_cut_mid_commit", cutter.cuts());
    }
    let figures = json!({
        "backend": backend.name(),
        "seed": config.seed,
        "operations": entries.len(),
        "acknowledged": acked,
        "attempts": entries.iter().map(|e| e.attempts.len()).sum::<usize>(),
        "engine_starts": rig.engine.starts,
        "faults": faults_by_kind,
        "payments": outcomes,
        "violations": all.len(),
        "notes": notes,
        "duration_secs": started.elapsed().as_secs_f64().round(),
    });
    println!("soak {}: {figures}", backend.name());
    if let Some(path) = &config.report {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{figures}").unwrap();
    }
    if config.keep && all.is_empty() {
        println!(
            "soak {}: run kept in {}",
            backend.name(),
            dir.keep().display()
        );
    } else if !all.is_empty() {
        let kept = dir.keep();
        for v in &all {
            println!("soak {} VIOLATION: {v}", backend.name());
        }
        println!(
            "soak {}: engine log kept in {}",
            backend.name(),
            kept.display()
        );
    }
    assert!(
        all.is_empty(),
        "{} violations (seed {})",
        all.len(),
        config.seed
    );
}

#[derive(diesel::QueryableByName)]
struct IntegrityRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    integrity_check: String,
}

/// SQLite's own verdict on the database file (`ok` when nothing is corrupt).
fn integrity(path: &str) -> String {
    use diesel::{Connection, RunQueryDsl};
    let mut conn = diesel::SqliteConnection::establish(path).unwrap();
    let rows: Vec<IntegrityRow> = diesel::sql_query("PRAGMA integrity_check")
        .load(&mut conn)
        .unwrap();
    rows.into_iter()
        .map(|r| r.integrity_check)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until the gateway has delivered everything and every tenant is settled.
async fn settle(rig: &Rig, config: &SoakConfig) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let deadline = Instant::now() + config.settle_timeout;
    loop {
        let mut why = Ok(());
        if rig.gateway.simulator.state().pending_events() > 0 {
            why = Err(format!(
                "{} webhooks undelivered",
                rig.gateway.simulator.state().pending_events()
            ));
        }
        for tenant in &rig.workload.tenants {
            if why.is_err() {
                break;
            }
            why = state::settled(&client, &rig.engine.url, &tenant.key).await;
        }
        if why.is_ok() || Instant::now() > deadline {
            return why;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn check(rig: &Rig) -> (Vec<String>, BTreeMap<String, u64>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut states = Vec::new();
    for tenant in &rig.workload.tenants {
        states.push(state::read(&client, &rig.engine.url, &tenant.key).await);
    }
    let (charges, refunds) = rig.gateway.received();
    let simulator = rig.gateway.simulator.state().clone();
    let creations = move |key: &str| simulator.creations_for(key);
    let mut checker = checker::Checker::new(&charges, &refunds, &creations);
    let entries = rig.workload.history.entries();
    for (n, state) in states.iter().enumerate() {
        let own: Vec<_> = entries.iter().filter(|e| e.op.tenant == n).collect();
        checker.tenant(n, &own, state);
    }
    checker.phantoms(&states);
    let invoices: usize = states.iter().map(|s| s.invoices.len()).sum();
    // How payments ended, e.g. `failed:processing_error` for card payments whose card data
    // died with a killed engine before the gateway saw it.
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for payment in states.iter().flat_map(|s| &s.payments) {
        let status = payment["status"].as_str().unwrap_or("?");
        let outcome = match payment["failureCode"].as_str() {
            Some(code) if status == "failed" => format!("failed:{code}"),
            _ => status.to_owned(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    println!("soak: checked {invoices} invoices; payments {outcomes:?}");
    // How the writes of payments that ended `processing_error` were answered.
    let answers: HashMap<String, String> = entries
        .iter()
        .filter_map(|e| {
            let id = e.acked.as_ref()?["id"].as_str()?.to_owned();
            let statuses: Vec<String> = e
                .attempts
                .iter()
                .map(|a| a.status.map_or("none".into(), |s| s.to_string()))
                .collect();
            Some((id, statuses.join(",")))
        })
        .collect();
    let mut lost_cards: BTreeMap<String, u64> = BTreeMap::new();
    for payment in states.iter().flat_map(|s| &s.payments) {
        if payment["failureCode"] == "processing_error" {
            let id = payment["id"].as_str().unwrap_or_default();
            let answered = answers
                .get(id)
                .cloned()
                .unwrap_or_else(|| "unacknowledged".into());
            *lost_cards.entry(answered).or_default() += 1;
        }
    }
    if !lost_cards.is_empty() {
        println!("soak: processing_error payments by the answers to their writes: {lost_cards:?}");
    }
    (checker.violations, outcomes)
}
