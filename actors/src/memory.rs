//! An in-memory `EventStore` with the same semantics as the SQL stores (atomic units, optimistic
//! versions, dedup and idempotency uniqueness) plus injectable failures, for tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::domain::{
    Event, Invoice, InvoiceId, Payment, PaymentId, PaymentStatus, RefundId, RefundStatus, StreamId,
    TenantId,
};
use crate::ports::{BatchFence, EventStore, IdempotencyRecord, Loaded, Snapshot, StoreError, Unit};

#[derive(Default)]
struct Inner {
    /// The log, in commit order (the global sequence is the index + 1).
    events: Vec<Event>,
    versions: HashMap<(TenantId, StreamId), u64>,
    invoices: HashMap<(TenantId, InvoiceId), Invoice>,
    payments: HashMap<(TenantId, PaymentId), Payment>,
    /// Ignored gateway events, by tenant, payment stream and gateway event id.
    dedup: HashSet<(TenantId, StreamId, String)>,
    idempotency: HashMap<(TenantId, String), IdempotencyRecord>,
    invoice_numbers: HashSet<(TenantId, u64)>,
    /// Gateway event ids on committed events (the SQL stores' unique index on the event row).
    applied_gateway_events: HashSet<(TenantId, String)>,
}

/// Failures to inject into the next appends.
#[derive(Default)]
struct Faults {
    /// Fail this many whole batches (nothing written, every unit gets `Unavailable`).
    fail_batches: AtomicUsize,
    /// Commit this many whole batches, then report `Ambiguous` as if the reply was lost.
    lose_replies: AtomicUsize,
    /// In the next batch, fail the unit at this index + 1 (0 = off).
    fail_unit: AtomicUsize,
    /// While set, batches wait before committing (a store that stopped answering).
    hold: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    faults: Faults,
    batches: AtomicUsize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` batches fail entirely.
    pub fn fail_next_batches(&self, n: usize) {
        self.faults.fail_batches.store(n, Ordering::SeqCst);
    }

    /// The next `n` batches commit but answer `Ambiguous`.
    pub fn lose_next_replies(&self, n: usize) {
        self.faults.lose_replies.store(n, Ordering::SeqCst);
    }

    /// In the next batch holding more than `index` units, the unit at `index` fails alone.
    pub fn fail_unit_of_next_batch(&self, index: usize) {
        self.faults.fail_unit.store(index + 1, Ordering::SeqCst);
    }

    /// Whether the fault armed by `fail_unit_of_next_batch` has yet to fire.
    pub fn unit_fault_armed(&self) -> bool {
        self.faults.fail_unit.load(Ordering::SeqCst) > 0
    }

    /// While `held`, every batch waits before it commits, as on a database that stopped
    /// answering; released, the waiting batches commit.
    pub fn hold_batches(&self, held: bool) {
        self.faults.hold.store(held, Ordering::SeqCst);
    }

    /// Clears every armed fault.
    pub fn disarm_faults(&self) {
        self.faults.fail_batches.store(0, Ordering::SeqCst);
        self.faults.lose_replies.store(0, Ordering::SeqCst);
        self.faults.fail_unit.store(0, Ordering::SeqCst);
    }

    /// How many batches were committed (for asserting that group commit groups).
    pub fn batches_committed(&self) -> usize {
        self.batches.load(Ordering::SeqCst)
    }

    /// Every event committed, in commit order.
    pub fn all_events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// The log and every projection, read atomically (one consistent view).
    #[allow(clippy::type_complexity)]
    pub fn view(
        &self,
    ) -> (
        Vec<Event>,
        HashMap<(TenantId, InvoiceId), Invoice>,
        HashMap<(TenantId, PaymentId), Payment>,
    ) {
        let inner = self.lock();
        let invoices = inner
            .invoices
            .keys()
            .filter_map(|&(tenant, id)| Some(((tenant, id), inner.invoice(tenant, id)?)))
            .collect();
        (inner.events.clone(), invoices, inner.payments.clone())
    }

    pub fn invoice_snapshot(&self, tenant: TenantId, id: InvoiceId) -> Option<Invoice> {
        self.lock().invoice(tenant, id)
    }

    pub fn payment_snapshot(&self, tenant: TenantId, id: PaymentId) -> Option<Payment> {
        self.lock().payments.get(&(tenant, id)).cloned()
    }

    pub fn dedup_count(&self) -> usize {
        self.lock().dedup.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write is staged first).
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Inner {
    /// An invoice with its reservations, rebuilt (like the SQL stores do) from its payments
    /// that are still `processing`: snapshots don't carry them.
    fn invoice(&self, tenant: TenantId, id: InvoiceId) -> Option<Invoice> {
        let mut invoice = self.invoices.get(&(tenant, id))?.clone();
        invoice.reservations = self
            .payments
            .iter()
            .filter(|((t, _), p)| {
                *t == tenant && p.invoice_id == id && p.status == PaymentStatus::Processing
            })
            .map(|((_, payment), p)| (*payment, p.amount))
            .collect();
        Some(invoice)
    }

    fn check(&self, unit: &Unit) -> Result<(), StoreError> {
        let tenant = unit
            .tenant_id
            .ok_or_else(|| StoreError::Corrupt("unit without tenant".into()))?;
        for append in &unit.streams {
            let current = self
                .versions
                .get(&(tenant, append.stream))
                .copied()
                .unwrap_or(0);
            if current != append.expected_version {
                return Err(StoreError::VersionConflict(append.stream.to_string()));
            }
            for (i, event) in append.events.iter().enumerate() {
                if event.version != append.expected_version + 1 + i as u64 {
                    return Err(StoreError::Corrupt(format!(
                        "non-contiguous versions in unit for {}",
                        append.stream
                    )));
                }
            }
        }
        for (id, stream) in unit.gateway_events() {
            if self.dedup.contains(&(tenant, stream, id.to_owned()))
                || self
                    .applied_gateway_events
                    .contains(&(tenant, id.to_owned()))
            {
                return Err(StoreError::DuplicateGatewayEvent(id.to_owned()));
            }
        }
        if let Some(record) = &unit.idempotency {
            if self.idempotency.contains_key(&(tenant, record.key.clone())) {
                return Err(StoreError::IdempotencyKeyTaken);
            }
        }
        if let Some(n) = unit.invoice_number() {
            let follows = n == 1 || self.invoice_numbers.contains(&(tenant, n - 1));
            if !follows || self.invoice_numbers.contains(&(tenant, n)) {
                return Err(StoreError::Fenced(format!("invoice number {n}")));
            }
        }
        Ok(())
    }

    fn write(&mut self, unit: Unit) {
        let Some(tenant) = unit.tenant_id else { return };
        let applied = unit
            .streams
            .iter()
            .flat_map(|s| &s.events)
            .filter_map(|e| e.gateway_event_id.clone())
            .map(|id| (tenant, id));
        self.applied_gateway_events.extend(applied);
        if let Some(n) = unit.invoice_number() {
            self.invoice_numbers.insert((tenant, n));
        }
        for append in unit.streams {
            let version = append.expected_version + append.events.len() as u64;
            self.versions.insert((tenant, append.stream), version);
            self.events.extend(append.events);
        }
        for snapshot in unit.snapshots {
            match snapshot {
                Snapshot::Invoice(invoice) => {
                    self.invoices.insert((tenant, invoice.id), *invoice);
                }
                Snapshot::Payment(payment) => {
                    self.payments
                        .insert((tenant, payment.id), Arc::unwrap_or_clone(payment));
                }
            }
        }
        for key in unit.dedup_keys {
            self.dedup.insert((
                tenant,
                StreamId::Payment(key.payment_id),
                key.gateway_event_id,
            ));
        }
        if let Some(record) = unit.idempotency {
            self.idempotency
                .insert((tenant, record.key.clone()), record);
        }
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_batch(&self, units: Vec<Unit>) -> Vec<Result<(), StoreError>> {
        while self.faults.hold.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if Self::take(&self.faults.fail_batches) {
            let err = StoreError::Unavailable("injected batch failure".into());
            return units.iter().map(|_| Err(err.clone())).collect();
        }
        // The fault stays armed until a batch is large enough to hold the unit it names.
        let armed = self.faults.fail_unit.load(Ordering::SeqCst);
        let failing_unit = if armed > 0
            && armed <= units.len()
            && self
                .faults
                .fail_unit
                .compare_exchange(armed, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            armed
        } else {
            0
        };
        let lose_reply = Self::take(&self.faults.lose_replies);
        let mut inner = self.lock();
        let mut results = Vec::with_capacity(units.len());
        let mut fence = BatchFence::default();
        for (i, unit) in units.into_iter().enumerate() {
            // Units later in a batch see the effects of earlier ones, as in one SQL transaction.
            let result = fence.guard(&unit, || {
                if failing_unit == i + 1 {
                    return Err(StoreError::Unavailable("injected unit failure".into()));
                }
                inner.check(&unit)
            });
            if result.is_ok() {
                inner.write(unit);
            }
            results.push(result);
        }
        self.batches.fetch_add(1, Ordering::SeqCst);
        if lose_reply {
            let err = StoreError::Ambiguous("injected lost reply".into());
            return results.into_iter().map(|_| Err(err.clone())).collect();
        }
        results
    }

    async fn load_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Loaded<Invoice>>, StoreError> {
        Ok(self.lock().invoice(tenant, id).map(|invoice| Loaded {
            snapshot: invoice,
            trailing: Vec::new(),
        }))
    }

    async fn load_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Loaded<Payment>>, StoreError> {
        Ok(self
            .lock()
            .payments
            .get(&(tenant, id))
            .map(|payment| Loaded {
                snapshot: payment.clone(),
                trailing: Vec::new(),
            }))
    }

    async fn load_stream(
        &self,
        tenant: TenantId,
        stream: StreamId,
    ) -> Result<Vec<Event>, StoreError> {
        let mut events: Vec<Event> = self
            .lock()
            .events
            .iter()
            .filter(|e| e.tenant_id == tenant && e.stream == stream)
            .cloned()
            .collect();
        events.sort_by_key(|e| e.version);
        Ok(events)
    }

    async fn payment_gateway_events(
        &self,
        tenant: TenantId,
        payment: PaymentId,
    ) -> Result<Vec<String>, StoreError> {
        let inner = self.lock();
        let stream = StreamId::Payment(payment);
        let ignored = inner
            .dedup
            .iter()
            .filter(|(t, s, _)| *t == tenant && *s == stream)
            .map(|(_, _, id)| id.clone());
        let applied = inner
            .events
            .iter()
            .filter(|e| e.tenant_id == tenant && e.stream == StreamId::Payment(payment))
            .filter_map(|e| e.gateway_event_id.clone());
        let mut ids: Vec<String> = ignored.chain(applied).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn idempotency_record(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self
            .lock()
            .idempotency
            .get(&(tenant, key.to_owned()))
            .cloned())
    }

    async fn last_invoice_number(&self, tenant: TenantId) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .invoices
            .values()
            .filter(|i| i.tenant_id == tenant)
            .filter_map(|i| i.number.strip_prefix("INV-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0))
    }

    async fn payments_awaiting_charge(
        &self,
        after: Option<PaymentId>,
        limit: usize,
    ) -> Result<Vec<(TenantId, PaymentId)>, StoreError> {
        let inner = self.lock();
        let ordered: BTreeMap<_, _> = inner
            .payments
            .values()
            .filter(|p| p.status == PaymentStatus::Processing && p.gateway_reference.is_none())
            .filter(|p| after.is_none_or(|after| p.id > after))
            .map(|p| (p.id, p.tenant_id))
            .collect();
        Ok(ordered
            .into_iter()
            .take(limit)
            .map(|(p, t)| (t, p))
            .collect())
    }

    async fn refunds_awaiting_outcome(
        &self,
        after: Option<RefundId>,
        limit: usize,
    ) -> Result<Vec<(TenantId, PaymentId, RefundId)>, StoreError> {
        let inner = self.lock();
        let ordered: BTreeMap<_, _> = inner
            .payments
            .values()
            .flat_map(|p| p.refunds.iter().map(move |r| (p.tenant_id, r)))
            .filter(|(_, r)| r.status == RefundStatus::Pending)
            .filter(|(_, r)| after.is_none_or(|after| r.id > after))
            .map(|(tenant, r)| (r.id, (tenant, r.payment_id)))
            .collect();
        Ok(ordered
            .into_iter()
            .take(limit)
            .map(|(refund, (tenant, payment))| (tenant, payment, refund))
            .collect())
    }
}
