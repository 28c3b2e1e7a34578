//! Durable operations per second through the real engine (entity actors, tenant supervisors,
//! the audit actor's group commit) over the in-memory store, at 1, 64 and 1,024 concurrent
//! callers. The store costs almost nothing here, so this is the engine's own ceiling: the actor
//! hops and batching, not PostgreSQL or SQLite (benches/store_commit.rs has those).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_rt::SystemRunner;
use async_trait::async_trait;
use criterion::{Criterion, Throughput};
use payrail_actors::domain::{
    GatewayOutcome, InvoiceInput, PaymentId, PaymentMethodInput, TenantId,
};
use payrail_actors::engine::{Context, GatewayEvent, PaymentAttempt};
use payrail_actors::memory::MemoryStore;
use payrail_actors::metrics::EngineMetrics;
use payrail_actors::ports::{
    AccountRegistration, ChargeRequest, EventStore, Gateway, GatewayError, RefundRequest,
    SystemClock,
};
use payrail_actors::{Engine, EngineConfig};

const CALLERS: [usize; 3] = [1, 64, 1_024];
/// Tenants the work is spread over, round robin per op. Each has its own supervisor, and its
/// invoice numbering lock is held across the commit (gap-free numbers), so at most one create
/// per tenant is in flight: fewer tenants than callers would measure that lock, not group commit.
/// Spreading also keeps each tenant far below `MAX_ACTIVE_ENTITIES_PER_TENANT` (100,000): above
/// it, every new actor pays `enforce_cap`'s scan of all the tenant's entities (milliseconds).
const TENANTS: usize = 1_024;
/// One payment per caller at the highest concurrency, so no two callers share a payment actor.
const PAYMENTS: usize = 1_024;
/// How long setup waits for the gateway's charge reference to be recorded on every payment.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers every charge with a reference, like a healthy gateway; counts calls.
#[derive(Default)]
struct RecordingGateway {
    charges: AtomicU64,
}

#[async_trait]
impl Gateway for RecordingGateway {
    async fn register_account(&self, _: &AccountRegistration) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn create_charge(&self, request: &ChargeRequest) -> Result<String, GatewayError> {
        self.charges.fetch_add(1, Ordering::Relaxed);
        Ok(format!("ch_{}", request.payment_id))
    }

    async fn create_refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        Ok(format!("rf_{}", request.refund_id))
    }
}

struct Fixture {
    engine: Engine,
    tenants: Vec<TenantId>,
    /// Payments in `processing` with a gateway reference, with their tenant.
    payments: Vec<(TenantId, PaymentId)>,
    next_event: AtomicU64,
    next_invoice: AtomicU64,
}

fn invoice_input() -> InvoiceInput {
    serde_json::from_value(serde_json::json!({
        "customerName": "Jane Doe",
        "currency": "USD",
        "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": 3_300}],
    }))
    .unwrap()
}

fn card() -> PaymentMethodInput {
    serde_json::from_value(serde_json::json!({
        "type": "card", "number": "4242424242424242", "expMonth": 12, "expYear": 2040, "cvc": "123"
    }))
    .unwrap()
}

impl Fixture {
    /// Starts the engine (inside the running actix System) and creates, per payment, an open
    /// invoice and a payment whose charge the gateway has accepted.
    async fn start() -> Self {
        let config = EngineConfig {
            recovery_interval: Duration::ZERO,
            ..EngineConfig::default()
        };
        let engine = Engine::start(
            config,
            Arc::new(MemoryStore::new()) as Arc<dyn EventStore>,
            Arc::new(RecordingGateway::default()) as Arc<dyn Gateway>,
            Arc::new(SystemClock),
        );
        let tenants: Vec<TenantId> = (0..TENANTS).map(|_| TenantId::new()).collect();
        let mut payments = Vec::with_capacity(PAYMENTS);
        for i in 0..PAYMENTS {
            let tenant = tenants[i % TENANTS];
            let ctx = Context::new(tenant, "key_bench");
            let invoice = engine
                .create_invoice(ctx.clone(), invoice_input(), true)
                .await
                .expect("create invoice")
                .fresh()
                .expect("fresh invoice");
            let attempt = PaymentAttempt {
                invoice_id: invoice.id,
                amount: None,
                method: card(),
            };
            let payment = engine
                .attempt_payment(ctx, attempt)
                .await
                .expect("attempt payment")
                .fresh()
                .expect("fresh payment");
            payments.push((tenant, payment.id));
        }
        let deadline = Instant::now() + SETUP_TIMEOUT;
        for &(tenant, id) in &payments {
            while engine
                .payment(tenant, id)
                .await
                .expect("payment")
                .gateway_reference
                .is_none()
            {
                assert!(Instant::now() < deadline, "charge reference never recorded");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Self {
            engine,
            tenants,
            payments,
            next_event: AtomicU64::new(0),
            next_invoice: AtomicU64::new(0),
        }
    }

    /// One durable op: a new invoice (created and finalized in one unit), for the next tenant.
    async fn create_invoice(&self) {
        let n = self.next_invoice.fetch_add(1, Ordering::Relaxed) as usize;
        let ctx = Context::new(self.tenants[n % TENANTS], "key_bench");
        self.engine
            .create_invoice(ctx, invoice_input(), true)
            .await
            .expect("create invoice");
    }

    /// One durable op: a fresh `payment.processing` gateway event on a payment that already has
    /// its reference, so the engine records it as seen (ignored) in one unit.
    async fn gateway_event(&self, caller: usize) {
        let (tenant, payment_id) = self.payments[caller % PAYMENTS];
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let event = GatewayEvent {
            id: format!("evt_gw_{n:026}"),
            payment_id,
            outcome: GatewayOutcome::Processing {
                reference: format!("ch_{payment_id}"),
            },
        };
        let summary = self
            .engine
            .apply_gateway_events(tenant, vec![event])
            .await
            .expect("apply gateway event");
        assert_eq!(summary.ignored + summary.applied, 1, "{summary:?}");
    }
}

#[derive(Clone, Copy)]
enum Op {
    CreateInvoice,
    GatewayEvent,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::CreateInvoice => "create_invoice",
            Self::GatewayEvent => "apply_gateway_event",
        }
    }
}

/// Totals for one (op, callers) configuration over every timed criterion call.
struct Total {
    op: Op,
    callers: usize,
    ops: u64,
    elapsed: Duration,
    batches: u64,
    units: u64,
}

/// `callers` tasks each run `per_caller` ops back to back; returns the wall time.
fn run(
    system: &SystemRunner,
    fixture: &Fixture,
    op: Op,
    callers: usize,
    per_caller: u64,
) -> Duration {
    system.block_on(async {
        let start = Instant::now();
        let tasks = (0..callers).map(|caller| async move {
            for _ in 0..per_caller {
                match op {
                    Op::CreateInvoice => fixture.create_invoice().await,
                    Op::GatewayEvent => fixture.gateway_event(caller).await,
                }
            }
        });
        futures::future::join_all(tasks).await;
        start.elapsed()
    })
}

fn counters(metrics: &EngineMetrics) -> (u64, u64) {
    (
        EngineMetrics::get(&metrics.batches_committed),
        EngineMetrics::get(&metrics.units_committed),
    )
}

fn main() {
    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    let system = actix_rt::System::new();
    let fixture = system.block_on(Fixture::start());
    let metrics = fixture.engine.metrics();
    let totals = Mutex::new(Vec::<Total>::new());

    for op in [Op::GatewayEvent, Op::CreateInvoice] {
        let mut group = criterion.benchmark_group(op.name());
        for callers in CALLERS {
            // One criterion iteration = every caller completing one op, so the caller count
            // stays constant over a sample; throughput is per op.
            group.throughput(Throughput::Elements(callers as u64));
            group.bench_function(format!("callers={callers}"), |b| {
                b.iter_custom(|iters| {
                    let (batches, units) = counters(&metrics);
                    let elapsed = run(&system, &fixture, op, callers, iters);
                    let (batches_after, units_after) = counters(&metrics);
                    let mut totals = totals.lock().unwrap();
                    let total = match totals
                        .iter_mut()
                        .position(|t| t.op.name() == op.name() && t.callers == callers)
                    {
                        Some(i) => &mut totals[i],
                        None => {
                            totals.push(Total {
                                op,
                                callers,
                                ops: 0,
                                elapsed: Duration::ZERO,
                                batches: 0,
                                units: 0,
                            });
                            totals.last_mut().unwrap()
                        }
                    };
                    total.ops += iters * callers as u64;
                    total.elapsed += elapsed;
                    total.batches += batches_after - batches;
                    total.units += units_after - units;
                    elapsed
                })
            });
        }
        group.finish();
    }
    criterion.final_summary();

    let results: Vec<_> = totals
        .into_inner()
        .unwrap()
        .iter()
        .map(|t| {
            let secs = t.elapsed.as_secs_f64();
            serde_json::json!({
                "op": t.op.name(),
                "callers": t.callers,
                "ops": t.ops,
                "secs": (secs * 1e3).round() / 1e3,
                "ops_per_sec": (t.ops as f64 / secs).round(),
                "mean_units_per_batch": ((t.units as f64 / t.batches.max(1) as f64) * 10.0).round() / 10.0,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({ "bench": "actor_roundtrip", "store": "memory", "results": results })
    );
}
