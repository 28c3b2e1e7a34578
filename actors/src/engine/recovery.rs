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
        let store = Arc::clone(&self.deps.store);
        let (sent, found) = sweep(
            |after| {
                let store = Arc::clone(&store);
                async move {
                    let page = store
                        .payments_awaiting_charge(after, RECOVERY_PAGE_PAYMENTS)
                        .await;
                    page.map_err(EngineError::from)
                }
            },
            |&(_, payment)| payment,
            |(tenant, payment)| {
                let msg = ToPayment {
                    id: payment,
                    msg: ResubmitCharge,
                };
                self.registry.tenant(tenant).addr.send(msg)
            },
        )
        .await?;
        self.deps
            .metrics
            .recovery_backlog
            .store(gauge(found), Ordering::Relaxed);
        Ok(sent)
    }

    /// Asks the gateway again for refunds still pending (a crash or an outage between commit
    /// and call, or an outcome that never came): oldest first, a page at a time. The gateway
    /// is idempotent on the refund id, so a refund it already has is not made twice. Returns
    /// how many were asked for.
    pub async fn resubmit_pending_refunds(&self) -> Result<usize, EngineError> {
        let store = Arc::clone(&self.deps.store);
        let (sent, found) = sweep(
            |after| {
                let store = Arc::clone(&store);
                async move {
                    let page = store
                        .refunds_awaiting_outcome(after, RECOVERY_PAGE_PAYMENTS)
                        .await;
                    page.map_err(EngineError::from)
                }
            },
            |&(_, _, refund)| refund,
            |(tenant, payment, refund_id)| {
                let msg = ToPayment {
                    id: payment,
                    msg: ResubmitRefund { refund_id },
                };
                self.registry.tenant(tenant).addr.send(msg)
            },
        )
        .await?;
        // The charges' sweep runs first and sets the gauge; the refunds' adds to it.
        self.deps
            .metrics
            .recovery_backlog
            .fetch_add(gauge(found), Ordering::Relaxed);
        Ok(sent)
    }

    /// Retires idle supervisors and trims live actors past the node's cap now and then (see
    /// `Registry::retire_idle` and `Registry::trim_entities`), for as long as the engine's
    /// registry lives.
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
                registry.trim_entities();
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

/// Pages through `fetch` (rows after a cursor, oldest first; `cursor` reads a row's), hands
/// each row to `resend` and counts how many it re-sent. Answers `(sent, found)`. A row whose
/// actor could not be reached is left for the next sweep without ending this one.
async fn sweep<R, K, F, FFut, S, SFut>(
    fetch: F,
    cursor: impl Fn(&R) -> K,
    resend: S,
) -> Result<(usize, usize), EngineError>
where
    K: Copy + Send + 'static,
    R: Send + 'static,
    F: Fn(Option<K>) -> FFut,
    FFut: std::future::Future<Output = Result<Vec<R>, EngineError>> + Send + 'static,
    S: Fn(R) -> SFut,
    SFut: std::future::Future<Output = Result<Result<bool, EngineError>, actix::MailboxError>>,
{
    let (mut sent, mut found) = (0, 0);
    let mut after = None;
    loop {
        let page = detached(fetch(after)).await?;
        found += page.len();
        let (Some(last), full) = (
            page.last().map(&cursor),
            page.len() == RECOVERY_PAGE_PAYMENTS,
        ) else {
            return Ok((sent, found));
        };
        for row in page {
            match resend(row).await {
                Ok(Ok(true)) => sent += 1,
                Ok(_) => {}
                // A supervisor stopping as the sweep reached it (retired, or past the node's
                // cap): this row waits for the next sweep, the rest go on now.
                Err(err) => tracing::debug!(error = %err, "recovery skipped a row"),
            }
        }
        if !full {
            return Ok((sent, found));
        }
        after = Some(last);
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
