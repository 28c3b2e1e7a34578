//! Shared setup for engine tests: an engine over the in-memory store and a recording gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use payrail_actors::domain::{
    EventData, Invoice, InvoiceId, InvoiceInput, Payment, PaymentMethodInput, StreamId, TenantId,
};
use payrail_actors::engine::{Context, Outcome, PaymentAttempt};
use payrail_actors::memory::MemoryStore;
use payrail_actors::ports::{
    AccountRegistration, ChargeRequest, EventStore, Gateway, GatewayError, RefundRequest,
    SystemClock,
};
use payrail_actors::{Engine, EngineConfig};

/// Records every call; answers like a healthy gateway (reference per payment).
#[derive(Default)]
pub struct RecordingGateway {
    pub charges: Mutex<HashMap<String, usize>>,
    pub refunds: Mutex<Vec<RefundRequest>>,
    pub down: std::sync::atomic::AtomicBool,
    /// Refuse every charge for good (HTTP 402), with a message that echoes the request.
    pub refuse: std::sync::atomic::AtomicBool,
    /// Refuse every refund for good (HTTP 422).
    pub refuse_refunds: std::sync::atomic::AtomicBool,
    /// Hold every charge this long before answering (a slow gateway).
    pub stall_ms: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl Gateway for RecordingGateway {
    async fn register_account(&self, _: &AccountRegistration) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn create_charge(&self, request: &ChargeRequest) -> Result<String, GatewayError> {
        let stall = self.stall_ms.load(std::sync::atomic::Ordering::SeqCst);
        if stall > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(stall)).await;
        }
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GatewayError::Unavailable("down".into()));
        }
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GatewayError::Rejected {
                status: 402,
                message: format!("card refused for {}", request.payment_id),
            });
        }
        let key = request.payment_id.to_string();
        *self.charges.lock().unwrap().entry(key.clone()).or_default() += 1;
        Ok(format!("ch_{key}"))
    }

    async fn create_refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GatewayError::Unavailable("down".into()));
        }
        if self
            .refuse_refunds
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(GatewayError::Rejected {
                status: 422,
                message: format!("refund refused for {}", request.refund_id),
            });
        }
        self.refunds.lock().unwrap().push(request.clone());
        Ok(format!("rf_{}", request.refund_id))
    }
}

pub struct Harness {
    pub engine: Engine,
    pub store: Arc<MemoryStore>,
    pub gateway: Arc<RecordingGateway>,
    pub tenant: TenantId,
}

pub fn config() -> EngineConfig {
    EngineConfig {
        arbiters: 2,
        recovery_interval: Duration::ZERO,
        charge_retry_base: Duration::from_millis(1),
        charge_retry_max: 1,
        ..EngineConfig::default()
    }
}

/// `config()` with a writer that waits 10 ms before each batch, so units queued close together
/// share it even on a loaded machine.
pub fn lingering_config() -> EngineConfig {
    EngineConfig {
        commit_linger: Duration::from_millis(10),
        ..config()
    }
}

pub fn harness(config: EngineConfig) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let gateway = Arc::new(RecordingGateway::default());
    let engine = Engine::start(
        config,
        store.clone() as Arc<dyn EventStore>,
        gateway.clone() as Arc<dyn Gateway>,
        Arc::new(SystemClock),
    );
    Harness {
        engine,
        store,
        gateway,
        tenant: TenantId::new(),
    }
}

pub fn invoice_input(unit_amount: i64) -> InvoiceInput {
    serde_json::from_value(serde_json::json!({
        "customerName": "Jane Doe",
        "currency": "USD",
        "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": unit_amount}],
    }))
    .unwrap()
}

pub fn card(number: &str) -> PaymentMethodInput {
    serde_json::from_value(serde_json::json!({
        "type": "card", "number": number, "expMonth": 12, "expYear": 2040, "cvc": "123"
    }))
    .unwrap()
}

impl Harness {
    pub fn ctx(&self) -> Context {
        Context::new(self.tenant, "key_test")
    }

    /// A card payment of `amount` on `invoice`, acknowledged.
    pub async fn pay(&self, invoice: InvoiceId, amount: Option<i64>) -> Payment {
        let attempt = PaymentAttempt {
            invoice_id: invoice,
            amount,
            method: card("4242424242424242"),
        };
        match self
            .engine
            .attempt_payment(self.ctx(), attempt)
            .await
            .unwrap()
        {
            Outcome::Fresh(payment) => payment,
            Outcome::Replayed(_) => panic!("unexpected replay"),
        }
    }

    pub async fn open_invoice(&self, total: i64) -> Invoice {
        match self
            .engine
            .create_invoice(self.ctx(), invoice_input(total), true)
            .await
            .unwrap()
        {
            Outcome::Fresh(invoice) => invoice,
            Outcome::Replayed(_) => panic!("unexpected replay"),
        }
    }

    /// Checks the durable log: contiguous versions per stream, each gateway event applied at
    /// most once, snapshots equal to a replay of the events, and the domain invariants.
    pub fn check_log(&self) {
        let (events, invoices, payments) = self.store.view();
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| e.tenant_id == self.tenant)
            .collect();
        let mut versions: HashMap<StreamId, u64> = HashMap::new();
        let mut gateway_ids: HashMap<String, usize> = HashMap::new();
        for event in &events {
            let last = versions.entry(event.stream).or_insert(0);
            assert_eq!(
                event.version,
                *last + 1,
                "non-contiguous stream {}",
                event.stream
            );
            *last = event.version;
            if let Some(id) = &event.gateway_event_id {
                *gateway_ids.entry(id.clone()).or_default() += 1;
            }
        }
        for (id, count) in gateway_ids {
            assert_eq!(count, 1, "gateway event {id} applied {count} times");
        }
        for stream in versions.keys() {
            match stream {
                StreamId::Invoice(id) => {
                    let mut replayed = Invoice::blank(self.tenant, *id, events[0].occurred_at);
                    events
                        .iter()
                        .filter(|e| e.invoice_id == Some(*id))
                        .for_each(|e| replayed.apply(e));
                    let stored = invoices
                        .get(&(self.tenant, *id))
                        .cloned()
                        .expect("projection");
                    replayed.created_at = stored.created_at;
                    if replayed.version == 0 {
                        continue;
                    }
                    assert_eq!(replayed, stored, "invoice projection differs from replay");
                    stored.check_invariants().unwrap();
                }
                StreamId::Payment(id) => {
                    let mut replayed = payrail_actors::domain::Payment::blank(
                        self.tenant,
                        *id,
                        events[0].occurred_at,
                    );
                    events
                        .iter()
                        .filter(|e| e.stream == *stream)
                        .for_each(|e| replayed.apply(e));
                    let stored = payments
                        .get(&(self.tenant, *id))
                        .cloned()
                        .expect("projection");
                    assert_eq!(replayed, stored, "payment projection differs from replay");
                    stored.check_invariants().unwrap();
                }
                StreamId::ApiKey(_) => {}
            }
        }
        // Every invoice.paid is backed by succeeded payments summing to its total.
        for event in &events {
            if let EventData::InvoicePaid { amount_paid } = event.data {
                let StreamId::Invoice(id) = event.stream else {
                    continue;
                };
                let stored = &invoices[&(self.tenant, id)];
                assert_eq!(amount_paid, stored.details.total);
            }
        }
    }
}
