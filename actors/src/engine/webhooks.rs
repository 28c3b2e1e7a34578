//! Gateway webhooks into the engine: a request's events are grouped by payment, each payment's
//! queued in arrival order without waiting for commits, and the request answered once every
//! change it caused is durable.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::Engine;
use crate::actors::messages::{ApplyGatewayEvent, WebhookDisposition};
use crate::actors::settled;
use crate::actors::supervisor::{TenantSupervisor, ToPayment};
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
        // Each payment's events in arrival order; payments in order of first appearance.
        let mut groups: Vec<(PaymentId, Vec<GatewayEvent>)> = Vec::new();
        let mut index: HashMap<PaymentId, usize> = std::collections::HashMap::new();
        for event in events {
            match index.get(&event.payment_id) {
                Some(&i) => groups[i].1.push(event),
                None => {
                    index.insert(event.payment_id, groups.len());
                    groups.push((event.payment_id, vec![event]));
                }
            }
        }
        let weight = summary.received;
        let outcomes = self
            .admitted_weighted(tenant, weight, |handle| async move {
                let runs = groups.into_iter().map(|(payment_id, group)| {
                    let addr = handle.addr.clone();
                    async move { decide_in_order(&addr, payment_id, group).await }
                });
                futures::future::try_join_all(runs).await
            })
            .await?;
        for disposition in outcomes.into_iter().flatten() {
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

/// Queues one payment's events in arrival order, each behind the previous one without waiting
/// for its commit, then awaits them all. Events whose unit met a conflict are decided again
/// (they are deduplicated by gateway event id, so one that did apply is never applied twice).
async fn decide_in_order(
    addr: &actix::Addr<TenantSupervisor>,
    payment_id: PaymentId,
    group: Vec<GatewayEvent>,
) -> Result<Vec<WebhookDisposition>, EngineError> {
    let mut decided: Vec<Option<WebhookDisposition>> = vec![None; group.len()];
    for attempt in 1..=DECIDE_ATTEMPTS_MAX {
        let mut pending = Vec::new();
        for (i, event) in group.iter().enumerate() {
            if decided[i].is_some() {
                continue;
            }
            let msg = ToPayment {
                id: payment_id,
                msg: ApplyGatewayEvent {
                    gateway_event_id: event.id.clone(),
                    outcome: event.outcome.clone(),
                },
            };
            let answer = match addr.send(msg).await? {
                Ok(answer) => answer,
                Err(EngineError::NotFound(_)) => settled(Ok(WebhookDisposition::Rejected)),
                Err(e) => settled(Err(e)),
            };
            pending.push((i, answer));
        }
        let (indexes, answers): (Vec<usize>, Vec<_>) = pending.into_iter().unzip();
        let mut again = false;
        for (i, answer) in indexes
            .into_iter()
            .zip(futures::future::join_all(answers).await)
        {
            match answer {
                Ok(disposition) => decided[i] = Some(disposition),
                Err(e) if attempt < DECIDE_ATTEMPTS_MAX && decided_again(&e) => again = true,
                Err(e) => return Err(e),
            }
        }
        if !again {
            break;
        }
        tracing::debug!(payment = %payment_id, attempt, "gateway events decided again after a conflict");
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
