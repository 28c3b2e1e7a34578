//! The actor hierarchy: `Registry` → `TenantSupervisor` → `InvoiceActor` ← `PaymentActor`, and the
//! `AuditActor` writers every entity hands its units to.

mod answer;
pub mod audit;
mod durable;
mod gateway_calls;
pub mod invoice;
pub mod messages;
pub mod payment;
pub mod registry;
pub mod supervisor;

use std::borrow::Cow;
use std::sync::{Arc, PoisonError, RwLock};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::config::EngineConfig;
use crate::domain::{Event, EventData, EventId, IdMap, InvoiceId, StreamId, TenantId};
use crate::error::EngineError;
use crate::metrics::EngineMetrics;
use crate::ports::{Clock, DedupKey, EventStore, Gateway, StoreError, Unit};
use futures::future::BoxFuture;
use futures::FutureExt as _;

pub(crate) use answer::{
    done, done_then_stop, durably, later, read_when_durable, when_durable, Step,
};
pub use answer::{Pending, Reply};
pub use audit::{resolved, AuditActor, Durable, Fence, Fences, Slot, WriterHandle, WriterSnapshot};
pub use gateway_calls::{GatewaySlots, GatewayTask};
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
    pub gateway_slots: Arc<GatewaySlots>,
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
    /// The events of `data`, numbered on from `version`. The gateway event id, if any, goes on
    /// the first only: an applied gateway event is recorded once, on its event row (unique per
    /// tenant), and is moved there, not copied.
    pub fn build(mut self, version: u64, data: Vec<EventData>) -> Vec<Event> {
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
                gateway_event_id: self.gateway_event_id.take(),
                data,
            })
            .collect()
    }
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
    fn a_gateway_event_id_goes_on_the_first_event_only() {
        let mut builder =
            EventBuilderForTests::payment(TenantId::new(), crate::domain::PaymentId::new());
        builder.gateway_event_id = Some("evt_gw_1".into());
        let data = EventData::PaymentProcessing {
            gateway_reference: "ch_1".into(),
        };
        let events = builder.build(3, vec![data.clone(), data]);
        let ids: Vec<_> = events
            .iter()
            .map(|e| e.gateway_event_id.as_deref())
            .collect();
        assert_eq!(ids, [Some("evt_gw_1"), None]);
        let versions: Vec<_> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, [4, 5]);
    }

    #[actix_rt::test]
    async fn a_single_writer_takes_every_tenant() {
        let router = router(1);
        assert!((0..4).all(|_| router.writer_index(TenantId::new()) == 0));
        assert!(router.reserve(TenantId::new()).is_ok());
    }
}
