//! The `many-actors` scenario: how the engine's memory follows a large number of live
//! payment actors, and what passivation gives back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::driver::{self, Watch};
use crate::options::Options;
use crate::procs::{self, Engine, PgCluster, Stub};
use crate::scenarios::{self, Seed};
use crate::{fresh_database, report};

/// Tenants and invoices of the many-actors seed (payments spread round robin over them).
const ACTOR_TENANTS: usize = 16;
const ACTOR_INVOICES_PER_TENANT: usize = 100;
/// Target rate while touching every payment once in many-actors.
const ACTOR_TOUCH_RATE: f64 = 1_500.0;

/// Seeds `actors` payments, restarts the engine so none is live, then sends one webhook to each
/// and follows the engine's RSS.
pub async fn run(
    backend: &str,
    o: &Options,
    binary: &Path,
    client: &reqwest::Client,
    stub: &Stub,
    pg: Option<&PgCluster>,
    dir: &Path,
) -> anyhow::Result<()> {
    let db = fresh_database(pg, dir, "payrail_load_actors", o)?;
    let log = dir.join("engine-actors.log");
    let engine = Engine::start(binary, &db.url, &stub.url, &[], &log).await?;
    let t0 = Instant::now();
    let per_tenant = o.actors.div_ceil(ACTOR_TENANTS);
    let seed = scenarios::seed(
        client,
        &engine.url,
        Some(&stub.url),
        ACTOR_TENANTS,
        ACTOR_INVOICES_PER_TENANT,
        per_tenant,
        o.mix(),
    )
    .await?;
    let seed_s = t0.elapsed().as_secs_f64();
    let rss_seeded = procs::rss_mib(engine.pid());
    eprintln!(
        "load[{backend}] many-actors: seeded {} payments in {seed_s:.1}s (RSS {rss_seeded:.0} MiB); restarting",
        seed.payment_count()
    );
    engine.stop();
    let engine = Engine::start(binary, &db.url, &stub.url, &[], &log).await?;
    let pid = engine.pid();
    let rss_before = procs::rss_mib(pid);
    // The restarted engine listens on a new port.
    let seed = Arc::new(Seed {
        url: engine.url.clone(),
        ..seed
    });
    let count = seed.payment_count();
    let run = format!("actors{}", uuid::Uuid::now_v7().simple());
    let work = Arc::new(scenarios::EveryPayment::new(seed.clone(), run));
    let samples: Arc<std::sync::Mutex<Vec<(f64, f64)>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                let sample = (
                    start.elapsed().as_secs_f64().round(),
                    procs::rss_mib(pid).round(),
                );
                samples.lock().unwrap().push(sample);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let duration = Duration::from_secs_f64(count as f64 / ACTOR_TOUCH_RATE);
    let watch = Watch {
        server: Some(pid),
        postmaster: db.postmaster,
        pg_port: db.pg_port,
    };
    let before = driver::counters(client, &engine.url).await;
    let mut step = driver::run_step(work, 0, ACTOR_TOUCH_RATE, duration, o.in_flight, watch).await;
    step.commit = driver::commit_stats(&before, &driver::counters(client, &engine.url).await);
    sampler.abort();
    let samples = samples.lock().unwrap().clone();
    let rss_after = procs::rss_mib(pid);
    let active: Vec<String> = match client.get(format!("{}/metrics", engine.url)).send().await {
        Ok(r) => r
            .text()
            .await
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("payrail_active_actors"))
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    };
    report::print_step(
        &format!("{backend} many-actors @{ACTOR_TOUCH_RATE:.0}/s"),
        &step,
    );
    eprintln!(
        "load[{backend}] many-actors: RSS {rss_before:.0} MiB before, {rss_after:.0} MiB after; {active:?}"
    );
    println!(
        "{}",
        json!({"bench": "load", "scenario": "many-actors", "backend": backend,
               "payments": count, "seedSeconds": seed_s, "rssMibAfterSeeding": rss_seeded,
               "rssMibBefore": rss_before, "rssMibAfter": rss_after, "activeActors": active,
               "step": report::step_json(&step), "rssOverTime": samples})
    );
    engine.stop();
    Ok(())
}
