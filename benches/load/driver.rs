//! Open-loop load: request `i` of a step is due at `start + i / rate` whatever happened to the
//! ones before it, and its latency is measured from that due time (no coordinated omission).
//! At most `max_in_flight` requests are outstanding; one that finds no free slot when due is
//! not sent and counts as an error (`not_sent`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::procs;

/// Latencies are recorded in microseconds, up to a minute.
const HIST_MAX_US: u64 = 60_000_000;
/// How long a step waits for its last requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub enum Method {
    Get,
    Post,
}

/// One HTTP request of a workload.
pub struct Req {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    /// Operations this request carries (events in a webhook batch, else 1).
    pub ops: u64,
    /// The answer is a webhook summary whose counts are worth adding up.
    pub webhook: bool,
}

/// Builds request number `i` of a run (deterministic in `i`, so duplicates can be re-made).
pub trait Workload: Send + Sync {
    fn request(&self, i: u64) -> Req;

    /// How many more requests still do what the scenario means to measure (webhook events
    /// that apply rather than arrive stale); `None` for no limit.
    fn requests_left(&self) -> Option<u64> {
        None
    }
}

/// Processes whose CPU time (and RSS) a step reports.
#[derive(Clone, Copy, Default)]
pub struct Watch {
    pub server: Option<u32>,
    pub postmaster: Option<u32>,
    /// PostgreSQL's port: the step reports the WAL it wrote.
    pub pg_port: Option<u16>,
}

#[derive(Default, Deserialize)]
struct WebhookSummary {
    #[serde(default)]
    applied: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    ignored: u64,
    #[serde(default)]
    rejected: u64,
}

#[derive(Default)]
struct Tally {
    ok_requests: AtomicU64,
    ok_ops: AtomicU64,
    applied: AtomicU64,
    duplicates: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
}

pub struct StepResult {
    pub target_rps: f64,
    pub elapsed_s: f64,
    pub sent: u64,
    pub ok_requests: u64,
    pub ok_ops: u64,
    pub errors: BTreeMap<String, u64>,
    pub hist: Histogram<u64>,
    pub server_cpu_s: f64,
    pub db_cpu_s: f64,
    pub client_cpu_s: f64,
    pub server_rss_mib: f64,
    /// Bytes of WAL PostgreSQL wrote during the step.
    pub wal_bytes: Option<u64>,
    /// Webhook outcomes: applied, duplicates, ignored, rejected.
    pub outcomes: [u64; 4],
    /// Group-commit figures from the engine's `/metrics` over the step (when scraped).
    pub commit: Option<CommitStats>,
}

/// Deltas of the engine's commit counters over a step.
#[derive(Clone, Copy)]
pub struct CommitStats {
    pub batches: f64,
    pub units: f64,
    pub events: f64,
    pub commit_ms_total: f64,
}

impl CommitStats {
    pub fn units_per_batch(&self) -> f64 {
        self.units / self.batches.max(1.0)
    }

    pub fn ms_per_batch(&self) -> f64 {
        self.commit_ms_total / self.batches.max(1.0)
    }
}

/// The engine's unlabelled counters from `/metrics` (empty if unreachable).
pub async fn counters(client: &reqwest::Client, base_url: &str) -> HashMap<String, f64> {
    let Ok(response) = client.get(format!("{base_url}/metrics")).send().await else {
        return HashMap::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

pub fn commit_stats(
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
) -> Option<CommitStats> {
    let delta = |name: &str| Some(after.get(name)? - before.get(name)?);
    Some(CommitStats {
        batches: delta("payrail_commit_batches_total")?,
        units: delta("payrail_commit_units_total")?,
        events: delta("payrail_commit_events_total")?,
        commit_ms_total: delta("payrail_commit_duration_microseconds_total")? / 1_000.0,
    })
}

impl StepResult {
    pub fn achieved_rps(&self) -> f64 {
        self.ok_requests as f64 / self.elapsed_s
    }

    pub fn achieved_ops(&self) -> f64 {
        self.ok_ops as f64 / self.elapsed_s
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1_000.0
    }

    /// CPU seconds per 1,000 successful operations.
    /// WAL bytes per applied webhook event (per op when nothing applied).
    pub fn wal_per_event(&self) -> Option<f64> {
        let events = if self.outcomes[0] > 0 {
            self.outcomes[0]
        } else {
            self.ok_ops
        };
        Some(self.wal_bytes? as f64 / events.max(1) as f64)
    }

    pub fn per_kop(&self, cpu_s: f64) -> f64 {
        if self.ok_ops == 0 {
            return 0.0;
        }
        cpu_s / (self.ok_ops as f64 / 1_000.0)
    }

    /// Kept up: nearly every due request answered 2xx, at nearly the target rate.
    pub fn sustained(&self) -> bool {
        let due = (self.target_rps * self.elapsed_s).max(1.0);
        self.error_count() as f64 <= 0.01 * due
            && self.achieved_rps() >= 0.95 * self.target_rps
            && self.ms(0.99) <= 1_000.0
    }
}

pub fn client(max_in_flight: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(max_in_flight)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

fn cpu_now(watch: Watch) -> (f64, f64, f64) {
    (
        watch.server.map_or(0.0, procs::cpu_secs),
        watch.postmaster.map_or(0.0, procs::tree_cpu_secs),
        procs::cpu_secs(std::process::id()),
    )
}

/// Runs one step: `rate` requests/s for `duration`, request numbers from `first`.
pub async fn run_step(
    client: &reqwest::Client,
    workload: Arc<dyn Workload>,
    first: u64,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    watch: Watch,
) -> StepResult {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3)
            .unwrap_or_else(|_| unreachable!("valid histogram bounds")),
    ));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let tally = Arc::new(Tally::default());
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let interval_ns = 1e9 / rate;
    let (server0, db0, client0) = cpu_now(watch);
    let wal0 = watch.pg_port.and_then(procs::wal_position);
    let start = Instant::now() + Duration::from_millis(5);
    let mut not_sent = 0u64;
    let mut i = 0u64;
    while i < total {
        let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            not_sent += 1;
            i += 1;
            continue;
        };
        let (client, workload) = (client.clone(), workload.clone());
        let (hist, errors, tally) = (hist.clone(), errors.clone(), tally.clone());
        let n = first + i;
        tokio::spawn(async move {
            let req = workload.request(n);
            let outcome = send(&client, &req).await;
            let latency = due.elapsed().as_micros() as u64;
            match outcome {
                Ok(body) => {
                    hist.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .saturating_record(latency.clamp(1, HIST_MAX_US));
                    tally.ok_requests.fetch_add(1, Ordering::Relaxed);
                    tally.ok_ops.fetch_add(req.ops, Ordering::Relaxed);
                    if req.webhook {
                        count_outcomes(&tally, &body);
                    }
                }
                Err(kind) => {
                    *errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(kind)
                        .or_default() += 1;
                }
            }
            drop(permit);
        });
        i += 1;
    }
    let _ = tokio::time::timeout(
        DRAIN_TIMEOUT,
        slots.acquire_many(max_in_flight.try_into().unwrap_or(u32::MAX)),
    )
    .await;
    let elapsed_s = start.elapsed().as_secs_f64().max(duration.as_secs_f64());
    let (server1, db1, client1) = cpu_now(watch);
    let wal1 = watch.pg_port.and_then(procs::wal_position);
    let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if not_sent > 0 {
        errors.insert("not_sent".into(), not_sent);
    }
    let hist = hist.lock().unwrap_or_else(|e| e.into_inner()).clone();
    StepResult {
        target_rps: rate,
        elapsed_s,
        sent: total - not_sent,
        ok_requests: tally.ok_requests.load(Ordering::Relaxed),
        ok_ops: tally.ok_ops.load(Ordering::Relaxed),
        errors,
        hist,
        server_cpu_s: server1 - server0,
        db_cpu_s: db1 - db0,
        client_cpu_s: client1 - client0,
        server_rss_mib: watch.server.map_or(0.0, procs::rss_mib),
        wal_bytes: wal0.zip(wal1).map(|(a, b)| b.saturating_sub(a)),
        outcomes: [
            tally.applied.load(Ordering::Relaxed),
            tally.duplicates.load(Ordering::Relaxed),
            tally.ignored.load(Ordering::Relaxed),
            tally.rejected.load(Ordering::Relaxed),
        ],
        commit: None,
    }
}

fn count_outcomes(tally: &Tally, body: &[u8]) {
    if let Ok(s) = serde_json::from_slice::<WebhookSummary>(body) {
        tally.applied.fetch_add(s.applied, Ordering::Relaxed);
        tally.duplicates.fetch_add(s.duplicates, Ordering::Relaxed);
        tally.ignored.fetch_add(s.ignored, Ordering::Relaxed);
        tally.rejected.fetch_add(s.rejected, Ordering::Relaxed);
    }
}

/// Sends one request; a 2xx answers its body, anything else the error's name (status or kind).
pub async fn send(client: &reqwest::Client, req: &Req) -> Result<Vec<u8>, String> {
    let mut builder = match req.method {
        Method::Get => client.get(&req.url),
        Method::Post => client.post(&req.url),
    };
    for (name, value) in &req.headers {
        builder = builder.header(*name, value);
    }
    if let Some(body) = &req.body {
        builder = builder
            .header("Content-Type", "application/json")
            .body(body.clone());
    }
    match builder.send().await {
        Ok(response) => {
            let status = response.status();
            let body = response.bytes().await.map_err(|_| "body".to_owned())?;
            if status.is_success() {
                Ok(body.to_vec())
            } else {
                Err(status.as_u16().to_string())
            }
        }
        Err(e) if e.is_timeout() => Err("timeout".into()),
        Err(e) if e.is_connect() => Err("connect".into()),
        Err(_) => Err("transport".into()),
    }
}
