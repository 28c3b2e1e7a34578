//! Messages addressed to one entity (or to several payments at once), which the supervisor
//! forwards to the entity's actor, starting it if needed, and the books it keeps on them.

use std::future::Future;
use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::{Booking, EntityKey, TenantSupervisor};
use crate::actors::invoice::InvoiceActor;
use crate::actors::payment::PaymentActor;
use crate::domain::{IdMap, InvoiceId, PaymentId};
use crate::error::EngineError;

/// An envelope addressed to one entity: the supervisor starts its actor if needed and forwards.
macro_rules! envelope {
    ($(#[$doc:meta])* $name:ident, $id:ty) => {
        $(#[$doc])*
        pub struct $name<M> {
            pub id: $id,
            pub msg: M,
        }

        impl<M, T> Message for $name<M>
        where
            M: Message<Result = Result<T, EngineError>>,
            T: 'static,
        {
            type Result = Result<T, EngineError>;
        }
    };
}

envelope!(
    /// Deliver `msg` to invoice `id`, starting its actor if needed.
    ToInvoice,
    InvoiceId
);
envelope!(
    /// Deliver `msg` to payment `id`, starting its actor (from storage) if needed.
    ToPayment,
    PaymentId
);

/// Deliver each message to its payment, each payment's in the order given, in one message to
/// the supervisor: a webhook request's events cross to the supervisor's thread once, not once
/// each, and come back as one answer. Each answer is in the position of its message.
pub struct ToPayments<M> {
    pub msgs: Vec<(PaymentId, M)>,
}

impl<M, T> Message for ToPayments<M>
where
    M: Message<Result = Result<T, EngineError>>,
    T: 'static,
{
    type Result = Vec<Result<T, EngineError>>;
}

envelope!(
    /// Deliver `msg` to a brand-new payment, whose actor has nothing to load.
    ToNewPayment,
    PaymentId
);

impl TenantSupervisor {
    /// Answers with what the actor answers to a message `sent` on `booking`.
    fn forward<T: 'static>(
        &mut self,
        booking: Booking,
        sent: impl Future<Output = Result<Result<T, EngineError>, MailboxError>> + 'static,
    ) -> ResponseActFuture<Self, Result<T, EngineError>> {
        Box::pin(
            sent.into_actor(self)
                .map(move |result, act, _| act.delivered(booking, result)),
        )
    }

    /// Books the answer of a message forwarded on `booking`.
    fn delivered<T>(
        &mut self,
        booking: Booking,
        result: Result<Result<T, EngineError>, MailboxError>,
    ) -> Result<T, EngineError> {
        self.finished(booking);
        if let Err(MailboxError::Closed) = result {
            // The actor died (panic) or stopped mid-request; the next message restarts it.
            self.deps
                .metrics
                .actor_restarts
                .fetch_add(1, Ordering::Relaxed);
        }
        result?
    }
}

impl<M, T> Handler<ToInvoice<M>> for TenantSupervisor
where
    M: Message<Result = Result<T, EngineError>> + Send + 'static,
    T: Send + 'static,
    InvoiceActor: Handler<M>,
{
    type Result = ResponseActFuture<Self, Result<T, EngineError>>;

    fn handle(&mut self, msg: ToInvoice<M>, _: &mut Self::Context) -> Self::Result {
        let (sent, booking) = self.invoice(msg.id, false, |addr| addr.send(msg.msg));
        self.forward(booking, sent)
    }
}

impl<M, T> Handler<ToPayment<M>> for TenantSupervisor
where
    M: Message<Result = Result<T, EngineError>> + Send + 'static,
    T: Send + 'static,
    PaymentActor: Handler<M>,
{
    type Result = ResponseActFuture<Self, Result<T, EngineError>>;

    fn handle(&mut self, msg: ToPayment<M>, ctx: &mut Self::Context) -> Self::Result {
        let fresh = false;
        let (sent, booking) = self.payment(msg.id, fresh, ctx, |addr| addr.send(msg.msg));
        self.forward(booking, sent)
    }
}

impl<M, T> Handler<ToPayments<M>> for TenantSupervisor
where
    M: Message<Result = Result<T, EngineError>> + Send + 'static,
    T: Send + 'static,
    PaymentActor: Handler<M>,
{
    type Result = ResponseActFuture<Self, Vec<Result<T, EngineError>>>;

    /// Each payment's first message goes into its actor's mailbox at once, and each later one
    /// once the one before it is answered, through this supervisor again: an actor that stops
    /// after a message (its payment not found, or not loadable) drops what is queued behind it,
    /// and the next message then starts a new one.
    fn handle(&mut self, mut batch: ToPayments<M>, ctx: &mut Self::Context) -> Self::Result {
        if batch.msgs.len() == 1 {
            // A single webhook event: forwarded as it stands, no runs to order.
            if let Some((id, msg)) = batch.msgs.pop() {
                let (sent, booking) = self.payment(id, false, ctx, |addr| addr.send(msg));
                // Not through `forward`: its answer is boxed already, and this one would be
                // boxed again.
                return Box::pin(
                    sent.into_actor(self)
                        .map(move |result, act, _| vec![act.delivered(booking, result)]),
                );
            }
        }
        self.warm(batch.msgs.iter().map(|(id, _)| id));
        // Per payment: its first message (sent now) and the later ones, with their positions.
        let count = batch.msgs.len();
        let mut runs = Vec::with_capacity(count);
        let mut later: Vec<Vec<(usize, M)>> = Vec::with_capacity(count);
        let mut index: IdMap<PaymentId, usize> = IdMap::default();
        index.reserve(count);
        for (at, (id, msg)) in batch.msgs.into_iter().enumerate() {
            match index.get(&id) {
                Some(&run) => later[run].push((at, msg)),
                None => {
                    index.insert(id, runs.len());
                    let (sent, booking) = self.payment(id, false, ctx, |addr| addr.send(msg));
                    runs.push((booking, id, at, sent));
                    later.push(Vec::new());
                }
            }
        }
        // Only a payment with more than one message needs this supervisor again.
        let me = later
            .iter()
            .any(|msgs| !msgs.is_empty())
            .then(|| ctx.address());
        // Awaited one after the other: every first message is in its actor's mailbox already,
        // and its answer waits in its reply channel until its turn.
        let answered = async move {
            let mut answered = Vec::with_capacity(runs.len());
            for ((booking, id, first_at, sent), msgs) in runs.into_iter().zip(later) {
                let first = sent.await;
                let mut later = Vec::new();
                if let Some(me) = &me {
                    for (at, msg) in msgs {
                        let answer = match me.send(ToPayment { id, msg }).await {
                            Ok(answer) => answer,
                            Err(e) => Err(e.into()),
                        };
                        later.push((at, answer));
                    }
                }
                answered.push((booking, (first_at, first), later));
            }
            answered
        };
        Box::pin(answered.into_actor(self).map(move |runs, act, _| {
            act.warm(runs.iter().filter_map(|(booking, ..)| match &booking.key {
                EntityKey::Payment(id) => Some(id),
                EntityKey::Invoice(_) => None,
            }));
            let mut answers = Vec::with_capacity(count);
            for (booking, (first_at, first), later) in runs {
                answers.push((first_at, act.delivered(booking, first)));
                answers.extend(later);
            }
            answers.sort_by_key(|(at, _)| *at);
            answers.into_iter().map(|(_, answer)| answer).collect()
        }))
    }
}

impl<M, T> Handler<ToNewPayment<M>> for TenantSupervisor
where
    M: Message<Result = Result<T, EngineError>> + Send + 'static,
    T: Send + 'static,
    PaymentActor: Handler<M>,
{
    type Result = ResponseActFuture<Self, Result<T, EngineError>>;

    fn handle(&mut self, msg: ToNewPayment<M>, ctx: &mut Self::Context) -> Self::Result {
        let (sent, booking) = self.payment(msg.id, true, ctx, |addr| addr.send(msg.msg));
        self.forward(booking, sent)
    }
}
