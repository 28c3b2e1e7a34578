//! Gateway webhooks into the engine: a request's events are grouped by payment, each payment's
//! queued in arrival order without waiting for commits, and the request answered once every
//! change it caused is durable.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::Engine;
use crate::actors::messages::{ApplyGatewayEvent, WebhookDisposition};
use crate::actors::settled;
use crate::actors::supervisor::ToPayment;
use crate::domain::{GatewayOutcome, PaymentId, TenantId};
use crate::error::EngineError;

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
                    async move {
                        // Each event is queued behind the previous one without waiting for
                        // its commit; then all of them are awaited together.
                        let mut pending = Vec::with_capacity(group.len());
                        for event in group {
                            let msg = ToPayment {
                                id: payment_id,
                                msg: ApplyGatewayEvent {
                                    gateway_event_id: event.id,
                                    outcome: event.outcome,
                                },
                            };
                            pending.push(match addr.send(msg).await? {
                                Err(EngineError::NotFound(_)) => {
                                    settled(Ok(WebhookDisposition::Rejected))
                                }
                                other => other?,
                            });
                        }
                        futures::future::try_join_all(pending).await
                    }
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
