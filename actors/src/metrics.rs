//! Engine counters and gauges as plain atomics; the HTTP layer exports them to Prometheus.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct EngineMetrics {
    pub batches_committed: AtomicU64,
    pub units_committed: AtomicU64,
    pub units_failed: AtomicU64,
    pub events_committed: AtomicU64,
    pub commit_micros_total: AtomicU64,
    /// Units waiting in audit queues or in flight.
    pub audit_queue_depth: AtomicI64,
    pub active_invoice_actors: AtomicI64,
    pub active_payment_actors: AtomicI64,
    pub active_supervisors: AtomicI64,
    pub passivations: AtomicU64,
    pub actor_restarts: AtomicU64,
    /// Invoice actors lent to payment actors, which then settle with them directly.
    pub invoice_leases: AtomicU64,
    pub overloaded: AtomicU64,
    pub commands_in_flight: AtomicI64,
    pub gateway_calls: AtomicU64,
    pub gateway_retries: AtomicU64,
    pub charges_awaiting_gateway: AtomicI64,
    /// Charge and refund calls running now (bounded by `gateway_tasks_max`).
    pub gateway_tasks: AtomicI64,
    /// Post-commit calls that found `gateway_tasks_max` running and waited in line for a slot.
    pub gateway_calls_queued: AtomicU64,
    /// Post-commit calls that found every slot taken and the line full: left to the recovery
    /// sweep.
    pub gateway_calls_deferred: AtomicU64,
    /// Payments awaiting a charge and refunds awaiting an outcome, in durable state, as the
    /// last recovery sweep found them.
    pub recovery_backlog: AtomicI64,
    pub webhook_applied: AtomicU64,
    pub webhook_duplicates: AtomicU64,
    pub webhook_ignored: AtomicU64,
    pub webhook_rejected: AtomicU64,
    /// Batch-size histogram buckets (units per batch): ≤1, ≤8, ≤64, ≤256, more.
    pub batch_size_buckets: [AtomicU64; 5],
}

pub const BATCH_SIZE_BOUNDS: [u64; 4] = [1, 8, 64, 256];

impl EngineMetrics {
    pub fn record_batch(&self, units: usize, events: usize, failed: usize, micros: u64) {
        self.batches_committed.fetch_add(1, Ordering::Relaxed);
        self.units_committed
            .fetch_add((units - failed) as u64, Ordering::Relaxed);
        self.units_failed
            .fetch_add(failed as u64, Ordering::Relaxed);
        self.events_committed
            .fetch_add(events as u64, Ordering::Relaxed);
        self.commit_micros_total
            .fetch_add(micros, Ordering::Relaxed);
        let bucket = BATCH_SIZE_BOUNDS
            .iter()
            .position(|&bound| units as u64 <= bound)
            .unwrap_or(BATCH_SIZE_BOUNDS.len());
        self.batch_size_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Live invoice and payment actors on the node.
    pub fn active_entities(&self) -> i64 {
        self.active_invoice_actors.load(Ordering::Relaxed)
            + self.active_payment_actors.load(Ordering::Relaxed)
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn gauge(gauge: &AtomicI64) -> i64 {
        gauge.load(Ordering::Relaxed)
    }
}
