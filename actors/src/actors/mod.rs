//! The actor hierarchy: `Registry` → `TenantSupervisor` → `InvoiceActor` ← `PaymentActor`, and the
//! `AuditActor` writers every entity hands its units to.

pub mod audit;
mod durable;
mod gateway_calls;
pub mod invoice;
pub mod messages;
pub mod payment;
pub mod registry;
pub mod supervisor;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::Poll;

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::config::EngineConfig;
use crate::domain::{Event, EventData, EventId, IdMap, InvoiceId, StreamId, TenantId};
use crate::error::EngineError;
use crate::metrics::EngineMetrics;
use crate::ports::{Clock, DedupKey, EventStore, Gateway, StoreError, Unit};
use futures::future::BoxFuture;
use futures::FutureExt as _;

pub use audit::{resolved, AuditActor, Durable, Fence, Fences, Slot, WriterHandle, WriterSnapshot};
pub use registry::Registry;

/// What every actor shares: the ports, the audit writers, limits and counters.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn EventStore>,
    pub gateway: Arc<dyn Gateway>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<EngineConfig>,
    pub metrics: Arc<EngineMetrics>,
    pub audit: AuditRouter,
}

/// Picks the audit writer for a tenant, so one tenant's units stay in order on one writer.
#[derive(Clone)]
pub struct AuditRouter {
    writers: Arc<Vec<WriterHandle>>,
    assigned: Arc<RwLock<Assignment>>,
}

/// Each tenant's writer, fixed for the life of the process at the tenant's first unit: the
/// writer given the fewest tenants so far. Hashing the tenant id instead splits a few busy
/// tenants unevenly (8 tenants on 2 writers: 6 and 2 or worse in about one case of four, and
/// then one writer idles while the other falls behind). One entry per tenant the process has
/// written for, kept while it runs (~40 bytes each), so that none ever changes writer.
#[derive(Default)]
struct Assignment {
    writer_of: IdMap<TenantId, usize>,
    tenants_of: Vec<usize>,
}

impl AuditRouter {
    pub fn new(writers: Vec<WriterHandle>) -> Self {
        let assigned = Assignment {
            writer_of: IdMap::default(),
            tenants_of: vec![0; writers.len()],
        };
        Self {
            writers: Arc::new(writers),
            assigned: Arc::new(RwLock::new(assigned)),
        }
    }

    /// The index of `tenant`'s writer.
    fn writer_index(&self, tenant: TenantId) -> usize {
        if self.writers.len() <= 1 {
            return 0;
        }
        let known = self
            .assigned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .writer_of
            .get(&tenant)
            .copied();
        if let Some(index) = known {
            return index;
        }
        let mut assigned = self
            .assigned
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Assignment {
            writer_of,
            tenants_of,
        } = &mut *assigned;
        *writer_of.entry(tenant).or_insert_with(|| {
            let least = (0..tenants_of.len())
                .min_by_key(|&i| tenants_of[i])
                .unwrap_or(0);
            if let Some(count) = tenants_of.get_mut(least) {
                *count += 1;
            }
            least
        })
    }

    /// `tenant`'s writer.
    fn writer(&self, tenant: TenantId) -> Result<&WriterHandle, EngineError> {
        self.writers
            .get(self.writer_index(tenant))
            .ok_or_else(|| EngineError::Unavailable("no audit writer".into()))
    }

    /// Room for one unit of `tenant` on its writer (see `WriterHandle::reserve`).
    pub fn reserve(&self, tenant: TenantId) -> Result<Slot<'_>, EngineError> {
        self.writer(tenant)?.reserve()
    }

    /// Queues a unit behind every earlier unit of its tenant, if there is room.
    pub fn submit(&self, unit: Unit, fences: Fences) -> Result<Durable, EngineError> {
        let tenant = unit
            .tenant_id
            .ok_or_else(|| EngineError::Unavailable("unit without tenant".into()))?;
        Ok(self.reserve(tenant)?.submit(unit, fences))
    }

    /// Records an ignored gateway event of `tenant` on its writer, unwaited for (see
    /// `WriterHandle::record_ignored`).
    pub fn record_ignored(&self, tenant: TenantId, key: DedupKey) -> Result<(), EngineError> {
        self.writer(tenant)?.record_ignored(tenant, key)
    }

    /// Units queued on any writer and not yet resolved (committed or failed).
    pub fn pending(&self) -> usize {
        self.writers.iter().map(WriterHandle::pending).sum()
    }

    /// Each writer's queue and commit counters, in writer order.
    pub fn writers(&self) -> Vec<WriterSnapshot> {
        self.writers.iter().map(WriterHandle::snapshot).collect()
    }

    /// Resolves once every unit the tenant queued before this call has resolved: an actor
    /// loads after it, so a new incarnation sees what its predecessor left in flight.
    pub fn barrier(&self, tenant: TenantId) -> Durable {
        self.submit(Unit::new(tenant), Fences::none())
            .unwrap_or_else(|err| resolved(Err(err)))
    }
}

/// Builds the events of one stream, numbered from `version + 1`.
#[derive(Clone)]
pub(crate) struct EventBuilder {
    pub tenant_id: TenantId,
    pub stream: StreamId,
    pub invoice_id: Option<InvoiceId>,
    pub actor: Cow<'static, str>,
    pub at: DateTime<Utc>,
    pub gateway_event_id: Option<String>,
}

impl EventBuilder {
    pub fn build(&self, version: u64, data: Vec<EventData>) -> Vec<Event> {
        data.into_iter()
            .enumerate()
            .map(|(i, data)| Event {
                id: EventId::new(),
                tenant_id: self.tenant_id,
                stream: self.stream,
                version: version + 1 + i as u64,
                invoice_id: self.invoice_id,
                actor: self.actor.clone(),
                occurred_at: self.at,
                gateway_event_id: self.gateway_event_id.clone(),
                data,
            })
            .collect()
    }
}

/// A command's answer once its unit is queued: resolves when that unit is durable. The actor
/// has already moved on to its next command by then. An answer known as it is given (a read, a
/// duplicate or a stale event behind units already durable) is held as it is, without a
/// future of its own.
pub struct Pending<T>(Answer<T>);

enum Answer<T> {
    Known(Option<Result<T, EngineError>>),
    Waiting(BoxFuture<'static, Result<T, EngineError>>),
}

impl<T> Pending<T> {
    pub(crate) fn known(result: Result<T, EngineError>) -> Self {
        Self(Answer::Known(Some(result)))
    }

    pub(crate) fn waiting(
        future: impl Future<Output = Result<T, EngineError>> + Send + 'static,
    ) -> Self {
        Self(Answer::Waiting(Box::pin(future)))
    }
}

// Nothing in a `Pending` is pinned in place: a known answer is moved out whole, and a
// waiting one is boxed.
impl<T> Unpin for Pending<T> {}

impl<T> Future for Pending<T> {
    type Output = Result<T, EngineError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Answer::Known(answer) => {
                Poll::Ready(answer.take().unwrap_or_else(|| {
                    Err(EngineError::Unavailable("answer already taken".into()))
                }))
            }
            Answer::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// The answer of a command sent to an actor, once its unit is durable.
pub(crate) async fn durably<T>(
    sent: Result<Result<Pending<T>, EngineError>, MailboxError>,
) -> Result<T, EngineError> {
    sent??.await
}

/// Answers `value` once `durable` has resolved.
pub(crate) fn when_durable<T: Send + 'static>(durable: Durable, value: T) -> Pending<T> {
    after(durable, move |outcome| outcome.map(|()| value))
}

/// Answers `value` once `tail` (the last unit queued before the read) has resolved. If that
/// unit failed, the value may show what never became durable: the read is refused as
/// `Unavailable`, which a reader simply asks again of the reloaded actor.
pub(crate) fn read_when_durable<T: Send + 'static>(tail: Durable, value: T) -> Pending<T> {
    after(tail, move |outcome| {
        outcome
            .map(|()| value)
            .map_err(|_| EngineError::Unavailable("a queued change failed; reloading".into()))
    })
}

/// `answer` made of `durable`'s outcome: now if it is known, else once it is.
fn after<T>(
    durable: Durable,
    answer: impl FnOnce(Result<(), EngineError>) -> Result<T, EngineError> + Send + 'static,
) -> Pending<T> {
    match durable.outcome() {
        Some(outcome) => Pending::known(answer(outcome)),
        None => Pending::waiting(async move { answer(durable.await) }),
    }
}

/// An entity actor's answer: given as the handler returns when its step was decided at once
/// (`Step::Done`), else once the step's future is done, the actor handling nothing else
/// meanwhile (it must reload first or ask another actor; never a commit).
pub enum Reply<A: Actor, T> {
    Now(Result<T, EngineError>),
    Atomic(AtomicResponse<A, Result<T, EngineError>>),
}

impl<A, M, T> MessageResponse<A, M> for Reply<A, T>
where
    A: Actor<Context = Context<A>>,
    M: Message<Result = Result<T, EngineError>>,
    T: 'static,
{
    fn handle(self, ctx: &mut Context<A>, tx: Option<OneshotSender<M::Result>>) {
        match self {
            // A caller that went away no longer needs its answer.
            Self::Now(result) => {
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
            Self::Atomic(response) => {
                <AtomicResponse<A, M::Result> as MessageResponse<A, M>>::handle(response, ctx, tx)
            }
        }
    }
}

impl<A: Actor, T: 'static> From<Step<A, T>> for Reply<A, T> {
    fn from(step: Step<A, T>) -> Self {
        match step {
            Step::Done(result) => Self::Now(result),
            Step::Then(future) => Self::Atomic(AtomicResponse::new(future)),
        }
    }
}

/// What an entity actor runs once its state is fresh: decided at once (no future, no
/// allocation), or a future the actor runs before its next message.
pub(crate) enum Step<A: Actor, T> {
    Done(Result<T, EngineError>),
    Then(ResponseActFuture<A, Result<T, EngineError>>),
}

impl<A: Actor, T: 'static> Step<A, T> {
    /// The step as a future, for a step chained after another.
    pub(crate) fn into_future(self) -> ResponseActFuture<A, Result<T, EngineError>> {
        match self {
            Self::Done(result) => Box::pin(actix::fut::ready(result)),
            Self::Then(future) => future,
        }
    }

    /// `then` applied to the step's result: at once for a decided step.
    pub(crate) fn map_result<U: 'static>(
        self,
        then: impl FnOnce(Result<T, EngineError>) -> Result<U, EngineError> + 'static,
    ) -> Step<A, U> {
        match self {
            Self::Done(result) => Step::Done(then(result)),
            Self::Then(future) => {
                Step::Then(Box::pin(future.map(move |result, _, _| then(result))))
            }
        }
    }

    /// `then` applied to the step's result, with the actor: at once for a decided step.
    pub(crate) fn map<U: 'static>(
        self,
        act: &mut A,
        ctx: &mut A::Context,
        then: impl FnOnce(Result<T, EngineError>, &mut A, &mut A::Context) -> Result<U, EngineError>
            + 'static,
    ) -> Step<A, U> {
        match self {
            Self::Done(result) => Step::Done(then(result, act, ctx)),
            Self::Then(future) => Step::Then(Box::pin(future.map(then))),
        }
    }
}

/// A step that is already decided.
pub(crate) fn done<A: Actor, T>(result: Result<T, EngineError>) -> Step<A, T> {
    Step::Done(result)
}

/// A step that waits for `future`.
pub(crate) fn later<A: Actor, T>(
    future: impl ActorFuture<A, Output = Result<T, EngineError>> + 'static,
) -> Step<A, T> {
    Step::Then(Box::pin(future))
}

/// A step that is already decided; an error also stops the actor (after answering), since an
/// actor with nothing (or nothing valid) loaded should not linger.
pub(crate) fn done_then_stop<A, T>(result: Result<T, EngineError>) -> Step<A, T>
where
    A: Actor<Context = Context<A>>,
    T: 'static,
{
    let ready = actix::fut::ready(result);
    later(ActorFutureExt::map(
        ready,
        |result, _, ctx: &mut Context<A>| {
            if result.is_err() {
                ctx.stop();
            }
            result
        },
    ))
}

/// What a pipelined actor knows about the units it queued and its last load.
pub(crate) struct Pipeline {
    /// Shared by every unit this incarnation queued; tripped when one fails.
    pub fence: Fence,
    /// The last unit queued: a read waits for it, so it never shows what is not yet durable.
    pub tail: Durable,
    /// Why the last load failed, answered to the command that needed it.
    pub load_error: Option<EngineError>,
}

impl Pipeline {
    pub fn new() -> Self {
        Self {
            fence: Fence::new(),
            tail: resolved(Ok(())),
            load_error: None,
        }
    }

    /// The load's error, if it failed.
    pub fn loaded(&self) -> Result<(), EngineError> {
        self.load_error.clone().map_or(Ok(()), Err)
    }
}

/// An entity actor that queues units without waiting for their commit (see `Fence`).
pub(crate) trait Pipelined: Actor<Context = Context<Self>> {
    type Loaded: 'static;

    fn pipeline(&self) -> &Pipeline;

    fn pipeline_mut(&mut self) -> &mut Pipeline;

    fn deps(&self) -> &Deps;

    fn tenant(&self) -> TenantId;

    /// Reads the entity from storage (lazily: nothing happens until the future is polled).
    fn read(&self) -> BoxFuture<'static, Result<Self::Loaded, StoreError>>;

    /// Replaces memory with what storage holds (`None`: nothing, or a failed load).
    fn install(&mut self, loaded: Option<Self::Loaded>);
}

/// Starts over from a load, under a new fence with nothing queued; a failed load leaves the
/// fence tripped, so the next command loads again.
fn reload<A: Pipelined>(act: &mut A, loaded: Result<A::Loaded, StoreError>) {
    let mut pipeline = Pipeline::new();
    let loaded = match loaded {
        Ok(loaded) => Some(loaded),
        Err(err) => {
            pipeline.fence.trip();
            pipeline.load_error = Some(err.into());
            None
        }
    };
    *act.pipeline_mut() = pipeline;
    act.install(loaded);
}

/// A barrier that could not be queued (overload) is a load that could not run.
fn unavailable(err: EngineError) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// Reads the entity once every unit its tenant queued before this call has resolved
/// (`AuditRouter::barrier`), so a new incarnation sees what its predecessor left in flight.
fn load<A: Pipelined>(act: &A) -> BoxFuture<'static, Result<A::Loaded, StoreError>> {
    let barrier = act.deps().audit.barrier(act.tenant());
    let read = act.read();
    async move {
        barrier.await.map_err(unavailable)?;
        read.await
    }
    .boxed()
}

/// Loads the entity before the actor takes its first message.
pub(crate) fn load_on_start<A: Pipelined>(act: &mut A, ctx: &mut Context<A>) {
    let load = load(act);
    ctx.wait(
        load.into_actor(act)
            .map(|loaded, act, _| reload(act, loaded)),
    );
}

/// Runs `run` on state that holds only durable or still-queued units: if a queued unit failed,
/// the entity is first reloaded from storage (the actor takes no other message meanwhile).
pub(crate) fn on_fresh_state<A, T>(
    act: &mut A,
    ctx: &mut Context<A>,
    run: impl FnOnce(&mut A, &mut Context<A>) -> Step<A, T> + 'static,
) -> Reply<A, T>
where
    A: Pipelined,
    T: 'static,
{
    if !act.pipeline().fence.is_tripped() {
        return run(act, ctx).into();
    }
    let load = load(act);
    Reply::Atomic(AtomicResponse::new(Box::pin(load.into_actor(act).then(
        move |loaded, act, ctx| {
            reload(act, loaded);
            run(act, ctx).into_future()
        },
    ))))
}

/// Passivation and fault injection, the same for every entity actor.
macro_rules! lifecycle_handlers {
    ($actor:ty, $kind:literal) => {
        impl Handler<crate::actors::messages::Passivate> for $actor {
            type Result = ();

            fn handle(&mut self, _: crate::actors::messages::Passivate, ctx: &mut Self::Context) {
                ctx.stop();
            }
        }

        impl Handler<crate::actors::messages::InjectPanic> for $actor {
            type Result = Result<(), EngineError>;

            #[allow(clippy::panic)]
            fn handle(
                &mut self,
                _: crate::actors::messages::InjectPanic,
                _: &mut Self::Context,
            ) -> Self::Result {
                panic!("injected fault in {} actor {}", $kind, self.id);
            }
        }
    };
}
pub(crate) use lifecycle_handlers;

/// The stored response for an idempotent command, rendered from the resulting entity.
pub(crate) fn idempotency_record(
    caller: &messages::Caller,
    rendered: messages::Rendered<'_>,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<crate::ports::IdempotencyRecord> {
    caller
        .idempotency
        .as_ref()
        .map(|spec| crate::ports::IdempotencyRecord {
            key: spec.key.clone(),
            fingerprint: spec.fingerprint.clone(),
            status: spec.status,
            body: (spec.render)(rendered),
            created_at: at,
        })
}

/// The `actor` recorded for changes the gateway reported.
pub const GATEWAY_ACTOR: &str = "gateway";
/// The `actor` recorded for changes the engine made on its own (recovery).
pub const SYSTEM_ACTOR: &str = "system";

/// Event numbering for domain tests.
#[cfg(test)]
pub(crate) struct EventBuilderForTests;

#[cfg(test)]
impl EventBuilderForTests {
    pub fn invoice(tenant: TenantId, id: InvoiceId) -> EventBuilder {
        Self::make(tenant, StreamId::Invoice(id), Some(id))
    }

    pub fn payment(tenant: TenantId, id: crate::domain::PaymentId) -> EventBuilder {
        Self::make(tenant, StreamId::Payment(id), None)
    }

    fn make(tenant_id: TenantId, stream: StreamId, invoice_id: Option<InvoiceId>) -> EventBuilder {
        EventBuilder {
            tenant_id,
            stream,
            invoice_id,
            actor: Cow::Borrowed("test"),
            at: Utc::now(),
            gateway_event_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::memory::MemoryStore;

    fn router(writers: usize) -> AuditRouter {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let (config, metrics) = (Arc::new(EngineConfig::default()), Arc::default());
        let writers = (0..writers)
            .map(|_| {
                let (store, config) = (Arc::clone(&store), Arc::clone(&config));
                WriterHandle::start(&Arbiter::current(), store, config, Arc::clone(&metrics))
            })
            .collect();
        AuditRouter::new(writers)
    }

    #[actix_rt::test]
    async fn tenants_spread_evenly_over_the_writers_and_keep_theirs() {
        let router = router(3);
        let tenants: Vec<TenantId> = (0..8).map(|_| TenantId::new()).collect();
        let first: Vec<usize> = tenants.iter().map(|&t| router.writer_index(t)).collect();
        let mut per_writer = [0; 3];
        first.iter().for_each(|&i| per_writer[i] += 1);
        per_writer.sort_unstable();
        assert_eq!(per_writer, [2, 3, 3]);
        // Whatever else comes, each tenant stays on its writer, from any clone of the router.
        let clone = router.clone();
        for round in 0..3 {
            let again: Vec<usize> = tenants.iter().map(|&t| clone.writer_index(t)).collect();
            assert_eq!(again, first, "round {round}");
            clone.writer_index(TenantId::new());
        }
    }

    #[test]
    fn an_answer_known_when_given_is_ready_at_once_and_taken_once() {
        use futures::FutureExt as _;
        let mut read = read_when_durable(Durable::settled(Ok(())), 7);
        assert_eq!((&mut read).now_or_never(), Some(Ok(7)));
        assert!(matches!(
            read.now_or_never(),
            Some(Err(EngineError::Unavailable(_)))
        ));
        // Behind a unit that failed, a read is refused, not answered with what never held.
        let failed = Durable::settled(Err(EngineError::Unavailable("lost".into())));
        assert!(matches!(
            read_when_durable(failed, 7).now_or_never(),
            Some(Err(EngineError::Unavailable(reason))) if reason.contains("reloading")
        ));
    }

    #[tokio::test]
    async fn an_answer_behind_a_queued_unit_waits_for_it() {
        use futures::FutureExt as _;
        let (durable, settle) = durable::Durable::queued();
        let mut answer = when_durable(durable, "done");
        assert!((&mut answer).now_or_never().is_none());
        settle.settle(Ok(()), &mut durable::Wakes::default());
        assert_eq!(answer.await, Ok("done"));
    }

    #[actix_rt::test]
    async fn a_single_writer_takes_every_tenant() {
        let router = router(1);
        assert!((0..4).all(|_| router.writer_index(TenantId::new()) == 0));
        assert!(router.reserve(TenantId::new()).is_ok());
    }
}
