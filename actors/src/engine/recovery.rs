//! Background upkeep: recovery from durable state (charges that may never have reached the
//! gateway and refunds still pending are sent again, oldest first, a page at a time) and the
//! retirement of idle tenant supervisors.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{detached, Engine, RECOVERY_PAGE_PAYMENTS};
use crate::actors::messages::{ResubmitCharge, ResubmitRefund};
use crate::actors::supervisor::ToPayment;
use crate::error::EngineError;

impl Engine {
    /// Re-sends charges that may never have reached the gateway (crash or outage between
    /// commit and call), from durable state: every such payment, oldest first, a page at a
    /// time, so none starves behind older ones the gateway keeps failing. Returns how many
    /// were re-sent.
    pub async fn resubmit_pending_charges(&self) -> Result<usize, EngineError> {
        let (mut sent, mut found) = (0, 0);
        let mut after = None;
        loop {
            let store = Arc::clone(&self.deps.store);
            let page = detached(async move {
                store
                    .payments_awaiting_charge(after, RECOVERY_PAGE_PAYMENTS)
                    .await
                    .map_err(EngineError::from)
            })
            .await?;
            found += page.len();
            let Some(&(_, last)) = page.last() else {
                self.record_backlog(found, true);
                return Ok(sent);
            };
            let full = page.len() == RECOVERY_PAGE_PAYMENTS;
            for (tenant, payment) in page {
                let handle = self.registry.tenant(tenant);
                let resubmit = ToPayment {
                    id: payment,
                    msg: ResubmitCharge,
                };
                if let Ok(true) = handle.addr.send(resubmit).await? {
                    sent += 1;
                }
            }
            if !full {
                self.record_backlog(found, true);
                return Ok(sent);
            }
            after = Some(last);
        }
    }

    /// The recovery backlog gauge: the charges' sweep (which runs first) sets it, the refunds'
    /// adds to it.
    fn record_backlog(&self, found: usize, first: bool) {
        let found = i64::try_from(found).unwrap_or(i64::MAX);
        let gauge = &self.deps.metrics.recovery_backlog;
        if first {
            gauge.store(found, Ordering::Relaxed);
        } else {
            gauge.fetch_add(found, Ordering::Relaxed);
        }
    }

    /// Asks the gateway again for refunds still pending (a crash or an outage between commit
    /// and call, or an outcome that never came): oldest first, a page at a time. The gateway
    /// is idempotent on the refund id, so a refund it already has is not made twice. Returns
    /// how many were asked for.
    pub async fn resubmit_pending_refunds(&self) -> Result<usize, EngineError> {
        let (mut sent, mut found) = (0, 0);
        let mut after = None;
        loop {
            let store = Arc::clone(&self.deps.store);
            let page = detached(async move {
                store
                    .refunds_awaiting_outcome(after, RECOVERY_PAGE_PAYMENTS)
                    .await
                    .map_err(EngineError::from)
            })
            .await?;
            found += page.len();
            let Some(&(_, _, last)) = page.last() else {
                self.record_backlog(found, false);
                return Ok(sent);
            };
            let full = page.len() == RECOVERY_PAGE_PAYMENTS;
            for (tenant, payment, refund_id) in page {
                let resubmit = ToPayment {
                    id: payment,
                    msg: ResubmitRefund { refund_id },
                };
                if let Ok(true) = self.registry.tenant(tenant).addr.send(resubmit).await? {
                    sent += 1;
                }
            }
            if !full {
                self.record_backlog(found, false);
                return Ok(sent);
            }
            after = Some(last);
        }
    }

    /// Retires idle supervisors now and then (see `Registry::retire_idle`), for as long as the
    /// engine's registry lives.
    pub(super) fn start_supervisor_retirement(&self) {
        let every = self.deps.config.passivation_check_interval;
        if every.is_zero() {
            return;
        }
        let registry = Arc::downgrade(&self.registry);
        actix::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                registry.retire_idle();
            }
        });
    }

    pub(super) fn start_recovery_sweep(&self) {
        let every = self.deps.config.recovery_interval;
        if every.is_zero() {
            return;
        }
        let engine = self.clone();
        actix::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                if engine.draining.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(err) = engine.resubmit_pending_charges().await {
                    tracing::warn!(error = %err, "charge recovery sweep failed");
                }
                if let Err(err) = engine.resubmit_pending_refunds().await {
                    tracing::warn!(error = %err, "refund recovery sweep failed");
                }
            }
        });
    }
}
