//! The `delivery` scenario: outbound webhooks to a local receiver (`receiver.rs`, a process of
//! its own). On one engine and one seed, in order:
//! 1. the `webhooks` ramp with no endpoint (outbound off), then again with one endpoint per
//!    tenant (every committed event also goes out): the ingestion slowdown;
//! 2. for each `--endpoints` count (1 and 10 per tenant by default), a ramp of webhook ingestion
//!    judged on delivery: each step waits until the receiver has every delivery of the step's
//!    committed events, then reports events/s committed, deliveries/s and the latency from the
//!    event's `occurredAt` to its arrival at the receiver (p50/p99). The first step runs at the
//!    fixed `--delivery-rate`; the ramp doubles, bisects once and ends at 70% of the highest
//!    rate at which deliveries kept up.
//!
//! `occurredAt` is the engine's clock when the actor decided the event, just before the event
//! joins its group commit; the commit itself (and so the ingestion request's answer) comes
//! later. The latency is therefore commit → receiver plus the event's wait for its commit (the
//! `webhooks` step's own latency bounds that), rounded up by at most 1 ms (`occurredAt` has
//! millisecond precision): an upper bound of commit-to-delivery. Same host, same clock.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::driver::{StepResult, Watch, Workload};
use crate::options::Options;
use crate::procs::{self, Engine, PgCluster, Stub};
use crate::receiver::{now_us, Receiver, Stats};
use crate::report::{self, Series};
use crate::scenarios::{self, Seed};

/// How long a step waits for its last deliveries once the generator has finished.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a backlog left by an earlier step to be delivered before the next step.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(180);
/// Steps per delivery ramp, at most (doubling, one bisection, then the 70% point).
const MAX_STEPS: usize = 8;
/// A step whose deliveries' p99 exceeds this did not keep up.
const SUSTAINED_P99_MS: f64 = 1_000.0;

/// The engine settings of the scenario: plain-HTTP loopback targets are allowed.
fn engine_env() -> [(&'static str, String); 2] {
    [
        ("PAYRAIL_OUTBOUND__ALLOW_HTTP", "true".to_owned()),
        ("PAYRAIL_OUTBOUND__ALLOW_PRIVATE_TARGETS", "true".to_owned()),
    ]
}

/// One step of a delivery ramp.
struct DeliveryStep {
    step: StepResult,
    endpoints: usize,
    committed_events: f64,
    expected: u64,
    stats: Stats,
    drained: bool,
    /// From the end of the generator's step to the last delivery.
    drain_ms: f64,
    /// CPU seconds from the step's start to its last delivery: engine, PostgreSQL, receiver.
    cpu: [f64; 3],
    /// Deltas of the engine's outbound counters: succeeded, retry scheduled, failed.
    outcomes: [f64; 3],
    /// PostgreSQL write transactions from the step's start to its last delivery.
    write_xacts: Option<f64>,
}

impl DeliveryStep {
    fn deliveries_per_s(&self) -> f64 {
        let window_s = match (self.stats.first_us, self.stats.last_us) {
            (Some(first), Some(last)) => (last - first) as f64 / 1e6,
            _ => 0.0,
        };
        self.stats.count as f64 / window_s.max(self.step.elapsed_s)
    }

    fn committed_per_s(&self) -> f64 {
        self.committed_events / self.step.elapsed_s
    }

    fn sustained(&self) -> bool {
        self.step.sustained() && self.drained && self.stats.latency_ms.p99 <= SUSTAINED_P99_MS
    }

    /// Write transactions per delivery beyond the engine's group commits: the dispatcher's
    /// rounds (one transaction each), so 1.0 means one event per round.
    fn dispatcher_xacts_per_delivery(&self) -> Option<f64> {
        let batches = self.step.commit.as_ref().map_or(0.0, |c| c.batches);
        Some((self.write_xacts? - batches).max(0.0) / self.stats.count.max(1) as f64)
    }

    fn per_k_deliveries(&self, cpu_s: f64) -> f64 {
        cpu_s / (self.stats.count.max(1) as f64 / 1_000.0)
    }

    fn json(&self) -> Value {
        let l = &self.stats.latency_ms;
        json!({
            "targetRps": self.step.target_rps.round(),
            "endpointsPerTenant": self.endpoints,
            "ingestion": report::step_json(&self.step),
            "committedEventsPerSec": round1(self.committed_per_s()),
            "expectedDeliveries": self.expected, "deliveries": self.stats.count,
            "achievedOpsPerSec": round1(self.deliveries_per_s()),
            "latencyMs": {"p50": l.p50, "p90": l.p90, "p99": l.p99, "max": l.max},
            "latencyFrom": "occurredAt",
            "drained": self.drained, "drainMs": self.drain_ms.round(),
            "duplicates": self.stats.duplicates, "stale": self.stats.stale,
            "unreadable": self.stats.unreadable, "outOfOrderArrivals": self.stats.out_of_order,
            "engineOutcomes": {"succeeded": self.outcomes[0], "retryScheduled": self.outcomes[1],
                               "failed": self.outcomes[2]},
            "cpuSecPer1kDeliveries": {"engine": round3(self.per_k_deliveries(self.cpu[0])),
                                      "postgres": round3(self.per_k_deliveries(self.cpu[1])),
                                      "receiver": round3(self.per_k_deliveries(self.cpu[2]))},
            "postgresWriteTransactions": self.write_xacts,
            "dispatcherTransactionsPerDelivery": self.dispatcher_xacts_per_delivery().map(round3),
            "sustained": self.sustained(),
        })
    }

    fn print(&self, label: &str) {
        let l = &self.stats.latency_ms;
        eprintln!(
            "{label:<28} committed {:>7.0} ev/s  delivered {:>7.0}/s ({}/{}{})  commit→2xx p50 {:.1} \
             p90 {:.1} p99 {:.1} max {:.1} ms  drain {:.0} ms  cpu/1k deliveries: engine {:.3}s db {:.3}s \
             receiver {:.3}s{}{}",
            self.committed_per_s(),
            self.deliveries_per_s(),
            self.stats.count,
            self.expected,
            if self.drained { "" } else { ", NOT drained" },
            l.p50,
            l.p90,
            l.p99,
            l.max,
            self.drain_ms,
            self.per_k_deliveries(self.cpu[0]),
            self.per_k_deliveries(self.cpu[1]),
            self.per_k_deliveries(self.cpu[2]),
            if self.stats.duplicates + self.stats.stale > 0 {
                format!(
                    "  duplicates {} stale {}",
                    self.stats.duplicates, self.stats.stale
                )
            } else {
                String::new()
            },
            self.dispatcher_xacts_per_delivery()
                .map_or_else(String::new, |x| format!("  dispatcher tx/delivery {x:.2}")),
        );
    }
}

/// PostgreSQL's next transaction id (write transactions so far), read without taking one.
fn next_xid(port: u16) -> Option<f64> {
    let output = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args([
            "-d",
            "postgres",
            "-Atc",
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

/// The engine's outbound counters: deliveries succeeded, retried, failed, and the backlog
/// summed over endpoints.
async fn outbound_counters(client: &reqwest::Client, url: &str) -> [f64; 4] {
    let mut c = [0.0; 4];
    let Ok(r) = client.get(format!("{url}/metrics")).send().await else {
        return c;
    };
    for line in r.text().await.unwrap_or_default().lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let slot = match name {
            n if n.ends_with("{outcome=\"succeeded\"}") => 0,
            n if n.ends_with("{outcome=\"retry_scheduled\"}") => 1,
            n if n.ends_with("{outcome=\"failed\"}") => 2,
            n if n.starts_with("payrail_outbound_backlog{") => 3,
            _ => continue,
        };
        c[slot] += value;
    }
    c
}

/// Waits until the engine reports no undelivered event on any endpoint.
async fn wait_for_backlog(client: &reqwest::Client, url: &str, label: &str) {
    let start = Instant::now();
    loop {
        let backlog = outbound_counters(client, url).await[3];
        if backlog == 0.0 {
            return;
        }
        if start.elapsed() > BACKLOG_TIMEOUT {
            eprintln!("{label}: {backlog} events still undelivered after {BACKLOG_TIMEOUT:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Gives every tenant endpoints `from..to`, all pointing at the receiver.
async fn create_endpoints(
    client: &reqwest::Client,
    seed: &Seed,
    receiver: &Receiver,
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    for (t, tenant) in seed.tenants.iter().enumerate() {
        for e in from..to {
            let body = json!({"url": receiver.endpoint_url(t, e), "description": "load"});
            let mut last = String::new();
            for _ in 0..20 {
                let r = client
                    .post(format!("{}/api/webhook-endpoints", seed.url))
                    .bearer_auth(&tenant.key)
                    .json(&body)
                    .send()
                    .await?;
                let status = r.status();
                if status.is_success() {
                    last.clear();
                    break;
                }
                last = format!("{status}: {}", r.text().await.unwrap_or_default());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !last.is_empty() {
                bail!("creating an endpoint failed: {last}");
            }
        }
    }
    Ok(())
}

struct Env<'a> {
    client: &'a reqwest::Client,
    engine: &'a Engine,
    receiver: &'a Receiver,
    watch: Watch,
    o: &'a Options,
}

/// One step at `rate` webhooks/s, then the wait for its deliveries.
async fn delivery_step(
    env: &Env<'_>,
    workload: &Arc<dyn Workload>,
    first: u64,
    rate: f64,
    endpoints: usize,
) -> anyhow::Result<DeliveryStep> {
    let (client, url) = (env.client, env.engine.url.as_str());
    let since_ms = now_us() / 1_000;
    env.receiver.reset(since_ms).await?;
    let cpu = || {
        [
            procs::cpu_secs(env.engine.pid()),
            env.watch.postmaster.map_or(0.0, procs::tree_cpu_secs),
            procs::cpu_secs(env.receiver.pid()),
        ]
    };
    let xid = || env.watch.pg_port.and_then(next_xid);
    let (cpu0, out0, xid0) = (cpu(), outbound_counters(client, url).await, xid());
    let step =
        crate::ramp::measured_step(client, workload, first, rate, env.watch, env.o, Some(url))
            .await;
    let step_end = now_us();
    let committed_events = step.commit.as_ref().map_or(0.0, |c| c.events);
    let expected = (committed_events * endpoints as f64).round() as u64;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let (stats, drained) = loop {
        let stats = env.receiver.stats().await?;
        if stats.count >= expected {
            break (stats, true);
        }
        if Instant::now() > deadline {
            break (stats, false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (cpu1, out1, xid1) = (cpu(), outbound_counters(client, url).await, xid());
    let drain_ms = stats
        .last_us
        .map_or(0.0, |last| (last - step_end).max(0) as f64 / 1_000.0);
    Ok(DeliveryStep {
        step,
        endpoints,
        committed_events,
        expected,
        stats,
        drained,
        drain_ms,
        cpu: [cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], cpu1[2] - cpu0[2]],
        outcomes: [out1[0] - out0[0], out1[1] - out0[1], out1[2] - out0[2]],
        write_xacts: xid0.zip(xid1).map(|(a, b)| b - a),
    })
}

/// Webhook ingestion judged on delivery: the fixed rate first, doubling while deliveries keep
/// up, one bisection, then 70% of the best (or `--rates` as given).
async fn delivery_ramp(
    env: &Env<'_>,
    label: &str,
    seed: &Arc<Seed>,
    endpoints: usize,
) -> anyhow::Result<(Vec<DeliveryStep>, Option<DeliveryStep>)> {
    let o = env.o;
    let workload = crate::workload("webhooks", seed);
    let fixed: Vec<f64> = if o.rates.is_empty() {
        Vec::new()
    } else {
        o.rates.clone()
    };
    let mut steps: Vec<DeliveryStep> = Vec::new();
    let mut probe = crate::ramp::Probe::new(o.delivery_rate);
    let mut next = 0u64;
    for n in 0.. {
        let rate_now = match fixed.get(n) {
            Some(&r) => r,
            None if fixed.is_empty() && n < MAX_STEPS => probe.rate(),
            None => break,
        };
        if !crate::ramp::seed_covers(label, &workload, rate_now, o) {
            break;
        }
        let s = delivery_step(env, &workload, next, rate_now, endpoints).await?;
        next += (rate_now * o.step.as_secs_f64()) as u64 + 1;
        report::print_step(&format!("{label} @{rate_now:.0}/s"), &s.step);
        s.print(&format!("{label} @{rate_now:.0}/s"));
        let ok = s.sustained();
        if !s.drained {
            wait_for_backlog(env.client, &env.engine.url, label).await;
        }
        steps.push(s);
        if !fixed.is_empty() {
            continue;
        }
        if !probe.step(ok) {
            break;
        }
    }
    let at_70 = match probe
        .best()
        .filter(|&b| crate::ramp::seed_covers(label, &workload, 0.7 * b, o))
    {
        Some(b) => {
            let s = delivery_step(env, &workload, next, 0.7 * b, endpoints).await?;
            report::print_step(&format!("{label} @70% {:.0}/s", 0.7 * b), &s.step);
            s.print(&format!("{label} @70% {:.0}/s", 0.7 * b));
            if !s.drained {
                wait_for_backlog(env.client, &env.engine.url, label).await;
            }
            Some(s)
        }
        None => None,
    };
    Ok((steps, at_70))
}

fn ramp_json(
    backend: &str,
    endpoints: usize,
    tenants: usize,
    steps: &[DeliveryStep],
    at_70: Option<&DeliveryStep>,
) -> Value {
    let sustained = steps.iter().filter(|s| s.sustained());
    let max_deliveries = sustained
        .clone()
        .map(DeliveryStep::deliveries_per_s)
        .fold(0.0, f64::max);
    let max_events = sustained
        .map(DeliveryStep::committed_per_s)
        .fold(0.0, f64::max);
    json!({
        "bench": "load", "scenario": "delivery", "backend": backend,
        "tenants": tenants, "endpointsPerTenant": endpoints,
        "latencyFrom": "occurredAt (decision time, just before its group commit)",
        "steps": steps.iter().map(DeliveryStep::json).collect::<Vec<_>>(),
        "atFixedRate": steps.first().map(DeliveryStep::json),
        "maxSustainedDeliveriesPerSec": max_deliveries.round(),
        "maxSustainedCommittedEventsPerSec": max_events.round(),
        "at70PctOfMax": at_70.map(DeliveryStep::json),
    })
}

fn points(label: String, steps: &[DeliveryStep], at_70: Option<&DeliveryStep>) -> Series {
    let mut points: Vec<(f64, f64)> = steps
        .iter()
        .chain(at_70)
        .filter(|s| s.stats.count > 0)
        .map(|s| (s.deliveries_per_s(), s.stats.latency_ms.p99))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    (label, points)
}

/// The whole scenario on one backend: one engine, one seed, one receiver.
pub async fn run(
    backend: &str,
    o: &Options,
    binary: &Path,
    client: &reqwest::Client,
    stub: &Stub,
    pg: Option<&PgCluster>,
    dir: &Path,
) -> anyhow::Result<Vec<Series>> {
    let receiver = Receiver::start().await?;
    let db = crate::fresh_database(pg, dir, "payrail_load_delivery", o)?;
    let engine = Engine::start(
        binary,
        &db.url,
        &stub.url,
        &engine_env(),
        &dir.join("engine-delivery.log"),
    )
    .await?;
    let t0 = Instant::now();
    let seed = Arc::new(
        scenarios::seed(
            client,
            &engine.url,
            Some(&stub.url),
            o.tenants,
            o.invoices,
            o.payments,
            o.mix(),
        )
        .await
        .context("seeding the delivery scenario")?,
    );
    eprintln!(
        "load[{backend}] delivery: seeded {} tenants, {} payments in {:.1}s; receiver at {}",
        o.tenants,
        seed.payment_count(),
        t0.elapsed().as_secs_f64(),
        receiver.url
    );
    db.settle(backend, seed.payment_count(), o)?;
    let watch = Watch {
        server: Some(engine.pid()),
        postmaster: db.postmaster,
        pg_port: db.pg_port,
    };
    let env = Env {
        client,
        engine: &engine,
        receiver: &receiver,
        watch,
        o,
    };
    let mut series = Vec::new();

    // Ingestion with outbound delivery off (no endpoint), then on (one endpoint per tenant) at
    // the very rates the first ramp ran, so both ramps use as many events.
    let ingest = |label: String, o: Options| {
        let workload = crate::workload("webhooks", &seed);
        let url = engine.url.clone();
        async move {
            crate::ramp::ramp(
                &label,
                client,
                workload,
                crate::start_rate("webhooks"),
                watch,
                &o,
                Some(&url),
            )
            .await
        }
    };
    let off = ingest(format!("{backend} webhooks, outbound off"), o.clone()).await;
    create_endpoints(client, &seed, &receiver, 0, 1).await?;
    let mut same_rates = o.clone();
    same_rates.rates = off
        .steps
        .iter()
        .chain(off.at_70.as_ref())
        .map(|s| s.target_rps)
        .collect();
    same_rates.rates.sort_by(f64::total_cmp);
    let before = outbound_counters(client, &engine.url).await;
    let on = ingest(
        format!("{backend} webhooks, outbound on"),
        same_rates.clone(),
    )
    .await;
    let after = outbound_counters(client, &engine.url).await;
    let backlog_after_on = after[3];
    let t_backlog = Instant::now();
    wait_for_backlog(client, &engine.url, "outbound on").await;
    // Compared on the rates both ramps ran (the seed may run out before the second ends).
    let ran: Vec<f64> = on.steps.iter().map(|s| s.target_rps).collect();
    let off_max = off
        .steps
        .iter()
        .chain(off.at_70.as_ref())
        .filter(|s| s.sustained() && ran.contains(&s.target_rps))
        .map(StepResult::achieved_ops)
        .fold(0.0, f64::max);
    if ran.len() < same_rates.rates.len() {
        eprintln!(
            "load[{backend}] outbound on ran {} of the {} rates (raise --payments); compared on those",
            ran.len(),
            same_rates.rates.len()
        );
    }
    let ratio = on.max_sustained_ops / off_max.max(1.0);
    // A ramp that sustained every step stopped for want of seeded events: its maximum is only
    // a lower bound.
    let saturated = |r: &crate::ramp::Ramp| r.steps.iter().any(|s| !s.sustained());
    eprintln!(
        "load[{backend}] ingestion with outbound on vs off: {:.0} vs {:.0} events/s ({:+.1}%){}; \
         {:.0} delivered during the ramp, {backlog_after_on:.0} undelivered at its end, caught up \
         {:.1}s later",
        on.max_sustained_ops,
        off_max,
        100.0 * (ratio - 1.0),
        if saturated(&off) {
            ""
        } else {
            " (off never saturated: raise --payments)"
        },
        after[0] - before[0],
        t_backlog.elapsed().as_secs_f64()
    );
    println!(
        "{}",
        json!({"bench": "load", "scenario": "delivery-ingestion", "backend": backend,
               "tenants": o.tenants, "endpointsPerTenantWhenOn": 1,
               "maxSustainedOff": off_max.round(),
               "ratesCompared": ran,
               "maxSustainedOn": on.max_sustained_ops.round(),
               "offSaturated": saturated(&off), "onSaturated": saturated(&on),
               "onVsOff": (ratio * 1_000.0).round() / 1_000.0,
               "slowdownPct": (1_000.0 * (1.0 - ratio)).round() / 10.0,
               "deliveredDuringOnRamp": after[0] - before[0],
               "undeliveredAtEndOfOnRamp": backlog_after_on,
               "off": off.json("webhooks", backend, json!({"outbound": "off"})),
               "on": on.json("webhooks", backend, json!({"outbound": "on", "endpointsPerTenant": 1}))})
    );
    series.push((off.label.clone(), off.points()));
    series.push((on.label.clone(), on.points()));

    // Delivery ramps, endpoints per tenant topped up to each count in turn.
    let mut counts = o.endpoints.clone();
    counts.sort_unstable();
    counts.dedup();
    let mut have = 1;
    for n in counts.into_iter().filter(|&n| n > 0) {
        if n > have {
            create_endpoints(client, &seed, &receiver, have, n).await?;
            have = n;
        }
        if n < have {
            eprintln!(
                "load[{backend}] delivery: {n} endpoints per tenant skipped (already {have})"
            );
            continue;
        }
        let label = format!("{backend} delivery ×{n}");
        let (steps, at_70) = delivery_ramp(&env, &label, &seed, n).await?;
        println!(
            "{}",
            ramp_json(backend, n, o.tenants, &steps, at_70.as_ref())
        );
        series.push(points(label, &steps, at_70.as_ref()));
    }
    engine.stop();
    Ok(series)
}
