//! End-to-end load benchmark: the release `payrail` binary on SQLite or a throwaway PostgreSQL
//! 15, driven over loopback HTTP by an open-loop generator at rising target rates.
//!
//! `cargo bench --bench load -- --scenario webhooks --backend sqlite --duration 5s`
//! (`cargo bench --bench load -- --help` lists every option with its default).
//! Scenarios: webhooks, webhooks-batch, payments, invoices, mixed, many-actors, delivery
//! (comma-separated, or all). A hot invoice: `--invoices 1` (every tenant's payments on one
//! invoice); invoice creation on one tenant: `--scenario invoices --tenants 1`.
//! Baselines in the same run: a no-op actix-web handler (HTTP ceiling), the engine with group
//! commit disabled (`PAYRAIL_COMMIT_BATCH_MAX_UNITS=1`) and one SQL transaction per event.
//! The generator builds and signs every request of a step before the step starts and sends the
//! bytes on kept-alive HTTP/1.1 connections (`load/conn.rs`); `--backend none` measures only its
//! ceiling against the no-op handler. `--pg-set name=value` sets a PostgreSQL setting on the
//! benchmark databases, `--pg-server name=value` one the cluster starts with (`max_wal_size`).
//! After seeding PostgreSQL with at least 10,000 payments the benchmark runs `VACUUM (ANALYZE)`,
//! as `pgbench` does, and a `CHECKPOINT` (`--no-vacuum` skips both). `--wal-detail` breaks
//! each PostgreSQL step's WAL down by relation with `pg_waldump`.
//! Outbound webhooks: `cargo bench --bench load -- --scenario delivery --backend postgres`
//! (`--endpoints 1,10 --delivery-rate 250`; details in `load/delivery.rs`): ingestion with
//! delivery off and on, then deliveries/s and commit-to-receiver latency per endpoint count.
//! Prints one JSON line per scenario on stdout and writes `<target>/bench/load.svg`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "load/baseline.rs"]
mod baseline;
#[path = "load/conn.rs"]
mod conn;
#[path = "load/delivery.rs"]
mod delivery;
#[path = "load/driver.rs"]
mod driver;
#[path = "load/many_actors.rs"]
mod many_actors;
#[path = "load/options.rs"]
mod options;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/ramp.rs"]
mod ramp;
#[path = "load/receiver.rs"]
mod receiver;
#[path = "load/report.rs"]
mod report;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/stub.rs"]
mod stub;
#[path = "load/waldump.rs"]
mod waldump;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use serde_json::json;

use driver::{Watch, Workload};
use options::{options, Options};
use procs::{Engine, PgCluster, Stub};
use ramp::{ramp, Ramp, Search, NOOP_BISECTIONS};
use scenarios::Seed;

fn main() -> anyhow::Result<()> {
    let Some(options) = options()? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

pub(crate) struct Database {
    url: String,
    postmaster: Option<u32>,
    /// PostgreSQL's port, to read its WAL position around each step.
    pg_port: Option<u16>,
}

/// Seeds smaller than this are not vacuumed (`Database::settle`).
const VACUUM_MIN_PAYMENTS: usize = 10_000;

impl Database {
    /// After a seed of at least `VACUUM_MIN_PAYMENTS` payments, as `pgbench` does before its
    /// runs: vacuums and analyzes the seeded tables on PostgreSQL. Otherwise autovacuum's first
    /// pass over them (its launcher visits each database once a minute) reads the whole
    /// payments table during whichever step it lands in. A smaller seed is left alone:
    /// statistics of near-empty tables that the steps then grow a thousandfold make cached
    /// plans scan them (an idempotency-key lookup read every row of its table), which is the
    /// statistics' fault, not the write path's. Then a `CHECKPOINT`: the seed's WAL (over a
    /// gigabyte for 128,000 payments) has asked for one, and spread over the next minutes it
    /// would write the seed's pages out during the steps; run now, every step starts after
    /// it, however soon the seed ended. `--no-vacuum` leaves it all to autovacuum and the
    /// checkpointer.
    pub(crate) fn settle(&self, backend: &str, seeded: usize, o: &Options) -> anyhow::Result<()> {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        if self.pg_port.is_none() || !o.vacuum || seeded < VACUUM_MIN_PAYMENTS {
            return Ok(());
        }
        let t0 = Instant::now();
        let mut conn = diesel::PgConnection::establish(&self.url)?;
        // Two queries: VACUUM cannot run in the transaction of a multi-statement query.
        conn.batch_execute("VACUUM (ANALYZE)")?;
        conn.batch_execute("CHECKPOINT")?;
        eprintln!(
            "load[{backend}]: vacuumed the seeded database and checkpointed in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// A fresh database on the backend: a new SQLite file, or a new database in the cluster.
pub(crate) fn fresh_database(
    pg: Option<&PgCluster>,
    dir: &Path,
    name: &str,
    o: &Options,
) -> anyhow::Result<Database> {
    Ok(match pg {
        Some(cluster) => Database {
            url: cluster.create_database(name, &o.pg_settings)?,
            postmaster: Some(cluster.postmaster_pid()),
            pg_port: Some(cluster.port),
        },
        None => Database {
            url: format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
            postmaster: None,
            pg_port: None,
        },
    })
}

fn start_rate(scenario: &str) -> f64 {
    match scenario {
        "webhooks-batch" => 20.0,
        "payments" | "invoices" => 500.0,
        _ => 1_000.0,
    }
}

fn workload(scenario: &str, seed: &Arc<Seed>) -> Arc<dyn Workload> {
    let run = format!(
        "{}{}",
        scenario.replace('-', ""),
        uuid::Uuid::now_v7().simple()
    );
    let webhooks = scenarios::Webhooks {
        seed: seed.clone(),
        run: run.clone(),
    };
    let payments = scenarios::Payments {
        seed: seed.clone(),
        run: run.clone(),
    };
    match scenario {
        "webhooks" => Arc::new(webhooks),
        "webhooks-batch" => Arc::new(scenarios::WebhookBatches {
            seed: seed.clone(),
            run,
        }),
        "payments" => Arc::new(payments),
        "invoices" => Arc::new(scenarios::Invoices {
            seed: seed.clone(),
            run,
        }),
        _ => Arc::new(scenarios::Mixed { webhooks, payments }),
    }
}

fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
}

async fn run(o: Options) -> anyhow::Result<()> {
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    if let Some(saved) = &o.plot_from {
        let svg = out_dir.join("load.svg");
        report::plot(&svg, &report::series_from_json_lines(saved)?)?;
        eprintln!("load: plot written to {}", svg.display());
        return Ok(());
    }
    let binary = procs::payrail_binary()?;
    let client = driver::client(o.in_flight)?;
    let stub = Stub::start().await?;
    eprintln!(
        "load: {} on {} (steps of {:?}, ≤{} in flight); stub at {}",
        o.scenarios.join(","),
        o.backends.join(","),
        o.step,
        o.in_flight,
        stub.url
    );
    let mut plot_series = Vec::new();
    let mut noop_max = None;
    if o.baselines {
        let noop = ramp(
            "noop (HTTP ceiling)",
            &client,
            Arc::new(scenarios::Noop {
                url: stub.url.clone(),
            }),
            Search {
                start: 2_000.0,
                bisections: NOOP_BISECTIONS,
            },
            Watch {
                server: Some(stub.pid()),
                postmaster: None,
                pg_port: None,
            },
            &o,
            None,
        )
        .await;
        println!("{}", noop.json("noop", "none", json!({})));
        noop_max = Some(noop.max_sustained_ops);
        plot_series.push((noop.label.clone(), noop.points()));
    }
    for backend in &o.backends {
        let series = run_backend(backend, &o, &binary, &client, &stub, noop_max).await?;
        plot_series.extend(series);
    }
    if plot_series.iter().any(|(_, points)| !points.is_empty()) {
        let svg = out_dir.join("load.svg");
        report::plot(&svg, &plot_series)?;
        eprintln!("load: plot written to {}", svg.display());
    }
    Ok(())
}

async fn run_backend(
    backend: &str,
    o: &Options,
    binary: &Path,
    client: &reqwest::Client,
    stub: &Stub,
    noop_max: Option<f64>,
) -> anyhow::Result<Vec<report::Series>> {
    let dir = tempfile::Builder::new().prefix("payrail-load.").tempdir()?;
    let pg = match backend {
        "postgres" => Some(PgCluster::start(&o.pg_server)?),
        "sqlite" => None,
        other => bail!("unknown backend {other}"),
    };
    let mut series = Vec::new();
    let http_scenarios: Vec<&String> = o
        .scenarios
        .iter()
        .filter(|s| !matches!(s.as_str(), "many-actors" | "delivery"))
        .collect();
    let mut webhook_max = None;
    if !http_scenarios.is_empty() {
        let db = fresh_database(pg.as_ref(), dir.path(), "payrail_load", o)?;
        // An empty gateway URL leaves the engine on its in-process simulator.
        let gateway = if o.simulator { "" } else { stub.url.as_str() };
        let gateway_stub = (!o.simulator).then_some(stub.url.as_str());
        let engine = Engine::start(
            binary,
            &db.url,
            gateway,
            &[],
            &dir.path().join("engine.log"),
        )
        .await?;
        let t0 = Instant::now();
        let seed = Arc::new(
            scenarios::seed(
                client,
                &engine.url,
                gateway_stub,
                o.tenants,
                o.invoices,
                o.payments,
                o.mix(),
            )
            .await?,
        );
        eprintln!(
            "load[{backend}]: seeded {} tenants, {} payments in {:.1}s",
            o.tenants,
            seed.payment_count(),
            t0.elapsed().as_secs_f64()
        );
        db.settle(backend, seed.payment_count(), o)?;
        let watch = Watch {
            server: Some(engine.pid()),
            postmaster: db.postmaster,
            pg_port: db.pg_port,
        };
        let mut ramps = Vec::new();
        for scenario in &http_scenarios {
            let label = format!("{backend} {scenario}");
            let r = ramp(
                &label,
                client,
                workload(scenario, &seed),
                start_rate(scenario),
                watch,
                o,
                Some(&engine.url),
            )
            .await;
            if scenario.as_str() == "webhooks" {
                webhook_max = Some(r.max_sustained_ops);
            }
            series.push((r.label.clone(), r.points()));
            ramps.push(((*scenario).clone(), r));
        }
        engine.stop();
        let baselines = if o.baselines && webhook_max.is_some() {
            let b = baselines(backend, o, binary, client, stub, pg.as_ref(), dir.path()).await?;
            series.push((b.0.label.clone(), b.0.points()));
            Some(b)
        } else {
            None
        };
        for (scenario, r) in &ramps {
            let mut extra = json!({});
            if pg.is_some() && !o.pg_settings.is_empty() {
                extra["pgSettings"] = json!(o.pg_settings);
            }
            if pg.is_some() && !o.pg_server.is_empty() {
                extra["pgServer"] = json!(o.pg_server);
            }
            if let (Some(noop), true) = (noop_max, scenario.as_str() != "webhooks-batch") {
                extra["vsNoopHttpCeiling"] = json!(r.max_sustained_ops / noop.max(1.0));
            }
            if let Some((ablation, direct)) = &baselines {
                if scenario.starts_with("webhooks") {
                    extra["vsGroupCommitDisabled"] =
                        json!(r.max_sustained_ops / ablation.max_sustained_ops.max(1.0));
                    extra["vsOneTxPerEventSql"] =
                        json!(r.max_sustained_ops / direct.ops_per_s.max(1.0));
                }
            }
            println!("{}", r.json(scenario, backend, extra));
        }
        if let Some((ablation, direct)) = &baselines {
            println!(
                "{}",
                ablation.json(
                    "webhooks-group-commit-disabled",
                    backend,
                    json!({"PAYRAIL_COMMIT_BATCH_MAX_UNITS": 1})
                )
            );
            println!(
                "{}",
                json!({"bench": "load", "scenario": "one-tx-per-event-sql", "backend": backend,
                       "callers": baseline::CALLERS, "opsPerSec": direct.ops_per_s.round(),
                       "p50Ms": direct.p50_ms, "p99Ms": direct.p99_ms,
                       "postgresCpuMsPer1kOps": direct.db_cpu_ms_per_kop,
                       "walBytesPerOp": direct.wal_bytes_per_op.map(f64::round)})
            );
        }
    }
    if o.scenarios.iter().any(|s| s == "delivery") {
        let dir = dir.path();
        series.extend(delivery::run(backend, o, binary, client, stub, pg.as_ref(), dir).await?);
    }
    if o.scenarios.iter().any(|s| s == "many-actors") {
        many_actors::run(backend, o, binary, client, stub, pg.as_ref(), dir.path()).await?;
    }
    drop(pg);
    Ok(series)
}

/// (c) the engine with group commit disabled, and (b) one SQL transaction per event.
async fn baselines(
    backend: &str,
    o: &Options,
    binary: &Path,
    client: &reqwest::Client,
    stub: &Stub,
    pg: Option<&PgCluster>,
    dir: &Path,
) -> anyhow::Result<(Ramp, baseline::BaselineResult)> {
    let db = fresh_database(pg, dir, "payrail_load_nobatch", o)?;
    let env = [("PAYRAIL_COMMIT_BATCH_MAX_UNITS", "1".to_owned())];
    let engine = Engine::start(
        binary,
        &db.url,
        &stub.url,
        &env,
        &dir.join("engine-nobatch.log"),
    )
    .await?;
    let seed = Arc::new(
        scenarios::seed(
            client,
            &engine.url,
            Some(&stub.url),
            o.tenants,
            4,
            o.payments / 4,
            o.mix(),
        )
        .await?,
    );
    db.settle(backend, seed.payment_count(), o)?;
    let watch = Watch {
        server: Some(engine.pid()),
        postmaster: db.postmaster,
        pg_port: db.pg_port,
    };
    let label = format!("{backend} webhooks, group commit off");
    let ablation = ramp(
        &label,
        client,
        workload("webhooks", &seed),
        250.0,
        watch,
        o,
        Some(&engine.url),
    )
    .await;
    engine.stop();
    let url = db.url.clone();
    let (step, postmaster) = (o.step, db.postmaster);
    let direct =
        tokio::task::spawn_blocking(move || baseline::run(&url, step, postmaster)).await??;
    eprintln!(
        "{backend} one tx per event (SQL, K={}): {:.0} ops/s  p50 {:.2} ms  p99 {:.2} ms  db cpu {:.3} s/1k ops{}",
        baseline::CALLERS,
        direct.ops_per_s,
        direct.p50_ms,
        direct.p99_ms,
        direct.db_cpu_ms_per_kop / 1_000.0,
        direct
            .wal_bytes_per_op
            .map_or_else(String::new, |b| format!("  wal {b:.0} B/op"))
    );
    Ok((ablation, direct))
}
