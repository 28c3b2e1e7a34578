//! The invoice actor owns one invoice's state and is the only writer of its stream. Payments
//! call it (never the other way round) to reserve, settle and release money; a change touching
//! both streams is committed by this actor as one unit.

use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::messages::{
    CreateInvoice, GetInvoice, Rendered, ReservePayment, RunInvoiceCommand, SettlePayment,
};
use super::{idempotency_record, lifecycle_handlers, reply, reply_then_stop, Deps, EventBuilder};
use crate::domain::{
    Event, EventData, Invoice, InvoiceCommand, InvoiceId, Payment, PaymentId, StreamId, TenantId,
};
use crate::error::EngineError;
use crate::ports::{Snapshot, StreamAppend, Unit};

type Reply<T> = super::Reply<InvoiceActor, T>;

pub struct InvoiceActor {
    tenant: TenantId,
    id: InvoiceId,
    deps: Deps,
    state: Option<Invoice>,
    /// A brand-new invoice has nothing to load.
    fresh: bool,
    load_error: Option<EngineError>,
}

impl InvoiceActor {
    pub fn new(tenant: TenantId, id: InvoiceId, deps: Deps, fresh: bool) -> Self {
        Self {
            tenant,
            id,
            deps,
            state: None,
            fresh,
            load_error: None,
        }
    }

    fn events(&self, caller: &str, version: u64, data: Vec<EventData>) -> Vec<Event> {
        EventBuilder {
            tenant_id: self.tenant,
            stream: StreamId::Invoice(self.id),
            invoice_id: Some(self.id),
            actor: caller.to_owned(),
            at: self.deps.clock.now(),
            gateway_event_id: None,
        }
        .build(version, data)
    }

    fn current(&self) -> Result<&Invoice, EngineError> {
        if let Some(err) = &self.load_error {
            return Err(err.clone());
        }
        self.state.as_ref().ok_or(EngineError::NotFound("invoice"))
    }

    /// Commits `unit`; on success `next` becomes the state. Any storage failure stops the actor
    /// so the next message starts from what is durable.
    fn commit<T: 'static>(&mut self, unit: Unit, next: Invoice, reply: T) -> Reply<T> {
        let audit = self.deps.audit.clone();
        let fut = async move { audit.commit(unit).await };
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(
            move |result, act, ctx| match result {
                Ok(()) => {
                    act.state = Some(next);
                    Ok(reply)
                }
                Err(err) => {
                    if err != EngineError::Overloaded {
                        ctx.stop();
                    }
                    Err(err)
                }
            },
        )))
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
        if self.fresh {
            return;
        }
        let store = self.deps.store.clone();
        let (tenant, id) = (self.tenant, self.id);
        let load = async move { store.load_invoice(tenant, id).await };
        ctx.wait(load.into_actor(self).map(|result, act, _| match result {
            Ok(Some(loaded)) => {
                let mut state = loaded.snapshot;
                for event in &loaded.trailing {
                    state.apply(event);
                }
                act.state = Some(state);
            }
            Ok(None) => {}
            Err(err) => act.load_error = Some(err.into()),
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.deps
            .metrics
            .active_invoice_actors
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handler<CreateInvoice> for InvoiceActor {
    type Result = Reply<Invoice>;

    fn handle(&mut self, msg: CreateInvoice, _: &mut Self::Context) -> Self::Result {
        if self.state.is_some() {
            return reply(Err(EngineError::Domain(
                crate::domain::DomainError::invalid_state("invoice already exists"),
            )));
        }
        let data = match Invoice::decide_create(msg.number, &msg.input, msg.finalize) {
            Ok(data) => data,
            Err(err) => return reply(Err(err.into())),
        };
        let events = self.events(&msg.caller.actor, 0, data);
        let at = self.deps.clock.now();
        let mut next = Invoice::blank(self.tenant, self.id, at);
        events.iter().for_each(|e| next.apply(e));
        let mut unit = Unit::new(self.tenant);
        unit.idempotency = idempotency_record(&msg.caller, Rendered::Invoice(&next), at);
        unit.streams.push(StreamAppend {
            stream: StreamId::Invoice(self.id),
            expected_version: 0,
            events,
        });
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(next.clone())));
        self.commit(unit, next.clone(), next)
    }
}

impl Handler<RunInvoiceCommand> for InvoiceActor {
    type Result = Reply<Invoice>;

    fn handle(&mut self, msg: RunInvoiceCommand, _: &mut Self::Context) -> Self::Result {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return reply(Err(err)),
        };
        let data = match state.decide(&msg.command) {
            Ok(data) => data,
            Err(err) => return reply(Err(err.into())),
        };
        let events = self.events(&msg.caller.actor, state.version, data);
        let mut next = state.clone();
        events.iter().for_each(|e| next.apply(e));
        let mut unit = Unit::new(self.tenant);
        unit.idempotency =
            idempotency_record(&msg.caller, Rendered::Invoice(&next), self.deps.clock.now());
        unit.streams.push(StreamAppend {
            stream: StreamId::Invoice(self.id),
            expected_version: state.version,
            events,
        });
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(next.clone())));
        self.commit(unit, next.clone(), next)
    }
}

impl Handler<ReservePayment> for InvoiceActor {
    type Result = Reply<Payment>;

    fn handle(&mut self, msg: ReservePayment, _: &mut Self::Context) -> Self::Result {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return reply(Err(err)),
        };
        let command = InvoiceCommand::Reserve {
            payment_id: msg.payment_id,
            amount: msg.amount,
        };
        let data = match state.decide(&command) {
            Ok(data) => data,
            Err(err) => return reply(Err(err.into())),
        };
        let amount = reserved_amount(&data, msg.payment_id);
        let at = self.deps.clock.now();
        let invoice_events = self.events(&msg.caller.actor, state.version, data);
        let payment_events = EventBuilder {
            tenant_id: self.tenant,
            stream: StreamId::Payment(msg.payment_id),
            invoice_id: Some(self.id),
            actor: msg.caller.actor.clone(),
            at,
            gateway_event_id: None,
        }
        .build(
            0,
            vec![EventData::PaymentAttempted {
                invoice_id: self.id,
                amount,
                currency: state.details.currency,
                payment_method: msg.card,
                token: msg.token,
            }],
        );
        let mut next = state.clone();
        invoice_events.iter().for_each(|e| next.apply(e));
        let mut payment = Payment::blank(self.tenant, msg.payment_id, at);
        payment_events.iter().for_each(|e| payment.apply(e));
        let mut unit = Unit::new(self.tenant);
        unit.idempotency = idempotency_record(&msg.caller, Rendered::Payment(&payment), at);
        unit.streams.push(StreamAppend {
            stream: StreamId::Invoice(self.id),
            expected_version: state.version,
            events: invoice_events,
        });
        unit.streams.push(StreamAppend {
            stream: StreamId::Payment(msg.payment_id),
            expected_version: 0,
            events: payment_events,
        });
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(next.clone())));
        unit.snapshots
            .push(Snapshot::Payment(Box::new(payment.clone())));
        self.commit(unit, next, payment)
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
    type Result = Reply<Invoice>;

    fn handle(&mut self, msg: SettlePayment, _: &mut Self::Context) -> Self::Result {
        let state = match self.current() {
            Ok(state) => state,
            Err(err) => return reply(Err(err)),
        };
        let mut next = state.clone();
        let mut reactions = Vec::new();
        for event in &msg.payment.events {
            reactions.extend(next.decide_payment_effect(&event.data));
            next.apply(event);
        }
        let invoice_events = self.events(super::GATEWAY_ACTOR, state.version, reactions);
        invoice_events.iter().for_each(|e| next.apply(e));
        let mut unit = Unit::new(self.tenant);
        // The invoice stream is version-checked even when it gains no event: a stale copy of
        // this actor elsewhere must not settle money on an outdated snapshot.
        unit.streams.push(msg.payment);
        unit.streams.push(StreamAppend {
            stream: StreamId::Invoice(self.id),
            expected_version: state.version,
            events: invoice_events,
        });
        unit.snapshots
            .push(Snapshot::Payment(Box::new(msg.snapshot)));
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(next.clone())));
        unit.dedup_keys = msg.dedup_keys;
        self.commit(unit, next.clone(), next)
    }
}

impl Handler<GetInvoice> for InvoiceActor {
    type Result = Reply<Invoice>;

    fn handle(&mut self, _: GetInvoice, _: &mut Self::Context) -> Self::Result {
        let result = self.current().cloned();
        if result.is_err() {
            return reply_then_stop(result);
        }
        reply(result)
    }
}

lifecycle_handlers!(InvoiceActor, "invoice");
