//! The payment actor owns one payment (and its refunds) and is the only writer of its stream.
//! It applies gateway outcomes forward-only and at most once, and calls its invoice — through
//! the supervisor, never the other way round — whenever money on the invoice moves.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::messages::{
    ApplyGatewayEvent, AttemptPayment, Caller, ChargeAccepted, ChargeNeverArrived, CreateRefund,
    GetPayment, Rendered, ReservePayment, ResubmitCharge, SettlePayment, WebhookDisposition,
};
use super::supervisor::{TenantSupervisor, ToInvoice, ToPayment};
use super::{
    lifecycle_handlers, reply, reply_then_stop, Deps, EventBuilder, GATEWAY_ACTOR, SYSTEM_ACTOR,
};
use crate::domain::{
    Disposition, EventData, GatewayOutcome, Payment, PaymentId, PaymentSource, PaymentStatus,
    Refund, RefundId, StreamId, TenantId,
};
use crate::error::EngineError;
use crate::ports::{
    ChargeRequest, DedupKey, GatewayError, RefundRequest, Snapshot, StoreError, StreamAppend, Unit,
};

type Reply<T> = super::Reply<PaymentActor, T>;
type Fut<T> = ResponseActFuture<PaymentActor, Result<T, EngineError>>;

pub struct PaymentActor {
    tenant: TenantId,
    id: PaymentId,
    deps: Deps,
    supervisor: Addr<TenantSupervisor>,
    state: Option<Payment>,
    /// Gateway event ids already handled (applied or ignored): each is handled once.
    seen: HashSet<String>,
    fresh: bool,
    load_error: Option<EngineError>,
    /// Card data, in memory only, for re-sending a charge this process started.
    source: Option<PaymentSource>,
    charge_in_flight: Arc<AtomicBool>,
}

/// A decided change, ready to commit.
struct Change {
    data: Vec<EventData>,
    gateway_event_id: Option<String>,
    actor: String,
    caller: Option<Caller>,
    refund: Option<RefundId>,
}

impl PaymentActor {
    pub fn new(
        tenant: TenantId,
        id: PaymentId,
        deps: Deps,
        supervisor: Addr<TenantSupervisor>,
        fresh: bool,
    ) -> Self {
        Self {
            tenant,
            id,
            deps,
            supervisor,
            state: None,
            seen: HashSet::new(),
            fresh,
            load_error: None,
            source: None,
            charge_in_flight: Arc::new(AtomicBool::new(false)),
        }
    }

    fn current(&self) -> Result<&Payment, EngineError> {
        if let Some(err) = &self.load_error {
            return Err(err.clone());
        }
        self.state.as_ref().ok_or(EngineError::NotFound("payment"))
    }

    /// Commits a change: through the invoice when it moves invoice money, else straight to the
    /// audit writer. The state changes only once the unit is durable.
    fn commit(&mut self, change: Change) -> Fut<Payment> {
        let state = match self.current() {
            Ok(state) => state.clone(),
            Err(err) => return Box::pin(actix::fut::ready(Err(err))),
        };
        let at = self.deps.clock.now();
        let events = EventBuilder {
            tenant_id: self.tenant,
            stream: StreamId::Payment(self.id),
            invoice_id: Some(state.invoice_id),
            actor: change.actor,
            at,
            gateway_event_id: change.gateway_event_id.clone(),
        }
        .build(state.version, change.data);
        let mut next = state.clone();
        events.iter().for_each(|e| next.apply(e));
        let moves_invoice_money = events.iter().any(|e| {
            matches!(
                e.data,
                EventData::PaymentSucceeded { .. }
                    | EventData::PaymentFailed { .. }
                    | EventData::RefundSucceeded { .. }
            )
        });
        let dedup_keys: Vec<DedupKey> = change
            .gateway_event_id
            .iter()
            .map(|id| DedupKey {
                gateway_event_id: id.clone(),
                payment_id: self.id,
            })
            .collect();
        let append = StreamAppend {
            stream: StreamId::Payment(self.id),
            expected_version: state.version,
            events,
        };
        let fut: futures::future::BoxFuture<'static, Result<(), EngineError>> =
            if moves_invoice_money {
                let supervisor = self.supervisor.clone();
                let settle = ToInvoice {
                    id: state.invoice_id,
                    msg: SettlePayment {
                        payment: append,
                        snapshot: next.clone(),
                        dedup_keys,
                    },
                };
                Box::pin(async move { supervisor.send(settle).await?.map(|_| ()) })
            } else {
                let mut unit = Unit::new(self.tenant);
                if let Some(caller) = &change.caller {
                    let rendered = match change.refund.and_then(|r| next.refund(r)) {
                        Some(refund) => Rendered::Refund(refund),
                        None => Rendered::Payment(&next),
                    };
                    unit.idempotency = super::idempotency_record(caller, rendered, at);
                }
                unit.streams.push(append);
                unit.snapshots
                    .push(Snapshot::Payment(Box::new(next.clone())));
                unit.dedup_keys = dedup_keys;
                let audit = self.deps.audit.clone();
                Box::pin(async move { audit.commit(unit).await })
            };
        let gateway_event_id = change.gateway_event_id;
        Box::pin(
            fut.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(()) => {
                        act.seen.extend(gateway_event_id);
                        act.state = Some(next.clone());
                        Ok(next)
                    }
                    Err(err) => {
                        if !matches!(err, EngineError::Overloaded | EngineError::Domain(_)) {
                            ctx.stop();
                        }
                        Err(err)
                    }
                }),
        )
    }

    /// Records a handled-but-ignored gateway event so a re-delivery counts as a duplicate.
    fn remember(&mut self, gateway_event_id: String) -> Fut<WebhookDisposition> {
        let mut unit = Unit::new(self.tenant);
        unit.dedup_keys.push(DedupKey {
            gateway_event_id: gateway_event_id.clone(),
            payment_id: self.id,
        });
        let audit = self.deps.audit.clone();
        let fut = async move { audit.commit(unit).await };
        Box::pin(
            fut.into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(()) => {
                        act.seen.insert(gateway_event_id);
                        Ok(WebhookDisposition::Ignored)
                    }
                    Err(EngineError::Storage(StoreError::DuplicateGatewayEvent(_))) => {
                        act.seen.insert(gateway_event_id);
                        Ok(WebhookDisposition::Duplicate)
                    }
                    Err(err) => Err(err),
                }),
        )
    }

    /// Sends the charge to the gateway in a task of its own: the mailbox stays free, and a
    /// client disconnect or passivation cannot cancel it. Gives up after bounded retries; the
    /// recovery sweep re-sends from durable state.
    fn start_charge(&mut self) -> bool {
        let Some(payment) = &self.state else {
            return false;
        };
        if payment.status != PaymentStatus::Processing || payment.gateway_reference.is_some() {
            return false;
        }
        if self.charge_in_flight.swap(true, Ordering::SeqCst) {
            return false;
        }
        let request = ChargeRequest {
            account: self.tenant,
            payment_id: self.id,
            amount: payment.amount,
            currency: payment.currency,
            // Card data lives only in memory; a token is durable and can always be re-sent.
            source: self
                .source
                .clone()
                .or_else(|| payment.source_token.clone().map(PaymentSource::Token)),
        };
        let (gateway, supervisor, deps) = (
            self.deps.gateway.clone(),
            self.supervisor.clone(),
            self.deps.clone(),
        );
        let in_flight = Arc::clone(&self.charge_in_flight);
        let id = self.id;
        deps.metrics
            .charges_awaiting_gateway
            .fetch_add(1, Ordering::Relaxed);
        actix::spawn(async move {
            let mut delay = deps.config.charge_retry_base;
            for attempt in 0..=deps.config.charge_retry_max {
                if attempt > 0 {
                    deps.metrics.gateway_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                deps.metrics.gateway_calls.fetch_add(1, Ordering::Relaxed);
                match gateway.create_charge(&request).await {
                    Ok(reference) => {
                        let msg = ToPayment {
                            id,
                            msg: ChargeAccepted { reference },
                        };
                        if let Err(err) = supervisor.send(msg).await {
                            tracing::warn!(payment = %id, error = %err, "charge reference not recorded; sweep will retry");
                        }
                        break;
                    }
                    Err(GatewayError::UnknownCharge) => {
                        let _ = supervisor
                            .send(ToPayment {
                                id,
                                msg: ChargeNeverArrived,
                            })
                            .await;
                        break;
                    }
                    Err(GatewayError::Rejected { status, message }) => {
                        tracing::warn!(payment = %id, status, %message, "gateway rejected charge");
                        break;
                    }
                    Err(GatewayError::Unavailable(reason)) => {
                        tracing::warn!(payment = %id, attempt, %reason, "gateway unavailable");
                    }
                }
            }
            in_flight.store(false, Ordering::SeqCst);
            deps.metrics
                .charges_awaiting_gateway
                .fetch_sub(1, Ordering::Relaxed);
        });
        true
    }

    fn start_refund(&self, refund: &Refund) {
        let request = RefundRequest {
            account: self.tenant,
            payment_id: self.id,
            refund_id: refund.id,
            amount: refund.amount,
        };
        let deps = self.deps.clone();
        actix::spawn(async move {
            let mut delay = deps.config.charge_retry_base;
            for attempt in 0..=deps.config.charge_retry_max {
                deps.metrics.gateway_calls.fetch_add(1, Ordering::Relaxed);
                match deps.gateway.create_refund(&request).await {
                    Ok(_) => return,
                    Err(GatewayError::Unavailable(reason)) => {
                        tracing::warn!(refund = %request.refund_id, attempt, %reason, "gateway unavailable for refund");
                        deps.metrics.gateway_retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2);
                    }
                    Err(err) => {
                        tracing::warn!(refund = %request.refund_id, error = %err, "gateway refused refund");
                        return;
                    }
                }
            }
        });
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.deps.config.entity_mailbox_capacity);
        self.deps
            .metrics
            .active_payment_actors
            .fetch_add(1, Ordering::Relaxed);
        if self.fresh {
            return;
        }
        let store = self.deps.store.clone();
        let (tenant, id) = (self.tenant, self.id);
        let load = async move {
            let loaded = store.load_payment(tenant, id).await?;
            let seen = store.payment_gateway_events(tenant, id).await?;
            Ok::<_, StoreError>((loaded, seen))
        };
        ctx.wait(load.into_actor(self).map(|result, act, _| match result {
            Ok((Some(loaded), seen)) => {
                let mut state = loaded.snapshot;
                for event in &loaded.trailing {
                    state.apply(event);
                }
                act.seen = seen.into_iter().collect();
                act.seen
                    .extend(state.applied_gateway_events.iter().cloned());
                act.state = Some(state);
            }
            Ok((None, _)) => {}
            Err(err) => act.load_error = Some(err.into()),
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.deps
            .metrics
            .active_payment_actors
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handler<AttemptPayment> for PaymentActor {
    type Result = Reply<Payment>;

    fn handle(&mut self, msg: AttemptPayment, _: &mut Self::Context) -> Self::Result {
        if self.state.is_some() {
            return reply(Err(EngineError::Domain(
                crate::domain::DomainError::invalid_state("payment already exists"),
            )));
        }
        let reserve = ToInvoice {
            id: msg.invoice_id,
            msg: ReservePayment {
                payment_id: self.id,
                amount: msg.amount,
                card: msg.card,
                token: match &msg.source {
                    PaymentSource::Token(token) => Some(token.clone()),
                    PaymentSource::Card { .. } => None,
                },
                caller: msg.caller,
            },
        };
        let supervisor = self.supervisor.clone();
        let source = msg.source;
        let fut = async move { supervisor.send(reserve).await? };
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            move |result, act, ctx| match result {
                Ok(payment) => {
                    act.state = Some(payment.clone());
                    act.source = Some(source);
                    act.start_charge();
                    Ok(payment)
                }
                Err(err) => {
                    // The payment never came to be; nothing to keep in memory.
                    ctx.stop();
                    Err(err)
                }
            },
        )))
    }
}

impl Handler<ApplyGatewayEvent> for PaymentActor {
    type Result = Reply<WebhookDisposition>;

    fn handle(&mut self, msg: ApplyGatewayEvent, _: &mut Self::Context) -> Self::Result {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return reply_then_stop(Err(err)),
        };
        if self.seen.contains(&msg.gateway_event_id) {
            return reply(Ok(WebhookDisposition::Duplicate));
        }
        match state.decide_gateway(&msg.outcome) {
            Disposition::Reject(reason) => {
                tracing::warn!(payment = %self.id, event = %msg.gateway_event_id, %reason, "gateway event rejected");
                reply(Ok(WebhookDisposition::Rejected))
            }
            Disposition::Ignore => AtomicResponse::new(self.remember(msg.gateway_event_id)),
            Disposition::Apply(data) => {
                let change = Change {
                    data,
                    gateway_event_id: Some(msg.gateway_event_id),
                    actor: GATEWAY_ACTOR.into(),
                    caller: None,
                    refund: None,
                };
                let commit = self.commit(change);
                AtomicResponse::new(Box::pin(commit.map(|result, _, _| match result {
                    Ok(_) => Ok(WebhookDisposition::Applied),
                    Err(EngineError::Storage(StoreError::DuplicateGatewayEvent(_))) => {
                        Ok(WebhookDisposition::Duplicate)
                    }
                    Err(err) => Err(err),
                })))
            }
        }
    }
}

impl Handler<CreateRefund> for PaymentActor {
    type Result = Reply<Refund>;

    fn handle(&mut self, msg: CreateRefund, _: &mut Self::Context) -> Self::Result {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return reply(Err(err)),
        };
        let data = match state.decide_refund(msg.refund_id, msg.amount, msg.reason) {
            Ok(data) => data,
            Err(err) => return reply(Err(err.into())),
        };
        let refund_id = msg.refund_id;
        let change = Change {
            data,
            gateway_event_id: None,
            actor: msg.caller.actor.clone(),
            caller: Some(msg.caller),
            refund: Some(refund_id),
        };
        let commit = self.commit(change);
        AtomicResponse::new(Box::pin(commit.map(move |result, act, _| {
            let payment = result?;
            let refund = payment
                .refund(refund_id)
                .cloned()
                .ok_or(EngineError::NotFound("refund"))?;
            act.start_refund(&refund);
            Ok(refund)
        })))
    }
}

impl Handler<ChargeAccepted> for PaymentActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: ChargeAccepted, _: &mut Self::Context) -> Self::Result {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return reply(Err(err)),
        };
        let outcome = GatewayOutcome::Processing {
            reference: msg.reference,
        };
        match state.decide_gateway(&outcome) {
            Disposition::Apply(data) => {
                let change = Change {
                    data,
                    gateway_event_id: None,
                    actor: GATEWAY_ACTOR.into(),
                    caller: None,
                    refund: None,
                };
                AtomicResponse::new(Box::pin(self.commit(change).map(|r, _, _| r.map(|_| ()))))
            }
            _ => reply(Ok(())),
        }
    }
}

impl Handler<ChargeNeverArrived> for PaymentActor {
    type Result = Reply<()>;

    fn handle(&mut self, _: ChargeNeverArrived, _: &mut Self::Context) -> Self::Result {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return reply(Err(err)),
        };
        // The gateway confirmed it never saw this charge, and the card data is gone: it can
        // no longer happen, so the reservation is released.
        let outcome = GatewayOutcome::Failed {
            code: "processing_error".into(),
            message: "the charge never reached the gateway and card data is not retained".into(),
            amount: None,
            currency: None,
        };
        match state.decide_gateway(&outcome) {
            Disposition::Apply(data) => {
                let change = Change {
                    data,
                    gateway_event_id: None,
                    actor: SYSTEM_ACTOR.into(),
                    caller: None,
                    refund: None,
                };
                AtomicResponse::new(Box::pin(self.commit(change).map(|r, _, _| r.map(|_| ()))))
            }
            _ => reply(Ok(())),
        }
    }
}

impl Handler<ResubmitCharge> for PaymentActor {
    type Result = Reply<bool>;

    fn handle(&mut self, _: ResubmitCharge, _: &mut Self::Context) -> Self::Result {
        let created_at = match self.current() {
            Ok(payment) => payment.created_at,
            Err(err) => return reply_then_stop(Err(err)),
        };
        let min_age = chrono::Duration::from_std(self.deps.config.recovery_min_age)
            .unwrap_or(chrono::Duration::zero());
        if self.deps.clock.now() - created_at < min_age {
            return reply(Ok(false));
        }
        reply(Ok(self.start_charge()))
    }
}

impl Handler<GetPayment> for PaymentActor {
    type Result = Reply<Payment>;

    fn handle(&mut self, _: GetPayment, _: &mut Self::Context) -> Self::Result {
        let result = self.current().cloned();
        if result.is_err() {
            return reply_then_stop(result);
        }
        reply(result)
    }
}

lifecycle_handlers!(PaymentActor, "payment");
