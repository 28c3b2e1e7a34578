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

use crate::{conn, procs};

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
    /// The step's WAL positions (start, end).
    pub wal_range: Option<(u64, u64)>,
    /// Where the WAL went, per applied event (`--wal-detail`).
    pub wal_detail: Option<serde_json::Value>,
    /// Webhook outcomes: applied, duplicates, ignored, rejected.
    pub outcomes: [u64; 4],
    /// Group-commit figures from the engine's `/metrics` over the step (when scraped).
    pub commit: Option<CommitStats>,
    /// What each kind of the engine's threads used over the step.
    pub threads: BTreeMap<String, procs::ThreadUse>,
}

/// Deltas of the engine's commit counters over a step.
#[derive(Clone)]
pub struct CommitStats {
    pub batches: f64,
    pub units: f64,
    pub events: f64,
    pub commit_ms_total: f64,
    /// Each audit writer's time in commits, in writer order.
    pub writer_commit_ms: Vec<f64>,
}

impl CommitStats {
    pub fn units_per_batch(&self) -> f64 {
        self.units / self.batches.max(1.0)
    }

    pub fn ms_per_batch(&self) -> f64 {
        self.commit_ms_total / self.batches.max(1.0)
    }

    /// Each writer's share of a step of `elapsed_s` spent committing, in writer order.
    pub fn writers_busy(&self, elapsed_s: f64) -> impl Iterator<Item = f64> + '_ {
        self.writer_commit_ms
            .iter()
            .map(move |ms| ms / 1_000.0 / elapsed_s.max(1e-9))
    }
}

/// Per audit writer: `WRITER_COMMIT_MICROS{writer="i"}`.
const WRITER_COMMIT_MICROS: &str = "payrail_audit_writer_commit_duration_microseconds_total";
/// Per outcome: `WEBHOOK_EVENTS{outcome="applied"}`, and duplicate, ignored, rejected.
const WEBHOOK_EVENTS: &str = "payrail_webhook_events_total{";

/// The engine's unlabelled counters from `/metrics`, the audit writers' and the webhook
/// events' by outcome (empty if unreachable).
pub async fn counters(client: &reqwest::Client, base_url: &str) -> HashMap<String, f64> {
    let Ok(response) = client.get(format!("{base_url}/metrics")).send().await else {
        return HashMap::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            !l.starts_with('#')
                && (!l.contains('{')
                    || l.starts_with(WRITER_COMMIT_MICROS)
                    || l.starts_with(WEBHOOK_EVENTS))
        })
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// How many webhook events the engine had taken, whatever it made of them, in `counters`.
pub fn webhook_events(counters: &HashMap<String, f64>) -> f64 {
    counters
        .iter()
        .filter(|(name, _)| name.starts_with(WEBHOOK_EVENTS))
        .map(|(_, n)| n)
        .sum()
}

pub fn commit_stats(
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
) -> Option<CommitStats> {
    let delta = |name: &str| Some(after.get(name)? - before.get(name)?);
    let writer_commit_ms = (0..)
        .map_while(|i| delta(&format!("{WRITER_COMMIT_MICROS}{{writer=\"{i}\"}}")))
        .map(|micros| micros / 1_000.0)
        .collect();
    Some(CommitStats {
        batches: delta("payrail_commit_batches_total")?,
        units: delta("payrail_commit_units_total")?,
        events: delta("payrail_commit_events_total")?,
        commit_ms_total: delta("payrail_commit_duration_microseconds_total")? / 1_000.0,
        writer_commit_ms,
    })
}

impl StepResult {
    pub fn achieved_rps(&self) -> f64 {
        self.per_sec(self.ok_requests)
    }

    pub fn achieved_ops(&self) -> f64 {
        self.per_sec(self.ok_ops)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1_000.0
    }

    /// CPU seconds per 1,000 successful operations.
    /// Applied webhook events (operations when nothing applied): what WAL is counted per.
    pub fn wal_events(&self) -> u64 {
        if self.outcomes[0] > 0 {
            self.outcomes[0]
        } else {
            self.ok_ops
        }
    }

    /// WAL bytes per applied webhook event (per op when nothing applied).
    pub fn wal_per_event(&self) -> Option<f64> {
        Some(self.wal_bytes? as f64 / self.wal_events().max(1) as f64)
    }

    /// The engine's CPU per webhook event that applied, in µs: what a target per applying
    /// event is measured in (duplicate and stale events' work included).
    pub fn engine_us_per_applied(&self) -> Option<f64> {
        self.us_per_applied(self.server_cpu_s)
    }

    /// `cpu_s` in µs per successful operation.
    pub fn us_per_op(&self, cpu_s: f64) -> f64 {
        1_000.0 * self.per_kop(cpu_s)
    }

    /// `n` things over the step, per second.
    pub fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed_s.max(1e-9)
    }

    /// `cpu_s` in µs per webhook event that applied.
    pub fn us_per_applied(&self, cpu_s: f64) -> Option<f64> {
        let applied = self.outcomes[0];
        (applied > 0).then(|| cpu_s * 1e6 / applied as f64)
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

/// Connections opened before a step starts (more open during it when needed).
const WARM_CONNECTIONS: usize = 128;

/// Runs one step: `rate` requests/s for `duration`, request numbers from `first`. Every request
/// is built (and signed) before the clock starts.
pub async fn run_step(
    workload: Arc<dyn Workload>,
    first: u64,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    watch: Watch,
) -> StepResult {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut addr = None;
    let mut prepared = Vec::with_capacity(total as usize);
    for i in 0..total {
        match conn::prepare(&workload.request(first + i)) {
            Ok((a, p)) => {
                addr.get_or_insert(a);
                prepared.push(p);
            }
            Err(e) => panic!("load: a workload request cannot be encoded: {e:#}"),
        }
    }
    let prepared = Arc::new(prepared);
    let pool = match addr {
        Some(addr) => Arc::new(conn::Pool::new(addr, WARM_CONNECTIONS.min(max_in_flight)).await),
        None => panic!("load: an empty step"),
    };
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3)
            .unwrap_or_else(|_| unreachable!("valid histogram bounds")),
    ));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let tally = Arc::new(Tally::default());
    let interval_ns = 1e9 / rate;
    let (server0, db0, client0) = cpu_now(watch);
    let threads0 = watch.server.map(procs::thread_use).unwrap_or_default();
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
        let (pool, prepared) = (pool.clone(), prepared.clone());
        let (hist, errors, tally) = (hist.clone(), errors.clone(), tally.clone());
        let n = i as usize;
        tokio::spawn(async move {
            let req = &prepared[n];
            let outcome = send(&pool, &req.bytes).await;
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
    let threads1 = watch.server.map(procs::thread_use).unwrap_or_default();
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
        wal_range: wal0.zip(wal1),
        wal_detail: None,
        outcomes: [
            tally.applied.load(Ordering::Relaxed),
            tally.duplicates.load(Ordering::Relaxed),
            tally.ignored.load(Ordering::Relaxed),
            tally.rejected.load(Ordering::Relaxed),
        ],
        commit: None,
        threads: procs::thread_use_since(&threads0, &threads1),
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

/// Sends one prepared request; a 2xx answers its body, anything else the error's name (status
/// or kind).
async fn send(pool: &conn::Pool, request: &[u8]) -> Result<Vec<u8>, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, pool.send(request)).await {
        Err(_) => Err("timeout".into()),
        Ok(Err(conn::Failure::Connect)) => Err("connect".into()),
        Ok(Err(conn::Failure::Transport)) => Err("transport".into()),
        Ok(Ok(answer)) if (200..300).contains(&answer.status) => Ok(answer.body),
        Ok(Ok(answer)) => Err(answer.status.to_string()),
    }
}
