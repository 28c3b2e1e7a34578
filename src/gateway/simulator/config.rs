//! The simulator's knobs: webhook timing, chaos (duplicates, reordering, batching, dropped first
//! attempts), retry policy, seed and the bounds on every queue and table.

use serde::Deserialize;

/// Defaults give a well-behaved gateway: small delays, no chaos, in-order single-event bodies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Each event becomes due after a delay drawn uniformly from this range (ms). A charge's
    /// outcome is due a further such delay after its `payment.processing`.
    pub webhook_delay_min_ms: u64,
    pub webhook_delay_max_ms: u64,
    /// Probability (0..=1) that an event is delivered a second time (same event id), concurrently.
    pub duplicate_rate: f64,
    /// How many extra copies a duplicated event gets (1 = delivered twice in all).
    pub duplicate_copies: usize,
    /// Shuffle up to this many due deliveries before sending (0 or 1 = keep order).
    pub reorder_window: usize,
    /// Up to this many events of one account per webhook request, as `{"account","events":[…]}`
    /// (1 = single-event bodies). Capped at 500, the engine's limit.
    pub batch_size: usize,
    /// When batching or reordering, how long the first due event may wait for company (ms).
    pub batch_linger_ms: u64,
    /// Probability (0..=1) that a delivery's first attempt is treated as failed without sending.
    pub drop_first_attempt_rate: f64,
    /// Retry backoff: base (ms), doubling per attempt up to the max (ms), with jitter.
    pub retry_backoff_base_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// Attempts per delivery, the first included, before it is given up.
    pub max_attempts: u32,
    /// After a late-failure card's success is delivered, the stale failure follows after this (ms).
    pub late_failure_delay_ms: u64,
    /// Seeds every random choice (delays, chaos, jitter), for reproducible runs.
    pub seed: u64,
    /// Timeout of one webhook POST (ms).
    pub webhook_timeout_ms: u64,
    /// Webhook requests in flight at once, duplicates included.
    pub max_concurrent_deliveries: usize,
    /// Events scheduled but not yet delivered or given up; beyond it charges get 503.
    pub queue_capacity: usize,
    /// Charge and refund idempotency records kept (oldest evicted first).
    pub max_records: usize,
    /// actix-web worker threads of the standalone server.
    pub workers: usize,
}

/// Extra copies of one duplicated event, at most.
pub const MAX_DUPLICATE_COPIES: usize = 10;

/// The engine accepts at most this many events per webhook request (docs/api.md).
pub const MAX_BATCH_EVENTS: usize = 500;

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            webhook_delay_min_ms: 5,
            webhook_delay_max_ms: 20,
            duplicate_rate: 0.0,
            duplicate_copies: 1,
            reorder_window: 1,
            batch_size: 1,
            batch_linger_ms: 10,
            drop_first_attempt_rate: 0.0,
            retry_backoff_base_ms: 100,
            retry_backoff_max_ms: 5_000,
            max_attempts: 10,
            late_failure_delay_ms: 200,
            seed: 0,
            webhook_timeout_ms: 5_000,
            max_concurrent_deliveries: 64,
            queue_capacity: 100_000,
            max_records: 1_000_000,
            workers: 2,
        }
    }
}

impl SimulatorConfig {
    /// The same config with out-of-range values pulled into range.
    pub fn normalized(mut self) -> Self {
        self.webhook_delay_max_ms = self.webhook_delay_max_ms.max(self.webhook_delay_min_ms);
        self.duplicate_rate = clamp_rate(self.duplicate_rate);
        self.drop_first_attempt_rate = clamp_rate(self.drop_first_attempt_rate);
        self.reorder_window = self.reorder_window.max(1);
        self.duplicate_copies = self.duplicate_copies.clamp(1, MAX_DUPLICATE_COPIES);
        self.batch_size = self.batch_size.clamp(1, MAX_BATCH_EVENTS);
        self.retry_backoff_max_ms = self.retry_backoff_max_ms.max(self.retry_backoff_base_ms);
        self.max_attempts = self.max_attempts.max(1);
        self.max_concurrent_deliveries = self.max_concurrent_deliveries.max(1);
        self.queue_capacity = self.queue_capacity.max(3);
        self.max_records = self.max_records.max(1);
        self.workers = self.workers.max(1);
        self
    }
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}
