//! The payment actor's calls to the gateway, each in a task of its own: a charge or refund with
//! bounded retries, and the charge's outcome reported back to the payment's actor.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

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

/// Calls that may wait for a slot per slot, on top of the running ones; a call past them is
/// left in durable state for the recovery sweep.
const WAITING_PER_SLOT: usize = 64;

/// The engine's slots for post-commit gateway calls: at most `gateway_tasks_max` run at once,
/// and a call finding them all taken waits in line for one (up to `WAITING_PER_SLOT` per
/// slot). A slot that frees passes straight to the first call in line, so a waiting call
/// starts as soon as a running one ends, and no call can be overtaken by a later one.
pub struct GatewaySlots {
    max: usize,
    /// Its `gateway_tasks` counts the running calls; changed only under `waiting`'s lock.
    metrics: Arc<EngineMetrics>,
    waiting: Mutex<VecDeque<Waiter>>,
}

/// What a waiting call does with the slot it is given: hands it to its payment's actor.
type Waiter = Box<dyn FnOnce(GatewayTask) + Send>;

impl GatewaySlots {
    pub fn new(max: usize, metrics: Arc<EngineMetrics>) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            metrics,
            waiting: Mutex::new(VecDeque::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiter>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One running post-commit gateway call, holding one of the engine's slots until dropped.
pub struct GatewayTask(Arc<GatewaySlots>);

impl GatewayTask {
    /// A slot for one more call; or `None`, and `wait` is given a slot as soon as one frees
    /// (counted as queued), or never if the line is full (counted as deferred: the recovery
    /// sweep sends the call from durable state).
    pub(super) fn start(
        deps: &Deps,
        wait: impl FnOnce(GatewayTask) + Send + 'static,
    ) -> Option<Self> {
        let slots = &deps.gateway_slots;
        let mut waiting = slots.lock();
        let running = &slots.metrics.gateway_tasks;
        if running.load(Ordering::SeqCst) < slots.max as i64 {
            running.fetch_add(1, Ordering::SeqCst);
            return Some(Self(Arc::clone(slots)));
        }
        if waiting.len() < slots.max.saturating_mul(WAITING_PER_SLOT) {
            waiting.push_back(Box::new(wait));
            slots
                .metrics
                .gateway_calls_queued
                .fetch_add(1, Ordering::Relaxed);
        } else {
            slots
                .metrics
                .gateway_calls_deferred
                .fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}

impl Drop for GatewayTask {
    /// Passes the slot to the first call in line, or frees it.
    fn drop(&mut self) {
        let slots = &self.0;
        let next = {
            let mut waiting = slots.lock();
            let next = waiting.pop_front();
            if next.is_none() {
                slots.metrics.gateway_tasks.fetch_sub(1, Ordering::SeqCst);
            }
            next
        };
        // Outside the lock: a waiter whose actor is gone drops the slot, which passes it on.
        if let Some(waiter) = next {
            waiter(GatewayTask(Arc::clone(slots)));
        }
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
