//! The webhook receiver of the `delivery` scenario: this bench executable run as
//! `--role receiver`, a process of its own so its CPU time is counted apart from the engine's.
//! `POST /r/{endpoint}` answers 200 with an empty body at once; it verifies no signature and
//! only records, per delivery, the `webhook-id`, its arrival time, and the event's `sequence`
//! and `occurredAt` from the body. `POST /reset?sinceMs=` starts a new recording (deliveries of
//! events that occurred before `sinceMs` are counted as stale, not measured); `GET /stats`
//! answers the recording: counts and the latency from `occurredAt` to arrival.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::bail;
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::procs;

/// Two workers, as the stub and the engine's HTTP server (one per core).
const RECEIVER_WORKERS: usize = 2;
/// Latencies in microseconds, up to ten minutes.
const HIST_MAX_US: u64 = 600_000_000;

/// The part of a delivered event the receiver reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivered<'a> {
    sequence: i64,
    #[serde(borrow)]
    occurred_at: &'a str,
}

struct Recording {
    since_us: i64,
    hist: Histogram<u64>,
    /// (endpoint, webhook-id) of every delivery measured.
    seen: HashSet<(String, String)>,
    count: u64,
    duplicates: u64,
    stale: u64,
    unreadable: u64,
    /// Per endpoint: the highest sequence so far, and arrivals below it.
    highest: std::collections::HashMap<String, i64>,
    out_of_order: u64,
    first_us: Option<i64>,
    last_us: Option<i64>,
}

impl Recording {
    fn new(since_us: i64) -> Self {
        Self {
            since_us,
            hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3)
                .unwrap_or_else(|_| unreachable!("valid histogram bounds")),
            seen: HashSet::new(),
            count: 0,
            duplicates: 0,
            stale: 0,
            unreadable: 0,
            highest: Default::default(),
            out_of_order: 0,
            first_us: None,
            last_us: None,
        }
    }

    fn stats(&self) -> Value {
        let ms = |q: f64| self.hist.value_at_quantile(q) as f64 / 1_000.0;
        json!({
            "count": self.count, "distinct": self.seen.len(), "duplicates": self.duplicates,
            "stale": self.stale, "unreadable": self.unreadable, "outOfOrder": self.out_of_order,
            "firstUs": self.first_us, "lastUs": self.last_us,
            "latencyMs": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99),
                          "max": self.hist.max() as f64 / 1_000.0},
        })
    }
}

type Shared = web::Data<Arc<Mutex<Recording>>>;

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

async fn deliver(
    state: Shared,
    endpoint: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let arrived = now_us();
    let id = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let parsed = serde_json::from_slice::<Delivered>(&body)
        .ok()
        .and_then(|d| {
            let at = chrono::DateTime::parse_from_rfc3339(d.occurred_at).ok()?;
            Some((d.sequence, at.timestamp_micros()))
        });
    let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
    let r = &mut *guard;
    match parsed {
        None => r.unreadable += 1,
        // Committed before this recording started: a straggler of an earlier step.
        Some((_, occurred)) if occurred < r.since_us => r.stale += 1,
        Some((sequence, occurred)) => {
            let endpoint = endpoint.into_inner();
            let highest = r.highest.entry(endpoint.clone()).or_insert(i64::MIN);
            if sequence < *highest {
                r.out_of_order += 1;
            }
            *highest = (*highest).max(sequence);
            if r.seen.insert((endpoint, id)) {
                r.count += 1;
                let latency = (arrived - occurred).clamp(1, HIST_MAX_US as i64) as u64;
                r.hist.saturating_record(latency);
                r.first_us = Some(r.first_us.map_or(arrived, |f| f.min(arrived)));
                r.last_us = Some(r.last_us.map_or(arrived, |l| l.max(arrived)));
            } else {
                r.duplicates += 1;
            }
        }
    }
    drop(guard);
    HttpResponse::Ok().finish()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResetQuery {
    since_ms: i64,
}

async fn reset(state: Shared, q: web::Query<ResetQuery>) -> HttpResponse {
    *state.lock().unwrap_or_else(|e| e.into_inner()) = Recording::new(q.since_ms * 1_000);
    HttpResponse::Ok().finish()
}

async fn stats(state: Shared) -> HttpResponse {
    let body = state.lock().unwrap_or_else(|e| e.into_inner()).stats();
    HttpResponse::Ok().json(body)
}

pub fn serve(port: u16) -> anyhow::Result<()> {
    let state = web::Data::new(Arc::new(Mutex::new(Recording::new(0))));
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .route("/r/{endpoint}", web::post().to(deliver))
                .route("/reset", web::post().to(reset))
                .route("/stats", web::get().to(stats))
        })
        .workers(RECEIVER_WORKERS)
        .bind(("127.0.0.1", port))?
        .run()
        .await
    })?;
    Ok(())
}

/// What `GET /stats` answers.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub count: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub unreadable: u64,
    pub out_of_order: u64,
    pub first_us: Option<i64>,
    pub last_us: Option<i64>,
    pub latency_ms: Latency,
}

#[derive(Clone, Default, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The receiver child process, seen from the bench.
pub struct Receiver {
    child: Child,
    pub url: String,
    client: reqwest::Client,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let port = procs::free_port()?;
        let child = Command::new(std::env::current_exe()?)
            .args(["--role", "receiver", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()?;
        let receiver = Receiver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if receiver.reset(0).await.is_ok() {
                return Ok(receiver);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("receiver did not start")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL of endpoint `e` of tenant `t`.
    pub fn endpoint_url(&self, t: usize, e: usize) -> String {
        format!("{}/r/t{t}e{e}", self.url)
    }

    /// A new recording, measuring events that occurred from `since_ms` (unix milliseconds).
    pub async fn reset(&self, since_ms: i64) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/reset?sinceMs={since_ms}", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub async fn stats(&self) -> anyhow::Result<Stats> {
        Ok(self
            .client
            .get(format!("{}/stats", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
