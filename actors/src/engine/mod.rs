//! The engine's public face: a small typed API the HTTP layer and tests call. It admits work
//! under bounded in-flight limits, handles idempotency keys, and routes each command to the
//! right tenant's supervisor and entity actor.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::Semaphore;

use crate::actors::messages::{
    AttemptPayment, Caller, CreateRefund, GetInvoice, GetPayment, InjectPanic, RunInvoiceCommand,
};
use crate::actors::registry::TenantHandle;
use crate::actors::supervisor::{ActiveEntities, NewInvoice, ToInvoice, ToNewPayment, ToPayment};
use crate::actors::{durably, AuditRouter, Deps, GatewaySlots, Registry, WriterHandle};
use crate::config::EngineConfig;
use crate::domain::card::{parse_payment_method, tenant_fingerprint_key};
use crate::domain::{
    Invoice, InvoiceCommand, InvoiceId, InvoiceInput, Payment, PaymentId, PaymentMethodInput,
    Refund, RefundId, StreamId, TenantId,
};
use crate::error::EngineError;
use crate::metrics::EngineMetrics;
use crate::ports::{Clock, EventStore, Gateway, IdempotencyRecord, StoreError};

pub use crate::actors::messages::{IdempotencySpec, Rendered, Renderer};
pub use crate::actors::WriterSnapshot;
pub use webhooks::{GatewayEvent, WebhookSummary};

mod recovery;
mod webhooks;

/// Who is asking, for which tenant, under which idempotency key.
#[derive(Debug, Clone)]
pub struct Context {
    pub tenant: TenantId,
    pub caller: Caller,
}

impl Context {
    pub fn new(tenant: TenantId, actor: impl Into<String>) -> Self {
        Self {
            tenant,
            caller: Caller {
                actor: actor.into(),
                idempotency: None,
            },
        }
    }

    pub fn with_idempotency(mut self, spec: IdempotencySpec) -> Self {
        self.caller.idempotency = Some(spec);
        self
    }
}

/// A fresh result, or the stored response of an earlier request with the same key.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    Fresh(T),
    Replayed(IdempotencyRecord),
}

impl<T> Outcome<T> {
    pub fn fresh(self) -> Option<T> {
        match self {
            Self::Fresh(value) => Some(value),
            Self::Replayed(_) => None,
        }
    }
}

/// A new payment.
#[derive(Debug, Clone)]
pub struct PaymentAttempt {
    pub invoice_id: InvoiceId,
    pub amount: Option<i64>,
    pub method: PaymentMethodInput,
}

/// Payments the recovery sweep reads per query.
const RECOVERY_PAGE_PAYMENTS: usize = 1_000;

#[derive(Clone)]
pub struct Engine {
    deps: Deps,
    registry: Arc<Registry>,
    permits: Arc<Semaphore>,
    draining: Arc<AtomicBool>,
    _audit_arbiters: Arc<Vec<ArbiterGuard>>,
}

/// Stops an arbiter when the last engine handle goes away.
struct ArbiterGuard(Arbiter);

impl Drop for ArbiterGuard {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl Engine {
    /// Starts the audit writers, the registry and the recovery sweep. Must run inside an actix
    /// `System`.
    pub fn start(
        config: EngineConfig,
        store: Arc<dyn EventStore>,
        gateway: Arc<dyn Gateway>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let config = Arc::new(config);
        let metrics = Arc::new(EngineMetrics::default());
        let mut arbiters = Vec::new();
        let mut writers = Vec::new();
        for n in 0..config.audit_writers.max(1) {
            let arbiter = crate::threads::arbiter(format!("audit-writer-{n}"));
            writers.push(WriterHandle::start(
                &arbiter.handle(),
                store.clone(),
                config.clone(),
                metrics.clone(),
            ));
            arbiters.push(ArbiterGuard(arbiter));
        }
        let deps = Deps {
            store,
            gateway,
            clock,
            config: config.clone(),
            gateway_slots: GatewaySlots::new(config.gateway_tasks_max, metrics.clone()),
            metrics,
            audit: AuditRouter::new(writers),
        };
        let engine = Self {
            registry: Arc::new(Registry::new(deps.clone())),
            permits: Arc::new(Semaphore::new(config.engine_in_flight_max)),
            draining: Arc::new(AtomicBool::new(false)),
            _audit_arbiters: Arc::new(arbiters),
            deps,
        };
        engine.start_recovery_sweep();
        engine.start_supervisor_retirement();
        engine
    }

    pub fn metrics(&self) -> Arc<EngineMetrics> {
        Arc::clone(&self.deps.metrics)
    }

    /// Each audit writer's queue and commit counters.
    pub fn audit_writers(&self) -> Vec<WriterSnapshot> {
        self.deps.audit.writers()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.deps.config
    }

    pub fn store(&self) -> Arc<dyn EventStore> {
        Arc::clone(&self.deps.store)
    }

    /// Admits one command under the engine-wide and per-tenant bounds, or answers `Overloaded`.
    async fn admitted<T, F, Fut>(&self, tenant: TenantId, run: F) -> Result<T, EngineError>
    where
        F: FnOnce(TenantHandle) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        self.admitted_weighted(tenant, 1, run).await
    }

    /// Admits work of `weight` units (a webhook batch weighs its event count) under the
    /// engine-wide and per-tenant bounds, or answers `Overloaded` at once: queues stay short
    /// enough that latency stays bounded and the excess is shed with 503, not buffered.
    async fn admitted_weighted<T, F, Fut>(
        &self,
        tenant: TenantId,
        weight: usize,
        run: F,
    ) -> Result<T, EngineError>
    where
        F: FnOnce(TenantHandle) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        if self.draining.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        let config = &self.deps.config;
        let most = config
            .engine_in_flight_max
            .min(config.tenant_in_flight_max)
            .max(1);
        let weight = u32::try_from(weight.clamp(1, most)).unwrap_or(1);
        let overloaded = |_| {
            self.deps.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
            EngineError::Overloaded
        };
        let _global = Arc::clone(&self.permits)
            .try_acquire_many_owned(weight)
            .map_err(overloaded)?;
        let handle = self.registry.tenant(tenant);
        let _local = Arc::clone(&handle.permits)
            .try_acquire_many_owned(weight)
            .map_err(overloaded)?;
        let _in_flight = InFlight::enter(&self.deps.metrics);
        let deadline = config.command_deadline;
        match tokio::time::timeout(deadline, run(handle)).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::Unavailable(format!(
                "no answer within {} ms",
                deadline.as_millis()
            ))),
        }
    }

    /// Runs `run` at most once per idempotency key: replays a stored response, refuses a key
    /// reused for another request or still in flight.
    async fn idempotent<T, Fut>(
        &self,
        handle: &TenantHandle,
        ctx: &Context,
        run: Fut,
    ) -> Result<Outcome<T>, EngineError>
    where
        Fut: Future<Output = Result<T, EngineError>>,
    {
        let Some(spec) = &ctx.caller.idempotency else {
            return run.await.map(Outcome::Fresh);
        };
        let Some(_claim) = handle.keys.claim(spec.key.clone()) else {
            return Err(EngineError::IdempotencyInFlight);
        };
        if let Some(record) = self.stored_response(ctx.tenant, &spec.key).await? {
            return replay(record, spec);
        }
        match run.await {
            // Another node committed the same key first: answer with its response.
            Err(EngineError::Storage(StoreError::IdempotencyKeyTaken)) => {
                match self.stored_response(ctx.tenant, &spec.key).await? {
                    Some(record) => replay(record, spec),
                    None => Err(EngineError::IdempotencyInFlight),
                }
            }
            other => other.map(Outcome::Fresh),
        }
    }

    /// Reads run in a task of their own: dropping the caller (a client disconnect) must never
    /// cancel a storage call halfway.
    async fn stored_response(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, EngineError> {
        let store = Arc::clone(&self.deps.store);
        let key = key.to_owned();
        detached(async move {
            store
                .idempotency_record(tenant, &key)
                .await
                .map_err(EngineError::from)
        })
        .await
    }

    pub async fn create_invoice(
        &self,
        ctx: Context,
        input: InvoiceInput,
        finalize: bool,
    ) -> Result<Outcome<Invoice>, EngineError> {
        self.admitted(ctx.tenant, |handle| async move {
            let create = NewInvoice {
                id: InvoiceId::new(),
                input,
                finalize,
                caller: ctx.caller.clone(),
            };
            let run = async { durably(handle.addr.send(create).await).await };
            self.idempotent(&handle, &ctx, run).await
        })
        .await
    }

    /// Update (draft only), finalize, void or mark uncollectible.
    pub async fn invoice_command(
        &self,
        ctx: Context,
        id: InvoiceId,
        command: InvoiceCommand,
    ) -> Result<Outcome<Invoice>, EngineError> {
        self.admitted(ctx.tenant, |handle| async move {
            let msg = ToInvoice {
                id,
                msg: RunInvoiceCommand {
                    command,
                    caller: ctx.caller.clone(),
                },
            };
            let run = async { durably(handle.addr.send(msg).await).await };
            self.idempotent(&handle, &ctx, run).await
        })
        .await
    }

    pub async fn attempt_payment(
        &self,
        ctx: Context,
        attempt: PaymentAttempt,
    ) -> Result<Outcome<Payment>, EngineError> {
        let now = self.deps.clock.now();
        let today = (
            u32::try_from(chrono::Datelike::year(&now)).unwrap_or(0),
            chrono::Datelike::month(&now),
        );
        let key = tenant_fingerprint_key(&self.deps.config.fingerprint_key, ctx.tenant);
        let (card, source) = parse_payment_method(&attempt.method, &key, today)?;
        require_positive(attempt.amount)?;
        self.admitted(ctx.tenant, |handle| async move {
            let msg = ToNewPayment {
                id: PaymentId::new(),
                msg: AttemptPayment {
                    invoice_id: attempt.invoice_id,
                    amount: attempt.amount,
                    card,
                    source,
                    caller: ctx.caller.clone(),
                },
            };
            let run = async { durably(handle.addr.send(msg).await).await };
            self.idempotent(&handle, &ctx, run).await
        })
        .await
    }

    pub async fn refund(
        &self,
        ctx: Context,
        payment_id: PaymentId,
        amount: Option<i64>,
        reason: Option<String>,
    ) -> Result<Outcome<Refund>, EngineError> {
        require_positive(amount)?;
        self.admitted(ctx.tenant, |handle| async move {
            let msg = ToPayment {
                id: payment_id,
                msg: CreateRefund {
                    refund_id: RefundId::new(),
                    amount,
                    reason,
                    caller: ctx.caller.clone(),
                },
            };
            let run = async { durably(handle.addr.send(msg).await).await };
            self.idempotent(&handle, &ctx, run).await
        })
        .await
    }

    /// The invoice as its actor holds it (consistent with every acknowledged change).
    pub async fn invoice(&self, tenant: TenantId, id: InvoiceId) -> Result<Invoice, EngineError> {
        self.admitted(tenant, |handle| async move {
            let read = || async {
                let get = ToInvoice {
                    id,
                    msg: GetInvoice,
                };
                durably(handle.addr.send(get).await).await
            };
            retry_read(read).await
        })
        .await
    }

    pub async fn payment(&self, tenant: TenantId, id: PaymentId) -> Result<Payment, EngineError> {
        self.admitted(tenant, |handle| async move {
            let read = || async {
                let get = ToPayment {
                    id,
                    msg: GetPayment,
                };
                durably(handle.addr.send(get).await).await
            };
            retry_read(read).await
        })
        .await
    }

    /// Live entity actors of a tenant (for tests and metrics).
    pub async fn active_entities(&self, tenant: TenantId) -> Result<usize, EngineError> {
        Ok(self
            .registry
            .tenant(tenant)
            .addr
            .send(ActiveEntities)
            .await?)
    }

    /// Fault injection: makes the entity's actor panic mid-stream.
    #[doc(hidden)]
    pub async fn inject_panic(&self, tenant: TenantId, stream: StreamId) {
        let handle = self.registry.tenant(tenant);
        let _ = match stream {
            StreamId::Invoice(id) => {
                handle
                    .addr
                    .send(ToInvoice {
                        id,
                        msg: InjectPanic,
                    })
                    .await
            }
            StreamId::Payment(id) => {
                handle
                    .addr
                    .send(ToPayment {
                        id,
                        msg: InjectPanic,
                    })
                    .await
            }
            StreamId::ApiKey(_) => return,
        };
    }

    /// Stops admitting commands and waits (bounded) for those in flight to finish and for
    /// every unit already queued to resolve, including units whose caller went away (its
    /// command no longer counts as in flight, but its unit was admitted): when this returns
    /// `true`, everything admitted is committed (or failed) and answered.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        while self.deps.metrics.commands_in_flight.load(Ordering::SeqCst) > 0
            || self.deps.audit.pending() > 0
        {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// An explicit amount must be positive (absent means "whatever remains"), refused before any
/// actor is asked so the answer is the same whatever state the entity is in.
fn require_positive(amount: Option<i64>) -> Result<(), EngineError> {
    if amount.is_some_and(|a| a < 1) {
        return Err(crate::domain::DomainError::validation("amount", "must be positive").into());
    }
    Ok(())
}

/// Reads change nothing, so a read that met an actor as it stopped (passivation, or a restart
/// after a failed commit) is simply asked again of its fresh successor.
async fn retry_read<T, F, Fut>(read: F) -> Result<T, EngineError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    const READ_ATTEMPTS: usize = 3;
    let mut result = read().await;
    for _ in 1..READ_ATTEMPTS {
        match result {
            Err(EngineError::Unavailable(_)) => result = read().await,
            other => return other,
        }
    }
    result
}

fn replay<T>(record: IdempotencyRecord, spec: &IdempotencySpec) -> Result<Outcome<T>, EngineError> {
    if record.fingerprint == spec.fingerprint {
        Ok(Outcome::Replayed(record))
    } else {
        Err(EngineError::IdempotencyKeyReused)
    }
}

/// Runs a future to completion in its own task, whatever happens to the caller.
async fn detached<T: Send + 'static>(
    fut: impl Future<Output = Result<T, EngineError>> + Send + 'static,
) -> Result<T, EngineError> {
    actix::spawn(fut)
        .await
        .map_err(|_| EngineError::Unavailable("storage task failed".into()))?
}

/// Counts a command in flight for as long as it lives, even if its caller drops it.
struct InFlight<'a>(&'a EngineMetrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a EngineMetrics) -> Self {
        metrics.commands_in_flight.fetch_add(1, Ordering::Relaxed);
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.commands_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
