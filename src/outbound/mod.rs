//! Events to tenants: outbound webhooks by the Standard Webhooks specification. The audit log
//! is the outbox: nothing is written on the commit path; a dispatcher tails each tenant's log
//! by `sequence` with a durable cursor per endpoint, signs and posts each event, and keeps a
//! durable record of every retry it owes.
//!
//! `signing` (secrets, signatures), `ssrf` (which targets are allowed), `schedule` (when to
//! retry), `deliver` (one HTTP attempt), `worker` (one endpoint's loop), `dispatcher` (the
//! workers, woken by commits), `metrics`.

pub mod deliver;
pub mod dispatcher;
pub mod metrics;
pub mod schedule;
pub mod signing;
pub mod ssrf;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use payrail_actors::ports::Clock;
use serde::Deserialize;
use tokio::sync::{Notify, Semaphore};

use crate::store::Db;
pub use schedule::RetrySchedule;
pub use ssrf::TargetPolicy;

/// Outbound webhook settings (`PAYRAIL_OUTBOUND__*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    /// Run the dispatcher on this node.
    pub enabled: bool,
    /// Allow `http://` endpoint URLs.
    pub allow_http: bool,
    /// Allow loopback, private, link-local and other non-public targets.
    pub allow_private_targets: bool,
    /// Delays before each retry, in milliseconds; jittered by ±10 %. Once they are used up the
    /// delivery has failed.
    pub retry_schedule_ms: Vec<u64>,
    /// An attempt without a 2xx answer within this long has failed.
    pub timeout_ms: u64,
    /// An endpoint whose every attempt has failed for this long is disabled.
    pub disable_after_failing_secs: u64,
    /// Attempts in flight per endpoint, and across all endpoints.
    pub concurrency_per_endpoint: usize,
    pub concurrency_total: usize,
    /// How often each endpoint looks for due retries and other nodes' commits.
    pub sweep_ms: u64,
    /// Attempts older than this are purged from the attempts log.
    pub attempt_retention_hours: u64,
    /// How long a rotated-out endpoint secret keeps signing.
    pub secret_overlap_hours: u64,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_http: false,
            allow_private_targets: false,
            retry_schedule_ms: schedule::STANDARD_DELAYS_SECS
                .iter()
                .map(|s| s * 1_000)
                .collect(),
            timeout_ms: 15_000,
            disable_after_failing_secs: 5 * 24 * 3_600,
            concurrency_per_endpoint: 8,
            concurrency_total: 256,
            sweep_ms: 1_000,
            attempt_retention_hours: 30 * 24,
            secret_overlap_hours: 24,
        }
    }
}

impl OutboundSettings {
    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_http: self.allow_http,
            allow_private: self.allow_private_targets,
        }
    }

    pub fn schedule(&self) -> RetrySchedule {
        RetrySchedule::new(
            self.retry_schedule_ms
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect(),
        )
    }

    pub fn secret_overlap(&self) -> Duration {
        Duration::from_secs(self.secret_overlap_hours * 3_600)
    }
}

/// What the HTTP layer and the dispatcher share; cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) settings: OutboundSettings,
    pub(crate) schedule: RetrySchedule,
    pub(crate) db: Db,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) client: reqwest::Client,
    /// Attempts in flight across all endpoints.
    pub(crate) in_flight: Arc<Semaphore>,
    /// Endpoints were created, changed or given work by the API.
    pub(crate) changed: Notify,
    pub(crate) metrics: metrics::OutboundMetrics,
}

impl Outbound {
    /// The shared state and the delivery client (one connection pool for every endpoint, so
    /// connections to a host are kept alive and reused).
    pub fn new(settings: OutboundSettings, db: Db, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let client = deliver::client(&settings)?;
        Ok(Self {
            shared: Arc::new(Shared {
                schedule: settings.schedule(),
                in_flight: Arc::new(Semaphore::new(settings.concurrency_total.max(1))),
                settings,
                db,
                clock,
                client,
                changed: Notify::new(),
                metrics: metrics::OutboundMetrics::default(),
            }),
        })
    }

    pub fn settings(&self) -> &OutboundSettings {
        &self.shared.settings
    }

    /// Tells the dispatcher that endpoints or their queues changed.
    pub fn endpoints_changed(&self) {
        self.shared.changed.notify_one();
    }

    /// Starts the dispatcher (if enabled on this node) and the attempts purge.
    pub fn start(&self) {
        if self.shared.settings.enabled {
            dispatcher::spawn(self.shared.clone());
        }
        dispatcher::spawn_purge(self.shared.clone());
    }

    /// The dispatcher's metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render(self.shared.clock.now())
    }
}
