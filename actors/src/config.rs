//! Engine limits and timings. Every queue and cache has a bound here.

use std::time::Duration;

/// Units per group commit: 256–512 measured as the sweet spot on PostgreSQL (BENCHMARKS.md).
pub const COMMIT_BATCH_MAX_UNITS: usize = 256;
/// Units an audit writer holds (queued + in flight) before answering `Overloaded`.
pub const AUDIT_QUEUE_CAPACITY: usize = 8_192;
pub const ENTITY_MAILBOX_CAPACITY: usize = 64;
pub const SUPERVISOR_MAILBOX_CAPACITY: usize = 4_096;
pub const TENANT_IN_FLIGHT_MAX: usize = 2_048;
pub const ENGINE_IN_FLIGHT_MAX: usize = 8_192;
pub const MAX_ACTIVE_ENTITIES_PER_TENANT: usize = 100_000;
/// Live entity actors on one node, every tenant's together (~2 KiB each).
pub const MAX_ACTIVE_ENTITIES: usize = 1_000_000;
/// Live tenant supervisors on one node.
pub const MAX_LIVE_SUPERVISORS: usize = 100_000;
pub const PASSIVATION_IDLE_SECS: u64 = 300;
/// How long a command may take end to end before its caller is answered `Unavailable`. Past
/// the storage deadlines (a pool checkout, a query), so it bites only when an actor or the
/// audit writer stops answering.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);
/// Gateway calls (charges and refunds after their commit) running at once, at most.
pub const GATEWAY_TASKS_MAX: usize = 256;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Arbiter threads for tenant supervisors (default: one per core).
    pub arbiters: usize,
    /// Audit writers; each keeps one batch in flight.
    pub audit_writers: usize,
    pub commit_batch_max_units: usize,
    pub audit_queue_capacity: usize,
    /// How long a writer waits for more units before flushing (0: flush when the mailbox drains).
    pub commit_linger: Duration,
    pub entity_mailbox_capacity: usize,
    pub supervisor_mailbox_capacity: usize,
    pub tenant_in_flight_max: usize,
    pub engine_in_flight_max: usize,
    /// A command not answered within this is answered `Unavailable` (503): its outcome is then
    /// unknown to the caller, as after a disconnect, and a retry under the same Idempotency-Key
    /// is safe.
    pub command_deadline: Duration,
    pub max_active_entities_per_tenant: usize,
    /// Live entity actors on the node; past it the least recently used idle ones passivate.
    pub max_active_entities: usize,
    /// Live tenant supervisors on the node; past it the least recently used ones with nothing
    /// in flight are retired. Never below `engine_in_flight_max`: every command in flight holds
    /// one supervisor, so a full node always has one to retire.
    pub max_live_supervisors: usize,
    pub passivation_idle: Duration,
    pub passivation_check_interval: Duration,
    /// Background charge re-sends after the gateway client's own retries gave up.
    pub charge_retry_max: u32,
    pub charge_retry_base: Duration,
    /// How often payments awaiting the gateway are swept from durable state (0: never).
    pub recovery_interval: Duration,
    /// A payment this young is left to its own submission by the sweep.
    pub recovery_min_age: Duration,
    /// Post-commit gateway calls running at once, at most. Beyond it the work is left in
    /// durable state (a payment `processing` without a reference, a refund `pending`) for the
    /// recovery sweep, so a gateway outage cannot pile up tasks without bound.
    pub gateway_tasks_max: usize,
    /// The deployment's key for card fingerprints (each tenant's is derived from it). The
    /// default is random per process: a deployment configures a lasting one.
    pub fingerprint_key: Vec<u8>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            audit_writers: 1,
            commit_batch_max_units: COMMIT_BATCH_MAX_UNITS,
            audit_queue_capacity: AUDIT_QUEUE_CAPACITY,
            commit_linger: Duration::ZERO,
            entity_mailbox_capacity: ENTITY_MAILBOX_CAPACITY,
            supervisor_mailbox_capacity: SUPERVISOR_MAILBOX_CAPACITY,
            tenant_in_flight_max: TENANT_IN_FLIGHT_MAX,
            engine_in_flight_max: ENGINE_IN_FLIGHT_MAX,
            command_deadline: COMMAND_DEADLINE,
            max_active_entities_per_tenant: MAX_ACTIVE_ENTITIES_PER_TENANT,
            max_active_entities: MAX_ACTIVE_ENTITIES,
            max_live_supervisors: MAX_LIVE_SUPERVISORS,
            passivation_idle: Duration::from_secs(PASSIVATION_IDLE_SECS),
            passivation_check_interval: Duration::from_secs(5),
            charge_retry_max: 5,
            gateway_tasks_max: GATEWAY_TASKS_MAX,
            charge_retry_base: Duration::from_millis(500),
            recovery_interval: Duration::from_secs(30),
            recovery_min_age: Duration::from_secs(10),
            fingerprint_key: rand::random::<[u8; 32]>().to_vec(),
        }
    }
}
