//! The payment actor owns one payment (and its refunds) and is the only writer of its stream.
//! It applies gateway outcomes forward-only and at most once, and calls its invoice — directly,
//! through a lease on the invoice's actor from the supervisor, never the other way round —
//! whenever money on the invoice moves.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use futures::future::{BoxFuture, FutureExt};

use super::gateway_calls::{self, GatewayTask};
use super::invoice::InvoiceActor;
use super::messages::{
    ApplyGatewayEvent, AttemptPayment, Caller, CreateRefund, GetPayment, Queued, Rendered,
    ReservePayment, ResumeCharge, ResumeRefund, SettlePayment, WebhookDisposition,
};
use super::supervisor::{InvoiceLease, LeaseInvoice, TenantSupervisor, ToPayment};
use super::{
    done, done_then_stop, later, lifecycle_handlers, load_on_start, on_fresh_state,
    read_when_durable, when_durable, Deps, Durable, EventBuilder, Fences, Pending, Pipeline,
    Pipelined, GATEWAY_ACTOR,
};
use crate::domain::{
    Disposition, EventData, GatewayOutcome, IdSet, InvoiceId, Payment, PaymentId, PaymentSource,
    PaymentStatus, Refund, RefundId, StreamId, TenantId,
};
use crate::error::EngineError;
use crate::ports::{
    ChargeRequest, DedupKey, Loaded, RefundRequest, Snapshot, StoreError, StreamAppend, Unit,
};

mod gateway_answers;

type Reply<T> = super::Reply<PaymentActor, Pending<T>>;
type Step<T> = super::Step<PaymentActor, T>;

pub struct PaymentActor {
    tenant: TenantId,
    id: PaymentId,
    deps: Deps,
    supervisor: Addr<TenantSupervisor>,
    /// The invoice's actor, once asked for: settlements go to it without the supervisor.
    invoice: Option<InvoiceLease>,
    /// Every queued unit applied, durable or not yet.
    /// Shared with the snapshot of its last unit while that is queued.
    state: Option<Arc<Payment>>,
    /// Gateway event ids already handled (applied or ignored): each is handled once.
    seen: IdSet<String>,
    fresh: bool,
    /// Card data, in memory only, for re-sending a charge this process started.
    source: Option<PaymentSource>,
    charge_in_flight: Arc<AtomicBool>,
    pipeline: Pipeline,
}

/// A decided change, ready to queue.
struct Change {
    data: Vec<EventData>,
    gateway_event_id: Option<String>,
    actor: Cow<'static, str>,
    caller: Option<Caller>,
    refund: Option<RefundId>,
}

impl Change {
    fn from(data: Vec<EventData>, actor: impl Into<Cow<'static, str>>) -> Self {
        Self {
            data,
            gateway_event_id: None,
            actor: actor.into(),
            caller: None,
            refund: None,
        }
    }
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
            invoice: None,
            state: None,
            seen: IdSet::default(),
            fresh,
            source: None,
            charge_in_flight: Arc::new(AtomicBool::new(false)),
            pipeline: Pipeline::new(),
        }
    }

    fn current(&self) -> Result<&Payment, EngineError> {
        self.pipeline.loaded()?;
        self.state
            .as_deref()
            .ok_or(EngineError::NotFound("payment"))
    }

    /// Queues a change: through the invoice when it moves invoice money (one unit with the
    /// invoice's reaction), else straight to the audit writer. Memory moves on as soon as the
    /// unit is queued; the `Durable` it answers says when it is durable.
    fn commit(&mut self, change: Change) -> Step<Durable> {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return done(Err(err)),
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
        let mut next = Payment::clone(state);
        events.iter().for_each(|e| next.apply(e));
        let next = Arc::new(next);
        let moves_invoice_money = events.iter().any(|e| {
            matches!(
                e.data,
                EventData::PaymentSucceeded { .. }
                    | EventData::PaymentFailed { .. }
                    | EventData::RefundSucceeded { .. }
            )
        });
        let append = StreamAppend {
            stream: StreamId::Payment(self.id),
            expected_version: state.version,
            events,
        };
        let seen = change.gateway_event_id;
        if moves_invoice_money {
            let settle = SettlePayment {
                payer: self.pipeline.fence.clone(),
                payment: append,
                snapshot: Arc::clone(&next),
            };
            let invoice = state.invoice_id;
            return later(
                self.send_to_invoice(invoice, settle)
                    .map(move |result, act, _| {
                        let durable = result.inspect_err(|err| {
                            // The invoice may have queued the unit before its answer was lost.
                            if matches!(err, EngineError::Unavailable(_)) {
                                act.pipeline.fence.trip();
                            }
                        })?;
                        Ok(act.queued(next, seen, durable))
                    }),
            );
        }
        let mut unit = Unit::new(self.tenant);
        if let Some(caller) = &change.caller {
            let rendered = match change.refund.and_then(|r| next.refund(r)) {
                Some(refund) => Rendered::Refund(refund),
                None => Rendered::Payment(&next),
            };
            unit.idempotency = super::idempotency_record(caller, rendered, at);
        }
        unit.streams.push(append);
        unit.snapshots.push(Snapshot::Payment(Arc::clone(&next)));
        let queued = self
            .deps
            .audit
            .submit(unit, Fences::of(self.pipeline.fence.clone(), None))
            .map(|durable| self.queued(next, seen, durable));
        done(queued)
    }

    /// Sends `msg` to the invoice's actor directly, through the lease this actor holds, or one
    /// asked of the supervisor first. A send that finds the invoice's actor gone gives the
    /// lease back: the next asks for the invoice's new incarnation.
    fn send_to_invoice<M, T>(
        &mut self,
        invoice: InvoiceId,
        msg: M,
    ) -> ResponseActFuture<Self, Result<T, EngineError>>
    where
        M: Message<Result = Result<T, EngineError>> + Send + 'static,
        T: Send + 'static,
        InvoiceActor: Handler<M>,
    {
        // Sent at once on a lease held; neither address is cloned (each clone allocates).
        let sent = match self.invoice.as_ref().and_then(InvoiceLease::addr) {
            Some(addr) => {
                let sent = addr.send(msg);
                async move { Ok::<_, EngineError>((sent.await, None)) }.left_future()
            }
            None => {
                let lease = self.supervisor.send(LeaseInvoice(invoice));
                async move {
                    let lease = lease.await?;
                    let sent = lease
                        .addr()
                        .ok_or_else(|| EngineError::Unavailable("invoice actor stopped".into()))?
                        .send(msg);
                    Ok((sent.await, Some(lease)))
                }
                .right_future()
            }
        };
        Box::pin(sent.into_actor(self).map(|sent, act, _| {
            let (answer, lease) = sent?;
            if lease.is_some() {
                act.invoice = lease;
            }
            answer.map_err(|closed| {
                act.invoice = None;
                EngineError::from(closed)
            })?
        }))
    }

    /// Memory moves on to `next`, a unit of it now queued.
    fn queued(
        &mut self,
        next: Arc<Payment>,
        gateway_event_id: Option<String>,
        durable: Durable,
    ) -> Durable {
        self.seen.extend(gateway_event_id);
        self.state = Some(next);
        self.pipeline.tail = durable.clone();
        durable
    }

    /// Records a handled-but-ignored gateway event so a re-delivery counts as a duplicate.
    /// Nothing changed, so nobody waits for it: if the record is lost, a re-delivery is simply
    /// ignored again.
    fn remember(&mut self, gateway_event_id: String) {
        let key = DedupKey {
            gateway_event_id: gateway_event_id.clone(),
            payment_id: self.id,
        };
        if self.deps.audit.record_ignored(self.tenant, key).is_ok() {
            self.seen.insert(gateway_event_id);
        }
    }

    /// Sends the charge to the gateway, once `after` (the unit that made the payment
    /// `processing`) is durable, in a task of its own: the mailbox stays free, and neither a
    /// client disconnect nor passivation can cancel it. Gives up after bounded retries; the
    /// recovery sweep re-sends from durable state. With every gateway slot taken, the charge
    /// waits in line and comes back as `ResumeCharge` with a slot.
    fn start_charge(&mut self, after: Durable) -> bool {
        self.charge(after, None)
    }

    /// `start_charge`, in the gateway slot given to a charge that waited for one, if any; a
    /// slot not used passes on to the next call in line.
    fn charge(&mut self, after: Durable, slot: Option<GatewayTask>) -> bool {
        let Some(payment) = &self.state else {
            return false;
        };
        if payment.status != PaymentStatus::Processing || payment.gateway_reference.is_some() {
            return false;
        }
        if self.charge_in_flight.swap(true, Ordering::SeqCst) {
            return false;
        }
        let Some(task) = self.gateway_slot(slot, |slot| ResumeCharge { slot }) else {
            self.charge_in_flight.store(false, Ordering::SeqCst);
            return false;
        };
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
        let (supervisor, deps) = (self.supervisor.clone(), self.deps.clone());
        let in_flight = Arc::clone(&self.charge_in_flight);
        deps.metrics
            .charges_awaiting_gateway
            .fetch_add(1, Ordering::Relaxed);
        actix::spawn(async move {
            if after.await.is_ok() {
                gateway_calls::charge(&deps, &supervisor, &request).await;
            }
            in_flight.store(false, Ordering::SeqCst);
            deps.metrics
                .charges_awaiting_gateway
                .fetch_sub(1, Ordering::Relaxed);
            drop(task);
        });
        true
    }

    /// Asks the gateway for the refund once `after` (the unit requesting it) is durable, in the
    /// gateway slot given to it if it waited in line for one (`ResumeRefund`); with every slot
    /// taken it waits in line, or, the line being full, the recovery sweep asks later.
    fn start_refund(&self, refund: &Refund, after: Durable, slot: Option<GatewayTask>) {
        let refund_id = refund.id;
        let Some(task) = self.gateway_slot(slot, move |slot| ResumeRefund { refund_id, slot })
        else {
            return;
        };
        let request = RefundRequest {
            account: self.tenant,
            payment_id: self.id,
            refund_id: refund.id,
            amount: refund.amount,
        };
        let (supervisor, deps) = (self.supervisor.clone(), self.deps.clone());
        actix::spawn(async move {
            if after.await.is_ok() {
                gateway_calls::refund(&deps, &supervisor, &request).await;
            }
            drop(task);
        });
    }

    /// `slot` if the call was given one, else a gateway slot now; with none free the call waits
    /// in line, and the slot it is given comes back to this payment's actor as `resume(slot)`.
    fn gateway_slot<M>(
        &self,
        slot: Option<GatewayTask>,
        resume: impl FnOnce(GatewayTask) -> M + Send + 'static,
    ) -> Option<GatewayTask>
    where
        M: Message<Result = Result<bool, EngineError>> + Send + 'static,
        PaymentActor: Handler<M>,
    {
        slot.or_else(|| {
            let (supervisor, id) = (self.supervisor.clone(), self.id);
            GatewayTask::start(&self.deps, move |slot| {
                supervisor.do_send(ToPayment {
                    id,
                    msg: resume(slot),
                });
            })
        })
    }

    /// Queues the change a gateway outcome the engine learned itself (not by webhook) decides.
    fn apply_outcome(&mut self, outcome: GatewayOutcome, actor: &'static str) -> Step<Pending<()>> {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return done(Err(err)),
        };
        match state.decide_gateway(&outcome) {
            Disposition::Apply(data) => self
                .commit(Change::from(data, actor))
                .map_result(|durable| durable.map(|d| when_durable(d, ()))),
            _ => done(Ok(Pending::known(Ok(())))),
        }
    }
}

impl Pipelined for PaymentActor {
    type Loaded = (Option<Loaded<Payment>>, Vec<String>);

    fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }

    fn deps(&self) -> &Deps {
        &self.deps
    }

    fn tenant(&self) -> TenantId {
        self.tenant
    }

    fn read(&self) -> BoxFuture<'static, Result<Self::Loaded, StoreError>> {
        let store = self.deps.store.clone();
        let (tenant, id) = (self.tenant, self.id);
        async move {
            let loaded = store.load_payment(tenant, id).await?;
            let seen = store.payment_gateway_events(tenant, id).await?;
            Ok((loaded, seen))
        }
        .boxed()
    }

    fn install(&mut self, loaded: Option<Self::Loaded>) {
        self.state = None;
        self.seen.clear();
        if let Some((Some(loaded), seen)) = loaded {
            // The gateway events this payment applied or ignored, as the store recorded them
            // (kept out of the snapshot, where the set would grow with every one).
            self.seen = seen.into_iter().collect();
            self.state = Some(Arc::new(loaded.replay(Payment::apply)));
        }
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
        if !self.fresh {
            load_on_start(self, ctx);
        }
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
            return Reply::Now(Err(EngineError::Domain(
                crate::domain::DomainError::invalid_state("payment already exists"),
            )));
        }
        let reserve = ReservePayment {
            payment_id: self.id,
            payer: self.pipeline.fence.clone(),
            amount: msg.amount,
            card: msg.card,
            token: match &msg.source {
                PaymentSource::Token(token) => Some(token.clone()),
                PaymentSource::Card { .. } => None,
            },
            caller: msg.caller,
        };
        let source = msg.source;
        Reply::Atomic(AtomicResponse::new(Box::pin(
            self.send_to_invoice(msg.invoice_id, reserve).map(
                move |result, act, ctx| match result {
                    Ok(Queued {
                        value: payment,
                        durable,
                    }) => {
                        act.state = Some(Arc::new(payment.clone()));
                        act.source = Some(source);
                        act.pipeline.tail = durable.clone();
                        act.start_charge(durable.clone());
                        Ok(when_durable(durable, payment))
                    }
                    Err(err) => {
                        // The payment never came to be; nothing to keep in memory.
                        ctx.stop();
                        Err(err)
                    }
                },
            ),
        )))
    }
}

impl Handler<ApplyGatewayEvent> for PaymentActor {
    type Result = Reply<WebhookDisposition>;

    fn handle(&mut self, msg: ApplyGatewayEvent, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| {
            let state = match act.current() {
                Ok(state) => state,
                Err(err) => return done_then_stop(Err(err)),
            };
            // An answer that changes nothing still rests on the state it was decided on: it is
            // given once every unit queued before it is durable (usually already), so a
            // duplicate is never acknowledged while its original could still fail.
            let decided_on = act.pipeline.tail.clone();
            if act.seen.contains(&msg.gateway_event_id) {
                return done(Ok(read_when_durable(
                    decided_on,
                    WebhookDisposition::Duplicate,
                )));
            }
            match state.decide_gateway(&msg.outcome) {
                Disposition::Reject(reason) => {
                    tracing::warn!(payment = %act.id, event = %msg.gateway_event_id, %reason, "gateway event rejected");
                    done(Ok(read_when_durable(
                        decided_on,
                        WebhookDisposition::Rejected,
                    )))
                }
                Disposition::Ignore => {
                    // Its own dedup record is not waited for: if it is lost, a re-delivery is
                    // simply ignored again.
                    act.remember(msg.gateway_event_id);
                    done(Ok(read_when_durable(
                        decided_on,
                        WebhookDisposition::Ignored,
                    )))
                }
                Disposition::Apply(data) => {
                    let change = Change {
                        gateway_event_id: Some(msg.gateway_event_id),
                        ..Change::from(data, GATEWAY_ACTOR)
                    };
                    act.commit(change).map_result(|durable| {
                        let durable = durable?;
                        Ok(Pending::waiting(async move {
                            match durable.await {
                                Ok(()) => Ok(WebhookDisposition::Applied),
                                // Recorded concurrently elsewhere: this delivery is a duplicate.
                                Err(EngineError::Storage(StoreError::DuplicateGatewayEvent(_))) => {
                                    Ok(WebhookDisposition::Duplicate)
                                }
                                Err(err) => Err(err),
                            }
                        }))
                    })
                }
            }
        })
    }
}

impl Handler<CreateRefund> for PaymentActor {
    type Result = Reply<Refund>;

    fn handle(&mut self, msg: CreateRefund, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, ctx| {
            let state = match act.current() {
                Ok(state) => state,
                Err(err) => return done(Err(err)),
            };
            let data = match state.decide_refund(msg.refund_id, msg.amount, msg.reason) {
                Ok(data) => data,
                Err(err) => return done(Err(err.into())),
            };
            let refund_id = msg.refund_id;
            let change = Change {
                caller: Some(msg.caller.clone()),
                refund: Some(refund_id),
                ..Change::from(data, msg.caller.actor.clone())
            };
            act.commit(change).map(act, ctx, move |durable, act, _| {
                let durable = durable?;
                let refund = act
                    .current()?
                    .refund(refund_id)
                    .cloned()
                    .ok_or(EngineError::NotFound("refund"))?;
                act.start_refund(&refund, durable.clone(), None);
                Ok(when_durable(durable, refund))
            })
        })
    }
}

impl Handler<GetPayment> for PaymentActor {
    type Result = Reply<Payment>;

    fn handle(&mut self, _: GetPayment, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, |act, _| match act.current() {
            Ok(state) => done(Ok(read_when_durable(
                act.pipeline.tail.clone(),
                Payment::clone(state),
            ))),
            Err(err) => done_then_stop(Err(err)),
        })
    }
}

lifecycle_handlers!(PaymentActor, "payment");
