//! The payment actor's calls to the gateway, each in a task of its own: a charge or refund with
//! bounded retries, and the charge's outcome reported back to the payment's actor.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;

use super::messages::{ChargeAccepted, ChargeImpossible, RefundImpossible};
use super::payment::PaymentActor;
use super::supervisor::{TenantSupervisor, ToPayment};
use super::{durably, Deps, Pending};
use crate::domain::PaymentId;
use crate::error::EngineError;
use crate::metrics::EngineMetrics;
use crate::ports::{ChargeRequest, GatewayError, RefundRequest};

/// One charge with bounded retries; the outcome is reported back to the payment's actor.
pub(super) async fn charge(
    deps: &Deps,
    supervisor: &Addr<TenantSupervisor>,
    request: &ChargeRequest,
) {
    let id = request.payment_id;
    let mut delay = deps.config.charge_retry_base;
    for attempt in 0..=deps.config.charge_retry_max {
        if attempt > 0 {
            deps.metrics.gateway_retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
        deps.metrics.gateway_calls.fetch_add(1, Ordering::Relaxed);
        match deps.gateway.create_charge(request).await {
            Ok(reference) => {
                let recorded = record(supervisor, id, ChargeAccepted { reference }).await;
                if let Err(err) = recorded {
                    tracing::warn!(payment = %id, error = %err, "charge reference not recorded; sweep will retry");
                }
                return;
            }
            Err(GatewayError::UnknownCharge) => {
                let reason =
                    "the charge never reached the gateway and card data is not retained".into();
                charge_impossible(supervisor, id, reason).await;
                return;
            }
            Err(GatewayError::UnknownAccount) => {
                // Not the payment's fault: it stays processing for the recovery sweep.
                tracing::warn!(payment = %id, "gateway does not know the account; charge left for the sweep");
                return;
            }
            Err(GatewayError::Rejected { status, message }) => {
                tracing::warn!(payment = %id, status, %message, "gateway refused the charge");
                let reason = format!("the gateway refused the charge (HTTP {status})");
                charge_impossible(supervisor, id, reason).await;
                return;
            }
            Err(GatewayError::Unavailable(reason)) => {
                tracing::warn!(payment = %id, attempt, %reason, "gateway unavailable");
            }
        }
    }
}

/// Fails a payment whose charge can never happen, releasing its reservation; if that cannot be
/// recorded now, the recovery sweep asks the gateway again later.
async fn charge_impossible(supervisor: &Addr<TenantSupervisor>, id: PaymentId, reason: String) {
    if let Err(err) = record(supervisor, id, ChargeImpossible { reason }).await {
        tracing::warn!(payment = %id, error = %err, "failed charge not recorded");
    }
}

/// Tells the payment's actor what the gateway answered and waits until it is durable.
async fn record<M>(
    supervisor: &Addr<TenantSupervisor>,
    id: PaymentId,
    msg: M,
) -> Result<(), EngineError>
where
    M: Message<Result = Result<Pending<()>, EngineError>> + Send + 'static,
    PaymentActor: Handler<M>,
{
    durably(supervisor.send(ToPayment { id, msg }).await).await
}

/// One running post-commit gateway call, counted against `gateway_tasks_max` until dropped.
pub(super) struct GatewayTask(Arc<EngineMetrics>);

impl GatewayTask {
    /// A place for one more call, or `None` (counted as deferred) when all are taken.
    pub(super) fn start(deps: &Deps) -> Option<Self> {
        let max = deps.config.gateway_tasks_max.max(1) as i64;
        let metrics = &deps.metrics;
        if metrics.gateway_tasks.fetch_add(1, Ordering::SeqCst) >= max {
            metrics.gateway_tasks.fetch_sub(1, Ordering::SeqCst);
            metrics
                .gateway_calls_deferred
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(Arc::clone(metrics)))
    }
}

impl Drop for GatewayTask {
    fn drop(&mut self) {
        self.0.gateway_tasks.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One refund with bounded retries on a gateway outage. A refund the gateway refuses for good
/// fails (its amount is refundable again); one that stays unanswered is left `pending` for the
/// recovery sweep.
pub(super) async fn refund(
    deps: &Deps,
    supervisor: &Addr<TenantSupervisor>,
    request: &RefundRequest,
) {
    let mut delay = deps.config.charge_retry_base;
    for attempt in 0..=deps.config.charge_retry_max {
        deps.metrics.gateway_calls.fetch_add(1, Ordering::Relaxed);
        match deps.gateway.create_refund(request).await {
            Ok(_) => return,
            Err(GatewayError::Unavailable(reason)) => {
                tracing::warn!(refund = %request.refund_id, attempt, %reason, "gateway unavailable for refund");
                deps.metrics.gateway_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            Err(GatewayError::Rejected { status, .. }) => {
                tracing::warn!(refund = %request.refund_id, status, "gateway refused the refund");
                let msg = RefundImpossible {
                    refund_id: request.refund_id,
                };
                if let Err(err) = record(supervisor, request.payment_id, msg).await {
                    tracing::warn!(refund = %request.refund_id, error = %err, "failed refund not recorded");
                }
                return;
            }
            Err(err) => {
                // Unknown charge or account: nothing this refund can fix; the sweep asks again.
                tracing::warn!(refund = %request.refund_id, error = %err, "refund not accepted; left for the sweep");
                return;
            }
        }
    }
}
