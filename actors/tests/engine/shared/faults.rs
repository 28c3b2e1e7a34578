//! Store failures injected around any `EventStore`: a whole batch refused before it reaches
//! storage, one unit of a batch failing (later units of the same entities fenced, the others
//! committed for real), and a batch that commits but whose reply is lost (`Ambiguous`).
//! Whatever passes through is a real commit of the store underneath.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use payrail_actors::domain::TenantId;
use payrail_actors::domain::{Event, Invoice, InvoiceId, Payment, PaymentId, RefundId, StreamId};
use payrail_actors::ports::{BatchFence, EventStore, IdempotencyRecord, Loaded, StoreError, Unit};

/// The faults a property run arms between its operations.
pub trait Faults: Send + Sync {
    /// The next `n` batches fail entirely (nothing written).
    fn fail_next_batches(&self, n: usize);
    /// In the next batch holding more than `index` units, the unit at `index` fails.
    fn fail_unit_of_next_batch(&self, index: usize);
    /// The next `n` batches commit but report an unknown outcome.
    fn lose_next_replies(&self, n: usize);
    fn disarm_faults(&self);
    /// Batches the store was asked to append so far (to tell when the engine went quiet).
    fn batches_seen(&self) -> usize;
}

impl Faults for payrail_actors::memory::MemoryStore {
    fn fail_next_batches(&self, n: usize) {
        Self::fail_next_batches(self, n);
    }
    fn fail_unit_of_next_batch(&self, index: usize) {
        Self::fail_unit_of_next_batch(self, index);
    }
    fn lose_next_replies(&self, n: usize) {
        Self::lose_next_replies(self, n);
    }
    fn disarm_faults(&self) {
        Self::disarm_faults(self);
    }
    fn batches_seen(&self) -> usize {
        self.batches_committed()
    }
}

pub struct FaultyStore {
    inner: Arc<dyn EventStore>,
    fail_batches: AtomicUsize,
    lose_replies: AtomicUsize,
    /// Index + 1 of the unit to fail in the next batch large enough (0 = off).
    fail_unit: AtomicUsize,
    batches: AtomicUsize,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn EventStore>) -> Self {
        Self {
            inner,
            fail_batches: AtomicUsize::new(0),
            lose_replies: AtomicUsize::new(0),
            fail_unit: AtomicUsize::new(0),
            batches: AtomicUsize::new(0),
        }
    }

    fn take(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The unit to fail in a batch of `len` units, if the armed fault fits it (it fires once).
    fn failing_unit(&self, len: usize) -> Option<usize> {
        let armed = self.fail_unit.load(Ordering::SeqCst);
        let fits = armed > 0 && armed <= len;
        (fits
            && self
                .fail_unit
                .compare_exchange(armed, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok())
        .then(|| armed - 1)
    }
}

impl Faults for FaultyStore {
    fn fail_next_batches(&self, n: usize) {
        self.fail_batches.store(n, Ordering::SeqCst);
    }
    fn fail_unit_of_next_batch(&self, index: usize) {
        self.fail_unit.store(index + 1, Ordering::SeqCst);
    }
    fn lose_next_replies(&self, n: usize) {
        self.lose_replies.store(n, Ordering::SeqCst);
    }
    fn disarm_faults(&self) {
        self.fail_batches.store(0, Ordering::SeqCst);
        self.lose_replies.store(0, Ordering::SeqCst);
        self.fail_unit.store(0, Ordering::SeqCst);
    }
    fn batches_seen(&self) -> usize {
        self.batches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EventStore for FaultyStore {
    async fn append_batch(&self, units: Vec<Unit>) -> Vec<Result<(), StoreError>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        if Self::take(&self.fail_batches) {
            let err = StoreError::Unavailable("injected batch failure".into());
            return units.iter().map(|_| Err(err.clone())).collect();
        }
        let failing = self.failing_unit(units.len());
        let lose_reply = Self::take(&self.lose_replies);
        // The failed unit and every unit decided on top of it stay out; the rest is committed
        // by the store underneath, which fences nothing it never saw.
        let mut fence = BatchFence::default();
        let mut results: Vec<Option<Result<(), StoreError>>> = Vec::with_capacity(units.len());
        let mut passed = Vec::new();
        let mut positions = Vec::new();
        for (i, unit) in units.into_iter().enumerate() {
            let verdict = fence.guard(&unit, || {
                if failing == Some(i) {
                    Err(StoreError::Unavailable("injected unit failure".into()))
                } else {
                    Ok(())
                }
            });
            match verdict {
                Ok(()) => {
                    positions.push(i);
                    passed.push(unit);
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(err))),
            }
        }
        if !passed.is_empty() {
            let committed = self.inner.append_batch(passed).await;
            for (i, result) in positions.into_iter().zip(committed) {
                results[i] = Some(result);
            }
        }
        let results = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Corrupt("no result".into()))));
        if lose_reply {
            let err = StoreError::Ambiguous("injected lost reply".into());
            return results.map(|_| Err(err.clone())).collect();
        }
        results.collect()
    }

    async fn load_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Loaded<Invoice>>, StoreError> {
        self.inner.load_invoice(tenant, id).await
    }

    async fn load_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Loaded<Payment>>, StoreError> {
        self.inner.load_payment(tenant, id).await
    }

    async fn load_stream(
        &self,
        tenant: TenantId,
        stream: StreamId,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.load_stream(tenant, stream).await
    }

    async fn payment_gateway_events(
        &self,
        tenant: TenantId,
        payment: PaymentId,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.payment_gateway_events(tenant, payment).await
    }

    async fn idempotency_record(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency_record(tenant, key).await
    }

    async fn last_invoice_number(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.inner.last_invoice_number(tenant).await
    }

    async fn payments_awaiting_charge(
        &self,
        after: Option<PaymentId>,
        limit: usize,
    ) -> Result<Vec<(TenantId, PaymentId)>, StoreError> {
        self.inner.payments_awaiting_charge(after, limit).await
    }

    async fn refunds_awaiting_outcome(
        &self,
        after: Option<RefundId>,
        limit: usize,
    ) -> Result<Vec<(TenantId, PaymentId, RefundId)>, StoreError> {
        self.inner.refunds_awaiting_outcome(after, limit).await
    }
}
