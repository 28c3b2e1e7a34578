//! What the engine needs from the outside world: durable storage of events (`EventStore`), a
//! payment gateway (`Gateway`) and the time (`Clock`). `src/store` and `src/gateway` implement them
//! for real; `memory.rs` implements the store for tests.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::invoice::parse_number;
use crate::domain::{
    Currency, Event, EventData, Invoice, InvoiceId, Payment, PaymentId, PaymentSource, RefundId,
    StreamId, TenantId,
};

/// A stored response to an `Idempotency-Key` request, committed with the effect it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// Hash of method, path and body: a different request under the same key is refused.
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// The state of an entity after a unit commits: written to its read table in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Snapshot {
    Invoice(Box<Invoice>),
    /// Shared with the payment's actor, whose memory moves on to the same state.
    Payment(Arc<Payment>),
}

/// Events for one stream, appended only if the stream is still at `expected_version`.
/// A stream with no events still has its version checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected_version: u64,
    pub events: Vec<Event>,
}

/// A gateway event id recorded as seen (handled but ignored), with the payment it was routed
/// to. An applied gateway event needs none: the event it caused carries its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupKey {
    pub gateway_event_id: String,
    pub payment_id: PaymentId,
}

/// Everything one command changes, committed atomically or not at all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Unit {
    pub tenant_id: Option<TenantId>,
    pub streams: Vec<StreamAppend>,
    pub snapshots: Vec<Snapshot>,
    pub dedup_keys: Vec<DedupKey>,
    pub idempotency: Option<IdempotencyRecord>,
    /// The store's rendering of this unit, made while it waited in a writer's queue.
    pub prepared: Prepared,
}

/// What a store made of a unit ahead of its batch (`EventStore::prepare`): opaque to the
/// engine, taken at most once by the batch that writes the unit. It is a cache, not part of
/// the unit's content: a copy of the unit starts without it and two units compare equal
/// whatever it holds. A batch that finds it empty (taken by an earlier attempt) renders anew.
#[derive(Default)]
pub struct Prepared(Mutex<Option<Box<dyn Any + Send>>>);

impl Prepared {
    pub fn put(&self, value: Box<dyn Any + Send>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }

    /// Takes what was put if it is a `T`; anything else is dropped.
    pub fn take<T: Any>(&self) -> Option<T> {
        let value = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        value.downcast::<T>().ok().map(|b| *b)
    }
}

impl Clone for Prepared {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Prepared {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prepared")
    }
}

impl Unit {
    pub fn new(tenant_id: TenantId) -> Self {
        Self {
            tenant_id: Some(tenant_id),
            ..Self::default()
        }
    }

    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }

    /// The invoice number this unit takes, if it creates an invoice. A store accepts it only
    /// right after the tenant's previous number, so numbers stay gap-free even when creations
    /// are pipelined and one of them fails.
    pub fn invoice_number(&self) -> Option<u64> {
        self.streams
            .iter()
            .flat_map(|s| &s.events)
            .find_map(|e| match &e.data {
                EventData::InvoiceCreated { number, .. } => parse_number(number),
                _ => None,
            })
    }

    /// Every gateway event id the unit records, with the stream of the payment it is about:
    /// on its events (applied) or as dedup keys (ignored). A store refuses the unit if any of
    /// them is already recorded: applied for the tenant, or ignored for that payment.
    pub fn gateway_events(&self) -> impl Iterator<Item = (&str, StreamId)> {
        let applied = self.streams.iter().flat_map(|s| {
            s.events
                .iter()
                .filter_map(move |e| Some((e.gateway_event_id.as_deref()?, s.stream)))
        });
        let ignored = self
            .dedup_keys
            .iter()
            .map(|d| (d.gateway_event_id.as_str(), StreamId::Payment(d.payment_id)));
        applied.chain(ignored)
    }

    /// Appends no event and moves no projection: it only records ignored gateway events
    /// (dedup rows), or nothing at all (a barrier). A writer spends a small fraction of an
    /// appending unit's time on one.
    pub fn is_light(&self) -> bool {
        self.streams.is_empty() && self.snapshots.is_empty() && self.idempotency.is_none()
    }

    /// Writes nothing: a barrier that resolves once every unit queued before it has.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
            && self.snapshots.is_empty()
            && self.dedup_keys.is_empty()
            && self.idempotency.is_none()
    }
}

/// Within one batch, the stream versions that failed units would have produced. A later unit
/// expecting such a version was decided on top of the failed one, so every `EventStore` fails
/// it too, even when the stored version happens to match (another node may have written it).
#[derive(Debug, Default)]
pub struct BatchFence(HashSet<(TenantId, StreamId, u64)>);

impl BatchFence {
    pub fn check(&self, unit: &Unit) -> Result<(), StoreError> {
        let Some(tenant) = unit.tenant_id else {
            return Ok(());
        };
        match unit
            .streams
            .iter()
            .find(|s| self.0.contains(&(tenant, s.stream, s.expected_version)))
        {
            Some(append) => Err(StoreError::Fenced(append.stream.to_string())),
            None => Ok(()),
        }
    }

    pub fn record_failure(&mut self, unit: &Unit) {
        if let Some(tenant) = unit.tenant_id {
            self.0.extend(unit.streams.iter().map(|s| {
                let would_be = s.expected_version + s.events.len() as u64;
                (tenant, s.stream, would_be)
            }));
        }
    }

    /// Checks `unit`, runs `write` if it may pass, and records a failure either way.
    pub fn guard(
        &mut self,
        unit: &Unit,
        write: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let result = self.check(unit).and_then(|()| write());
        if result.is_err() {
            self.record_failure(unit);
        }
        result
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer moved the stream on: reload and retry, or answer 409.
    #[error("version conflict on stream {0}")]
    VersionConflict(String),
    /// The idempotency key was stored by a concurrent request (another node).
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    /// A gateway event id was recorded concurrently (another node).
    #[error("gateway event {0} already recorded")]
    DuplicateGatewayEvent(String),
    /// Storage can't be reached or the transaction failed: nothing of the unit was written.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The outcome is unknown (e.g. the connection broke during COMMIT): it may be durable.
    #[error("storage outcome unknown: {0}")]
    Ambiguous(String),
    /// An earlier unit of the same entity failed, so this one (decided on top of it) cannot
    /// commit; nothing of it was written and the entity reloads. Safe to retry.
    #[error("an earlier change to {0} failed; retry")]
    Fenced(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// An entity as stored: its snapshot plus any events recorded after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    pub snapshot: T,
    pub trailing: Vec<Event>,
}

impl<T> Loaded<T> {
    /// The entity now: its snapshot with the trailing events applied.
    pub fn replay(self, apply: impl Fn(&mut T, &Event)) -> T {
        let mut state = self.snapshot;
        self.trailing.iter().for_each(|e| apply(&mut state, e));
        state
    }
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Renders what the store will write for `unit` into `unit.prepared`. Called as the unit
    /// is left in its audit writer's inbox, on the delivering thread, while the writer's batch
    /// before it commits, so the batch that takes the unit spends less of its time on it. The
    /// default prepares nothing.
    fn prepare(&self, _unit: &Unit) {}

    /// Commits each unit atomically; one failing unit does not fail the others. The result has
    /// one entry per unit, in order, and is returned only once the commit is durable.
    async fn append_batch(&self, units: Vec<Unit>) -> Vec<Result<(), StoreError>>;

    async fn load_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Loaded<Invoice>>, StoreError>;

    async fn load_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Loaded<Payment>>, StoreError>;

    /// Every event of one stream, in version order.
    async fn load_stream(
        &self,
        tenant: TenantId,
        stream: StreamId,
    ) -> Result<Vec<Event>, StoreError>;

    /// The gateway event ids recorded against one payment (to rebuild its dedup set).
    async fn payment_gateway_events(
        &self,
        tenant: TenantId,
        payment: PaymentId,
    ) -> Result<Vec<String>, StoreError>;

    async fn idempotency_record(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// The highest invoice number the tenant has used (0 for none).
    async fn last_invoice_number(&self, tenant: TenantId) -> Result<u64, StoreError>;

    /// Payments still `processing` without a gateway reference: the gateway may never have seen
    /// them, so they are re-sent with the same idempotency key. Oldest first (ids are
    /// time-ordered), `limit` at a time, after the payment `after`.
    async fn payments_awaiting_charge(
        &self,
        after: Option<PaymentId>,
        limit: usize,
    ) -> Result<Vec<(TenantId, PaymentId)>, StoreError>;

    /// Refunds still `pending`: the gateway may never have seen them (a crash or an outage
    /// between commit and call), so they are asked for again (idempotent on the refund id).
    /// Oldest first (ids are time-ordered), `limit` at a time, after the refund `after`.
    async fn refunds_awaiting_outcome(
        &self,
        after: Option<RefundId>,
        limit: usize,
    ) -> Result<Vec<(TenantId, PaymentId, RefundId)>, StoreError>;
}

/// A charge request. `source` is `None` when re-sent from durable state (the card number is
/// never stored): the gateway then answers from its idempotency record or `UnknownCharge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub account: TenantId,
    pub payment_id: PaymentId,
    pub amount: i64,
    pub currency: Currency,
    pub source: Option<PaymentSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub account: TenantId,
    pub payment_id: PaymentId,
    pub refund_id: RefundId,
    pub amount: i64,
}

#[derive(Clone, PartialEq, Eq)]
pub struct AccountRegistration {
    pub account: TenantId,
    pub webhook_url: String,
    pub webhook_secret: String,
}

impl std::fmt::Debug for AccountRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRegistration")
            .field("account", &self.account)
            .field("webhook_url", &self.webhook_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Transport failure or 5xx: the request may or may not have arrived; retry with the same key.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused the request for good (4xx).
    #[error("gateway rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Re-sent without card data and the gateway has no charge under this key.
    #[error("gateway has no charge for this payment")]
    UnknownCharge,
    /// The gateway does not know the tenant's account (it lost its registration): the request
    /// can succeed once the account is registered again.
    #[error("gateway does not know the account")]
    UnknownAccount,
}

#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    async fn register_account(
        &self,
        registration: &AccountRegistration,
    ) -> Result<(), GatewayError>;
    /// Returns the gateway's charge reference (`ch_…`). Idempotent on `payment_id`.
    async fn create_charge(&self, request: &ChargeRequest) -> Result<String, GatewayError>;
    /// Returns the gateway's refund reference (`rf_…`). Idempotent on `refund_id`.
    async fn create_refund(&self, request: &RefundRequest) -> Result<String, GatewayError>;
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Microsecond precision: what both databases keep, so an event read back equals the one
    /// appended and a replay equals the live projection.
    fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        Utc::now().trunc_subsecs(6)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn what_a_store_prepared_is_taken_once_and_never_copied() {
        let unit = Unit::new(TenantId::new());
        unit.prepared.put(Box::new(7_u32));
        let copy = unit.clone();
        assert_eq!(copy, unit, "what was prepared is no part of the content");
        assert_eq!(copy.prepared.take::<u32>(), None);
        assert_eq!(unit.prepared.take::<String>(), None, "another type");
        unit.prepared.put(Box::new(7_u32));
        assert_eq!(unit.prepared.take::<u32>(), Some(7));
        assert_eq!(unit.prepared.take::<u32>(), None);
    }
}
