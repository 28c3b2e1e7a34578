//! Gateway webhooks into the engine: a request's events go to the tenant's supervisor in one
//! message, each payment's queued in arrival order without waiting for commits, and the
//! request is answered once every change it caused is durable.

use std::sync::atomic::Ordering;

use super::Engine;
use crate::actors::messages::{ApplyGatewayEvent, WebhookDisposition};
use crate::actors::supervisor::{TenantSupervisor, ToPayments};
use crate::domain::{GatewayOutcome, PaymentId, TenantId};
use crate::error::EngineError;
use crate::ports::StoreError;

/// Times a payment's events are decided, at most, when their units meet another node's write
/// (a version conflict) or the failure of an earlier unit (fenced): the actor has reloaded by
/// then, so the next decision is on the durable truth. The gateway never sees a conflict.
const DECIDE_ATTEMPTS_MAX: usize = 3;

/// One verified gateway event, already matched to this tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEvent {
    pub id: String,
    pub payment_id: PaymentId,
    pub outcome: GatewayOutcome,
}

/// Per-request webhook outcome counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookSummary {
    pub received: usize,
    pub applied: usize,
    pub duplicates: usize,
    pub ignored: usize,
    pub rejected: usize,
}

impl Engine {
    /// Applies verified gateway events of one tenant: each payment's events in arrival order,
    /// different payments concurrently; every applied change is durable when this returns.
    pub async fn apply_gateway_events(
        &self,
        tenant: TenantId,
        events: Vec<GatewayEvent>,
    ) -> Result<WebhookSummary, EngineError> {
        let mut summary = WebhookSummary {
            received: events.len(),
            ..WebhookSummary::default()
        };
        let outcomes = self
            .admitted_weighted(tenant, summary.received, |handle| async move {
                decide_in_order(&handle.addr, events).await
            })
            .await?;
        for disposition in outcomes {
            let (slot, counter) = match disposition {
                WebhookDisposition::Applied => {
                    (&mut summary.applied, &self.deps.metrics.webhook_applied)
                }
                WebhookDisposition::Duplicate => (
                    &mut summary.duplicates,
                    &self.deps.metrics.webhook_duplicates,
                ),
                WebhookDisposition::Ignored => {
                    (&mut summary.ignored, &self.deps.metrics.webhook_ignored)
                }
                WebhookDisposition::Rejected => {
                    (&mut summary.rejected, &self.deps.metrics.webhook_rejected)
                }
            };
            *slot += 1;
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Ok(summary)
    }
}

/// Queues every event with its payment's actor in one message to the supervisor, each payment's
/// in arrival order and each behind the previous one without waiting for its commit, then
/// awaits them all. Events whose unit met a conflict are decided again (they are deduplicated
/// by gateway event id, so one that did apply is never applied twice).
async fn decide_in_order(
    addr: &actix::Addr<TenantSupervisor>,
    events: Vec<GatewayEvent>,
) -> Result<Vec<WebhookDisposition>, EngineError> {
    let mut decided: Vec<Option<WebhookDisposition>> = vec![None; events.len()];
    for attempt in 1..=DECIDE_ATTEMPTS_MAX {
        let (indexes, msgs): (Vec<usize>, Vec<_>) = events
            .iter()
            .enumerate()
            .filter(|(i, _)| decided[*i].is_none())
            .map(|(i, event)| {
                let msg = ApplyGatewayEvent {
                    gateway_event_id: event.id.clone(),
                    outcome: event.outcome.clone(),
                };
                (i, (event.payment_id, msg))
            })
            .unzip();
        let answers = addr.send(ToPayments { msgs }).await?;
        let mut again = false;
        let mut failed = None;
        // Awaited one after the other, not joined: answers mostly become durable in order,
        // a batch at a time, so this task wakes once per batch, not once per event.
        for (i, answer) in indexes.into_iter().zip(answers) {
            let answer = match answer {
                Ok(pending) => pending.await,
                Err(EngineError::NotFound(_)) => Ok(WebhookDisposition::Rejected),
                Err(e) => Err(e),
            };
            match answer {
                Ok(disposition) => decided[i] = Some(disposition),
                Err(e) if attempt < DECIDE_ATTEMPTS_MAX && decided_again(&e) => again = true,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !again {
            break;
        }
        tracing::debug!(attempt, "gateway events decided again after a conflict");
    }
    Ok(decided.into_iter().flatten().collect())
}

/// Errors after which the payment's actor has reloaded from storage.
fn decided_again(err: &EngineError) -> bool {
    matches!(
        err,
        EngineError::VersionConflict | EngineError::Storage(StoreError::Fenced(_))
    )
}
