//! The actor hierarchy: `Registry` → `TenantSupervisor` → `InvoiceActor` ← `PaymentActor`, and the
//! `AuditActor` writers every entity hands its units to.

pub mod audit;
pub mod invoice;
pub mod messages;
pub mod payment;
pub mod registry;
pub mod supervisor;

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::config::EngineConfig;
use crate::domain::{Event, EventData, EventId, InvoiceId, StreamId, TenantId};
use crate::error::EngineError;
use crate::metrics::EngineMetrics;
use crate::ports::{Clock, EventStore, Gateway, Unit};

pub use audit::{Append, AuditActor};
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
    writers: Arc<Vec<Addr<AuditActor>>>,
}

impl AuditRouter {
    pub fn new(writers: Vec<Addr<AuditActor>>) -> Self {
        Self {
            writers: Arc::new(writers),
        }
    }

    /// Commits a unit; resolves only once it is durable (or definitely failed).
    pub async fn commit(&self, unit: Unit) -> Result<(), EngineError> {
        let index = unit.tenant_id.map_or(0, |t| {
            (t.uuid().as_u128() % self.writers.len().max(1) as u128) as usize
        });
        let writer = self
            .writers
            .get(index)
            .ok_or_else(|| EngineError::Unavailable("no audit writer".into()))?;
        writer.send(Append(unit)).await?
    }
}

/// Builds the events of one stream, numbered from `version + 1`.
pub(crate) struct EventBuilder {
    pub tenant_id: TenantId,
    pub stream: StreamId,
    pub invoice_id: Option<InvoiceId>,
    pub actor: String,
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

/// An entity actor's answer, sent only once the handler's future (often a commit) is done; the
/// actor handles nothing else meanwhile.
pub(crate) type Reply<A, T> = AtomicResponse<A, Result<T, EngineError>>;

/// Answers at once.
pub(crate) fn reply<A, T>(result: Result<T, EngineError>) -> Reply<A, T>
where
    A: Actor<Context = Context<A>>,
    T: 'static,
{
    AtomicResponse::new(Box::pin(actix::fut::ready(result)))
}

/// Answers, then stops: an actor with nothing (or nothing valid) loaded should not linger.
/// Stopping before answering would drop the answer.
pub(crate) fn reply_then_stop<A, T>(result: Result<T, EngineError>) -> Reply<A, T>
where
    A: Actor<Context = Context<A>>,
    T: 'static,
{
    AtomicResponse::new(Box::pin(actix::fut::ready(result).map(
        |result, _, ctx: &mut Context<A>| {
            ctx.stop();
            result
        },
    )))
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
            actor: "test".into(),
            at: Utc::now(),
            gateway_event_id: None,
        }
    }
}
