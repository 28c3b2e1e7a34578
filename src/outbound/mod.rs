//! Events to tenants: outbound webhooks by the Standard Webhooks specification. The audit log
//! is the outbox: nothing is written on the commit path; a dispatcher tails each tenant's log
//! by `sequence` with a durable cursor per endpoint, signs and posts each event, and keeps a
//! durable record of every retry it owes.
//!
//! `signing` (secrets, signatures), `ssrf` (which targets are allowed), `schedule` (when to
//! retry), `deliver` (one HTTP attempt), `tail` (a tenant's recent events, read once for all
//! of its endpoints), `worker` (one endpoint's loop), `grouped` (the workers' reads and
//! records, a statement per group), `dispatcher` (the workers, woken by commits), `metrics`.

pub mod deliver;
pub mod dispatcher;
mod grouped;
pub mod metrics;
pub mod schedule;
pub mod signing;
pub mod ssrf;
mod tail;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use payrail_actors::ports::Clock;
use serde::Deserialize;
use tokio::sync::{watch, Notify, Semaphore};

use crate::store::{Db, Lease};
pub use schedule::RetrySchedule;
pub use ssrf::{DnsServers, TargetPolicy};

/// The shortest lease taken, whatever the setting.
const LEASE_MIN: Duration = Duration::from_millis(300);

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
    /// The nameservers endpoint names are looked up with, when they are checked and again
    /// for each connection: `ip[:port]`, comma-separated. Unset: the system's resolver.
    pub dns_servers: DnsServers,
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
    /// How long a node's delivery lease on an endpoint lasts unless renewed (it is renewed
    /// every third of this while the node works); after a node dies, another takes its
    /// endpoints over within this long.
    pub lease_ms: u64,
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
            dns_servers: DnsServers::SYSTEM,
            retry_schedule_ms: schedule::STANDARD_DELAYS_SECS
                .iter()
                .map(|s| s * 1_000)
                .collect(),
            timeout_ms: 15_000,
            disable_after_failing_secs: 5 * 24 * 3_600,
            concurrency_per_endpoint: 8,
            concurrency_total: 256,
            sweep_ms: 1_000,
            lease_ms: 30_000,
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
            dns_servers: self.dns_servers.clone(),
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

    /// How long a lease lasts (at least the floor a renewal needs).
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms).max(LEASE_MIN)
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
    /// This node's claim on the endpoints it delivers to (its id is unique per dispatcher).
    pub(crate) lease: Lease,
    /// Set (to the grace its rounds under way get) to stop the dispatcher; it answers on
    /// `stopped` once its leases are released.
    pub(crate) stop: watch::Sender<Option<Duration>>,
    pub(crate) stopped: watch::Sender<bool>,
    pub(crate) started: AtomicBool,
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
                db,
                clock,
                client,
                changed: Notify::new(),
                metrics: metrics::OutboundMetrics::default(),
                lease: Lease {
                    owner: format!("{}@{}", std::process::id(), uuid::Uuid::now_v7().simple()),
                    duration: settings.lease(),
                },
                stop: watch::Sender::new(None),
                stopped: watch::Sender::new(false),
                started: AtomicBool::new(false),
                settings,
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
        if self.shared.settings.enabled && !self.shared.started.swap(true, Ordering::SeqCst) {
            dispatcher::spawn(self.shared.clone());
        }
        dispatcher::spawn_purge(self.shared.clone());
    }

    /// Stops the dispatcher: no new rounds, the rounds under way get `grace` to be recorded
    /// (then they are dropped, to be sent again by whichever node takes over), and this node's
    /// leases are released so that another node takes its endpoints over at once.
    pub async fn shutdown(&self, grace: Duration) {
        if !self.shared.started.load(Ordering::SeqCst) {
            return;
        }
        self.shared.stop.send_replace(Some(grace));
        let mut stopped = self.shared.stopped.subscribe();
        // The release itself is bounded by the store's query deadline.
        let bound = grace + crate::store::QUERY_DEADLINE;
        if tokio::time::timeout(bound, stopped.wait_for(|s| *s))
            .await
            .is_err()
        {
            tracing::warn!("outbound dispatcher did not stop in time; its leases will expire");
        }
    }

    /// This node's id as a lease owner.
    pub fn node_id(&self) -> &str {
        &self.shared.lease.owner
    }

    /// The dispatcher's metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render(self.shared.clock.now())
    }
}
