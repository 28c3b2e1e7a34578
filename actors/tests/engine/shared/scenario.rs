//! The property scenario, the same for every store: several tenants, each with three open
//! invoices, take random rounds of concurrent operations (payments and refunds with and without
//! idempotency keys and their retries, duplicated and shuffled gateway outcomes, voids, actor
//! panics, store failures, a gateway that goes down or refuses and comes back), then the
//! history is checked tenant by tenant.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use payrail_actors::domain::{
    GatewayOutcome, InvoiceCommand, InvoiceId, InvoiceInput, PaymentId, PaymentMethodInput,
    RefundId, StreamId, TenantId,
};
use payrail_actors::engine::{
    Context, GatewayEvent, IdempotencySpec, Outcome, PaymentAttempt, Rendered,
};
use payrail_actors::ports::{EventStore, Gateway, SystemClock};
use payrail_actors::{Engine, EngineConfig, EngineError};
use proptest::prelude::*;

use super::check::View;
use super::faults::Faults;
use super::gateway::{FlakyGateway, Mode};
use super::ledger::{Answer, Ledger};

pub const TENANTS: usize = 3;
pub const INVOICE_TOTALS: [i64; 3] = [500, 800, 1_000];

/// A store under test: where the engine writes, the faults it can inject, and a consistent
/// read of one tenant's durable state.
#[async_trait(?Send)]
pub trait Backend {
    fn store(&self) -> Arc<dyn EventStore>;
    fn faults(&self) -> &dyn Faults;
    async fn view(&self, tenant: TenantId) -> View;
}

/// Retries of one command under one idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    pub attempts: usize,
    /// All attempts at once (a client that retried before the first answer) or one by one.
    pub concurrent: bool,
}

#[derive(Debug, Clone)]
pub enum Op {
    /// `invoice` 3 is another tenant's invoice: refused, no effect anywhere.
    Pay {
        tenant: usize,
        invoice: usize,
        amount: Option<i64>,
        key: Option<Retries>,
    },
    Outcome {
        tenant: usize,
        payment: usize,
        success: bool,
        copies: usize,
        reverse: bool,
    },
    Refund {
        tenant: usize,
        payment: usize,
        amount: Option<i64>,
        key: Option<Retries>,
    },
    /// Webhooks for what the gateway really did for the tenant (charges, refunds), twice.
    Deliver {
        tenant: usize,
    },
    Void {
        tenant: usize,
        invoice: usize,
    },
    Panic {
        tenant: usize,
        payment: usize,
        invoice_side: bool,
    },
    FailStore {
        batches: usize,
    },
    /// The unit at this position of the next batch fails (units behind it are fenced).
    FailUnit {
        index: usize,
    },
    /// The next batch commits but its outcome is reported unknown.
    LoseReply,
    Gateway {
        charges: Mode,
        refunds: Mode,
    },
}

fn retries() -> impl Strategy<Value = Option<Retries>> {
    prop::option::of(
        (1..=3usize, any::<bool>()).prop_map(|(attempts, concurrent)| Retries {
            attempts,
            concurrent,
        }),
    )
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![2 => Just(Mode::Healthy), 1 => Just(Mode::Down), 1 => Just(Mode::Refuse)]
}

pub fn op() -> impl Strategy<Value = Op> {
    let t = 0..TENANTS;
    prop_oneof![
        4 => (t.clone(), 0..4usize, prop::option::of(1..600i64), retries())
            .prop_map(|(tenant, invoice, amount, key)| Op::Pay { tenant, invoice, amount, key }),
        4 => (t.clone(), 0..8usize, any::<bool>(), 1..=5usize, any::<bool>())
            .prop_map(|(tenant, payment, success, copies, reverse)| {
                Op::Outcome { tenant, payment, success, copies, reverse }
            }),
        2 => (t.clone(), 0..8usize, prop::option::of(1..400i64), retries())
            .prop_map(|(tenant, payment, amount, key)| Op::Refund { tenant, payment, amount, key }),
        1 => t.clone().prop_map(|tenant| Op::Deliver { tenant }),
        1 => (t.clone(), 0..3usize).prop_map(|(tenant, invoice)| Op::Void { tenant, invoice }),
        1 => (t, 0..8usize, any::<bool>())
            .prop_map(|(tenant, payment, invoice_side)| Op::Panic { tenant, payment, invoice_side }),
        1 => (1..3usize).prop_map(|batches| Op::FailStore { batches }),
        1 => (1..6usize).prop_map(|index| Op::FailUnit { index }),
        1 => Just(Op::LoseReply),
        1 => (mode(), mode()).prop_map(|(charges, refunds)| Op::Gateway { charges, refunds }),
    ]
}

/// Rounds of operations (each round's run concurrently), and the engine's settings.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rounds: Vec<Vec<Op>>,
    pub passivate: bool,
    pub linger: bool,
}

pub fn plan(max_rounds: usize) -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(prop::collection::vec(op(), 1..5), 1..max_rounds),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(rounds, passivate, linger)| Plan {
            rounds,
            passivate,
            linger,
        })
}

pub fn config(plan: &Plan) -> EngineConfig {
    let mut cfg = EngineConfig {
        arbiters: 2,
        recovery_interval: Duration::ZERO,
        recovery_min_age: Duration::ZERO,
        charge_retry_base: Duration::from_millis(1),
        charge_retry_max: 1,
        ..EngineConfig::default()
    };
    if plan.linger {
        // Batches then hold several units of one entity: pipelines meet failures mid-way.
        cfg.commit_linger = Duration::from_micros(500);
    }
    if plan.passivate {
        cfg.passivation_idle = Duration::ZERO;
        cfg.passivation_check_interval = Duration::from_millis(1);
    }
    cfg
}

fn invoice_input(total: i64) -> InvoiceInput {
    serde_json::from_value(serde_json::json!({
        "customerName": "Jane Doe",
        "currency": "USD",
        "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": total}],
    }))
    .unwrap()
}

fn card() -> PaymentMethodInput {
    serde_json::from_value(serde_json::json!({
        "type": "card", "number": "4242424242424242", "expMonth": 12, "expYear": 2040, "cvc": "123"
    }))
    .unwrap()
}

/// The stored response names the entity: a replay tells which one the key produced.
fn spec(key: &str, fingerprint: String) -> IdempotencySpec {
    IdempotencySpec {
        key: key.into(),
        fingerprint,
        status: 201,
        render: Arc::new(|rendered| match rendered {
            Rendered::Invoice(i) => i.id.to_string(),
            Rendered::Payment(p) => p.id.to_string(),
            Rendered::Refund(r) => r.id.to_string(),
        }),
    }
}

/// Errors after which the command certainly had no effect. Anything else (a lost reply, an
/// actor gone before answering) leaves the outcome unknown.
fn no_effect(err: &EngineError) -> bool {
    use payrail_actors::ports::StoreError as S;
    match err {
        EngineError::Storage(S::Ambiguous(_) | S::Corrupt(_)) | EngineError::Unavailable(_) => {
            false
        }
        EngineError::Storage(_)
        | EngineError::Domain(_)
        | EngineError::NotFound(_)
        | EngineError::Overloaded
        | EngineError::VersionConflict
        | EngineError::IdempotencyInFlight
        | EngineError::IdempotencyKeyReused
        | EngineError::ShuttingDown => true,
    }
}

fn answer<T>(result: Result<Outcome<T>, EngineError>, id: impl Fn(&T) -> String) -> Answer {
    match result {
        Ok(Outcome::Fresh(value)) => Answer::Fresh(id(&value)),
        Ok(Outcome::Replayed(record)) => Answer::Replayed(record.body),
        Err(err) if no_effect(&err) => Answer::NoEffect(err.to_string()),
        Err(err) => Answer::Unknown(err.to_string()),
    }
}

pub struct World {
    pub engine: Engine,
    pub gateway: Arc<FlakyGateway>,
    pub tenants: Vec<TenantId>,
    pub invoices: Vec<Vec<InvoiceId>>,
    pub ledgers: Vec<std::sync::Mutex<Ledger>>,
    keys: AtomicUsize,
}

impl World {
    fn ctx(&self, tenant: usize) -> Context {
        Context::new(self.tenants[tenant], "key_test")
    }

    fn ledger(&self, tenant: usize) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledgers[tenant].lock().unwrap()
    }

    fn payment(&self, tenant: usize, index: usize) -> Option<PaymentId> {
        let ledger = self.ledger(tenant);
        let known = ledger.payments();
        (!known.is_empty()).then(|| known[index % known.len()])
    }

    /// Runs `attempt` once without a key, or `retries.attempts` times under one new key;
    /// every answer goes to the tenant's ledger.
    async fn keyed<F, Fut>(&self, tenant: usize, kind: &str, key: Option<Retries>, attempt: F)
    where
        F: Fn(Context) -> Fut,
        Fut: std::future::Future<Output = Answer>,
    {
        let Some(retries) = key else {
            let answer = attempt(self.ctx(tenant)).await;
            self.ledger(tenant).unkeyed(kind, answer);
            return;
        };
        let key = format!("{kind}-{}", self.keys.fetch_add(1, Ordering::SeqCst));
        let ctx = || {
            self.ctx(tenant)
                .with_idempotency(spec(&key, format!("{kind}:{key}")))
        };
        let answers = if retries.concurrent {
            let runs = (0..retries.attempts).map(|_| attempt(ctx()));
            futures::future::join_all(runs).await
        } else {
            let mut answers = Vec::new();
            for _ in 0..retries.attempts {
                answers.push(attempt(ctx()).await);
            }
            answers
        };
        self.ledger(tenant)
            .keyed(kind, key.clone(), retries.concurrent, answers);
    }

    async fn webhooks(&self, tenant: usize, events: Vec<GatewayEvent>) {
        let result = self
            .engine
            .apply_gateway_events(self.tenants[tenant], events)
            .await;
        if let Ok(summary) = result {
            self.ledger(tenant).applied += summary.applied;
        }
    }

    pub async fn run_op(&self, faults: &dyn Faults, op: Op) {
        match op {
            Op::Pay {
                tenant,
                invoice,
                amount,
                key,
            } => {
                let invoice_id = match invoice {
                    3 => self.invoices[(tenant + 1) % TENANTS][0],
                    i => self.invoices[tenant][i],
                };
                let kind = if invoice == 3 { "foreign-pay" } else { "pay" };
                self.keyed(tenant, kind, key, |ctx| async move {
                    let attempt = PaymentAttempt {
                        invoice_id,
                        amount,
                        method: card(),
                    };
                    let result = self.engine.attempt_payment(ctx, attempt).await;
                    answer(result, |p| p.id.to_string())
                })
                .await;
            }
            Op::Outcome {
                tenant,
                payment,
                success,
                copies,
                reverse,
            } => {
                let Some(payment_id) = self.payment(tenant, payment) else {
                    return;
                };
                let mut batch = vec![processing(payment_id)];
                batch.extend(std::iter::repeat_n(settled(payment_id, success), copies));
                if reverse {
                    batch.reverse();
                }
                self.webhooks(tenant, batch).await;
            }
            Op::Refund {
                tenant,
                payment,
                amount,
                key,
            } => {
                let Some(payment_id) = self.payment(tenant, payment) else {
                    return;
                };
                self.keyed(tenant, "refund", key, |ctx| async move {
                    let result = self.engine.refund(ctx, payment_id, amount, None).await;
                    answer(result, |r| r.id.to_string())
                })
                .await;
            }
            Op::Deliver { tenant } => {
                let batch = self.gateway_outcomes(tenant);
                if !batch.is_empty() {
                    self.webhooks(tenant, batch).await;
                }
            }
            Op::Void { tenant, invoice } => {
                let id = self.invoices[tenant][invoice];
                let _ = self
                    .engine
                    .invoice_command(self.ctx(tenant), id, InvoiceCommand::Void)
                    .await;
            }
            Op::Panic {
                tenant,
                payment,
                invoice_side,
            } => {
                let target = match (invoice_side, self.payment(tenant, payment)) {
                    (false, Some(p)) => StreamId::Payment(p),
                    _ => StreamId::Invoice(self.invoices[tenant][payment % 3]),
                };
                self.engine.inject_panic(self.tenants[tenant], target).await;
            }
            Op::FailStore { batches } => faults.fail_next_batches(batches),
            Op::FailUnit { index } => faults.fail_unit_of_next_batch(index),
            Op::LoseReply => faults.lose_next_replies(1),
            Op::Gateway { charges, refunds } => self.gateway.set_modes(charges, refunds),
        }
    }

    /// Everything the gateway did for the tenant, as its webhooks report it (twice each,
    /// newest first so some arrive out of order).
    fn gateway_outcomes(&self, tenant: usize) -> Vec<GatewayEvent> {
        let record = self.gateway.record();
        let account = self.tenants[tenant];
        let mut batch: Vec<GatewayEvent> = Vec::new();
        for (payment, _) in record.charges.iter().filter(|(_, (t, _))| *t == account) {
            batch.extend([processing(*payment), settled(*payment, true)]);
        }
        for (refund, (_, payment, _)) in record.refunds.iter().filter(|(_, (t, ..))| *t == account)
        {
            batch.push(refund_succeeded(*payment, *refund));
        }
        let copies = batch.clone();
        batch.extend(copies);
        batch.reverse();
        batch
    }
}

fn processing(payment_id: PaymentId) -> GatewayEvent {
    GatewayEvent {
        id: format!("evt_gw_{payment_id}_processing"),
        payment_id,
        outcome: GatewayOutcome::Processing {
            reference: format!("ch_{payment_id}"),
        },
    }
}

fn settled(payment_id: PaymentId, success: bool) -> GatewayEvent {
    let (kind, outcome) = if success {
        let outcome = GatewayOutcome::Succeeded {
            reference: None,
            amount: None,
            currency: None,
        };
        ("ok", outcome)
    } else {
        let outcome = GatewayOutcome::Failed {
            code: "card_declined".into(),
            message: "declined".into(),
            amount: None,
            currency: None,
        };
        ("fail", outcome)
    };
    GatewayEvent {
        id: format!("evt_gw_{payment_id}_{kind}"),
        payment_id,
        outcome,
    }
}

fn refund_succeeded(payment_id: PaymentId, refund_id: RefundId) -> GatewayEvent {
    GatewayEvent {
        id: format!("evt_gw_{refund_id}"),
        payment_id,
        outcome: GatewayOutcome::RefundSucceeded { refund_id },
    }
}

/// Starts an engine on the backend's store and opens the tenants' invoices (before any fault).
pub async fn world(backend: &dyn Backend, plan: &Plan) -> World {
    let gateway = Arc::new(FlakyGateway::default());
    let engine = Engine::start(
        config(plan),
        backend.store(),
        gateway.clone() as Arc<dyn Gateway>,
        Arc::new(SystemClock),
    );
    let tenants: Vec<TenantId> = (0..TENANTS).map(|_| TenantId::new()).collect();
    let mut invoices = Vec::new();
    for tenant in &tenants {
        let mut ids = Vec::new();
        for total in INVOICE_TOTALS {
            let ctx = Context::new(*tenant, "key_test");
            let created = engine.create_invoice(ctx, invoice_input(total), true).await;
            ids.push(created.unwrap().fresh().unwrap().id);
        }
        invoices.push(ids);
    }
    World {
        engine,
        gateway,
        tenants,
        invoices,
        ledgers: (0..TENANTS).map(|_| Default::default()).collect(),
        keys: AtomicUsize::new(0),
    }
}

/// Waits until no gateway call, command or unit is in flight and nothing has been committed
/// for a while: a webhook request answered with an error may still have sibling events queued
/// in their payments' actors, which commit after the answer.
pub async fn quiesce(engine: &Engine, faults: &dyn Faults) {
    let metrics = engine.metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let progress = || faults.batches_seen();
    let (mut last, mut quiet) = (progress(), 0);
    while quiet < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine never became quiet"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
        let busy = metrics.gateway_tasks.load(Ordering::SeqCst) > 0
            || metrics.audit_queue_depth.load(Ordering::SeqCst) > 0
            || metrics.commands_in_flight.load(Ordering::SeqCst) > 0;
        let now = progress();
        quiet = if busy || now != last { 0 } else { quiet + 1 };
        last = now;
    }
}
