//! The invoice actor owns one invoice's state and is the only writer of its stream. Payments
//! call it (never the other way round) to reserve, settle and release money; a change touching
//! both streams is committed by this actor as one unit.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use futures::future::{BoxFuture, FutureExt};

use super::messages::{
    CreateInvoice, GetInvoice, Queued, Rendered, ReservePayment, RunInvoiceCommand, SettlePayment,
};
use super::{
    done, done_then_stop, idempotency_record, lifecycle_handlers, load_on_start, on_fresh_state,
    read_when_durable, when_durable, Deps, Durable, EventBuilder, Fence, Fences, Pending, Pipeline,
    Pipelined, Slot,
};
use crate::domain::{
    EventData, Invoice, InvoiceCommand, InvoiceId, Payment, PaymentId, StreamId, TenantId,
};
use crate::error::EngineError;
use crate::ports::{Loaded, Snapshot, StoreError, StreamAppend, Unit};

type Reply<T> = super::Reply<InvoiceActor, Pending<T>>;
type Step<T> = super::Step<InvoiceActor, Pending<T>>;

pub struct InvoiceActor {
    tenant: TenantId,
    id: InvoiceId,
    deps: Deps,
    /// Every queued unit applied, durable or not yet.
    state: Option<Invoice>,
    /// A brand-new invoice has nothing to load.
    fresh: bool,
    pipeline: Pipeline,
}

impl InvoiceActor {
    pub fn new(tenant: TenantId, id: InvoiceId, deps: Deps, fresh: bool) -> Self {
        Self {
            tenant,
            id,
            deps,
            state: None,
            fresh,
            pipeline: Pipeline::new(),
        }
    }

    fn builder(&self, caller: impl Into<Cow<'static, str>>) -> EventBuilder {
        EventBuilder {
            tenant_id: self.tenant,
            stream: StreamId::Invoice(self.id),
            invoice_id: Some(self.id),
            actor: caller.into(),
            at: self.deps.clock.now(),
            gateway_event_id: None,
        }
    }

    fn current(&self) -> Result<&Invoice, EngineError> {
        self.pipeline.loaded()?;
        self.state.as_ref().ok_or(EngineError::NotFound("invoice"))
    }

    /// The fences of a unit: this actor's, and whatever else depends on the unit (the payment
    /// actor whose memory holds it too, or the tenant's invoice numbering).
    fn fences(&self, also: Option<Fence>) -> Fences {
        Fences::of(self.pipeline.fence.clone(), also)
    }

    /// Room for the unit that will record a change, then the state to change in place: memory
    /// moves on only once its unit is sure to be queued, and nothing is copied.
    fn open_change(&mut self) -> Result<(Slot<'_>, &mut Invoice), EngineError> {
        let slot = self.deps.audit.reserve(self.tenant)?;
        let state = self
            .state
            .as_mut()
            .ok_or(EngineError::NotFound("invoice"))?;
        Ok((slot, state))
    }
}

impl Pipelined for InvoiceActor {
    type Loaded = Option<Loaded<Invoice>>;

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
        async move { store.load_invoice(tenant, id).await }.boxed()
    }

    fn install(&mut self, loaded: Option<Self::Loaded>) {
        self.state = loaded.flatten().map(|l| l.replay(Invoice::apply));
    }
}

impl Actor for InvoiceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.deps.config.entity_mailbox_capacity);
        self.deps
            .metrics
            .active_invoice_actors
            .fetch_add(1, Ordering::Relaxed);
        if !self.fresh {
            load_on_start(self, ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.deps
            .metrics
            .active_invoice_actors
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl InvoiceActor {
    fn create(&mut self, msg: CreateInvoice) -> Result<Pending<Invoice>, EngineError> {
        if self.state.is_some() {
            return Err(EngineError::Domain(
                crate::domain::DomainError::invalid_state("invoice already exists"),
            ));
        }
        let data = Invoice::decide_create(msg.number, &msg.input, msg.finalize)?;
        let builder = self.builder(msg.caller.actor.clone());
        let fences = self.fences(Some(msg.numbering));
        let slot = self.deps.audit.reserve(self.tenant)?;
        let at = builder.at;
        let events = builder.build(0, data);
        let mut invoice = Invoice::blank(self.tenant, self.id, at);
        events.iter().for_each(|e| invoice.apply(e));
        let mut unit = Unit::new(self.tenant);
        unit.idempotency = idempotency_record(&msg.caller, Rendered::Invoice(&invoice), at);
        unit.streams.push(StreamAppend {
            stream: StreamId::Invoice(self.id),
            expected_version: 0,
            events,
        });
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(invoice.snapshot())));
        let durable = slot.submit(unit, fences);
        let answer = when_durable(durable.clone(), invoice.snapshot());
        self.state = Some(invoice);
        self.pipeline.tail = durable;
        Ok(answer)
    }

    fn run_command(&mut self, msg: RunInvoiceCommand) -> Result<Pending<Invoice>, EngineError> {
        let current = self.current()?;
        if let InvoiceCommand::Patch(patch) = &msg.command {
            if patch.expected_version.is_some_and(|v| v != current.version) {
                return Err(EngineError::VersionConflict);
            }
        }
        let data = current.decide(&msg.command)?;
        let builder = self.builder(msg.caller.actor.clone());
        let fences = self.fences(None);
        let tenant = self.tenant;
        let (slot, state) = self.open_change()?;
        let expected_version = state.version;
        let (at, stream) = (builder.at, builder.stream);
        let events = builder.build(expected_version, data);
        events.iter().for_each(|e| state.apply(e));
        let mut unit = Unit::new(tenant);
        unit.idempotency = idempotency_record(&msg.caller, Rendered::Invoice(state), at);
        unit.streams.push(StreamAppend {
            stream,
            expected_version,
            events,
        });
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(state.snapshot())));
        let answer = state.clone();
        let durable = slot.submit(unit, fences);
        self.pipeline.tail = durable.clone();
        Ok(when_durable(durable, answer))
    }

    /// Reserves the amount and records the new payment's `payment.attempted`, in one unit.
    fn reserve(&mut self, msg: ReservePayment) -> Result<Queued<Payment>, EngineError> {
        let command = InvoiceCommand::Reserve {
            payment_id: msg.payment_id,
            amount: msg.amount,
        };
        let data = self.current()?.decide(&command)?;
        let amount = reserved_amount(&data, msg.payment_id);
        let builder = self.builder(msg.caller.actor.clone());
        let at = builder.at;
        let fences = self.fences(Some(msg.payer));
        let (tenant, id) = (self.tenant, self.id);
        let (slot, state) = self.open_change()?;
        let payment_events = EventBuilder {
            stream: StreamId::Payment(msg.payment_id),
            ..builder.clone()
        }
        .build(
            0,
            vec![EventData::PaymentAttempted {
                invoice_id: id,
                amount,
                currency: state.details.currency,
                payment_method: Arc::new(msg.card),
                token: msg.token,
            }],
        );
        let expected_version = state.version;
        let invoice_events = builder.build(expected_version, data);
        invoice_events.iter().for_each(|e| state.apply(e));
        let mut payment = Payment::blank(tenant, msg.payment_id, at);
        payment_events.iter().for_each(|e| payment.apply(e));
        let mut unit = Unit::new(tenant);
        unit.idempotency = idempotency_record(&msg.caller, Rendered::Payment(&payment), at);
        unit.streams.push(StreamAppend {
            stream: StreamId::Invoice(id),
            expected_version,
            events: invoice_events,
        });
        unit.streams.push(StreamAppend {
            stream: StreamId::Payment(msg.payment_id),
            expected_version: 0,
            events: payment_events,
        });
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(state.snapshot())));
        unit.snapshots
            .push(Snapshot::Payment(Arc::new(payment.clone())));
        let durable = slot.submit(unit, fences);
        self.pipeline.tail = durable.clone();
        Ok(Queued {
            value: payment,
            durable,
        })
    }

    /// Commits payment events that move money together with the invoice's reaction.
    fn settle(&mut self, msg: SettlePayment) -> Result<Durable, EngineError> {
        self.current()?;
        let builder = self.builder(super::GATEWAY_ACTOR);
        let fences = self.fences(Some(msg.payer));
        let tenant = self.tenant;
        let (slot, state) = self.open_change()?;
        let expected_version = state.version;
        let mut reactions = Vec::new();
        for event in &msg.payment.events {
            reactions.extend(state.decide_payment_effect(&event.data));
            state.apply(event);
        }
        let stream = builder.stream;
        let invoice_events = builder.build(expected_version, reactions);
        invoice_events.iter().for_each(|e| state.apply(e));
        let mut unit = Unit::new(tenant);
        // The invoice stream is version-checked even when it gains no event: a stale copy of
        // this actor elsewhere must not settle money on an outdated snapshot.
        unit.streams.push(msg.payment);
        unit.streams.push(StreamAppend {
            stream,
            expected_version,
            events: invoice_events,
        });
        unit.snapshots.push(Snapshot::Payment(msg.snapshot));
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(state.snapshot())));
        let durable = slot.submit(unit, fences);
        self.pipeline.tail = durable.clone();
        Ok(durable)
    }
}

impl Handler<CreateInvoice> for InvoiceActor {
    type Result = Reply<Invoice>;

    fn handle(&mut self, msg: CreateInvoice, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| done(act.create(msg)))
    }
}

impl Handler<RunInvoiceCommand> for InvoiceActor {
    type Result = Reply<Invoice>;

    fn handle(&mut self, msg: RunInvoiceCommand, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| done(act.run_command(msg)))
    }
}

impl Handler<ReservePayment> for InvoiceActor {
    type Result = super::Reply<Self, Queued<Payment>>;

    fn handle(&mut self, msg: ReservePayment, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| done(act.reserve(msg)))
    }
}

fn reserved_amount(data: &[EventData], payment: PaymentId) -> i64 {
    data.iter()
        .find_map(|d| match d {
            EventData::InvoicePaymentPending { payment_id, amount } if *payment_id == payment => {
                Some(*amount)
            }
            _ => None,
        })
        .unwrap_or(0)
}

impl Handler<SettlePayment> for InvoiceActor {
    type Result = super::Reply<Self, Durable>;

    fn handle(&mut self, msg: SettlePayment, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| done(act.settle(msg)))
    }
}

impl Handler<GetInvoice> for InvoiceActor {
    type Result = Reply<Invoice>;

    fn handle(&mut self, _: GetInvoice, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, |act, _| -> Step<Invoice> {
            match act.current() {
                Ok(state) => done(Ok(read_when_durable(
                    act.pipeline.tail.clone(),
                    state.clone(),
                ))),
                Err(err) => done_then_stop(Err(err)),
            }
        })
    }
}

lifecycle_handlers!(InvoiceActor, "invoice");
