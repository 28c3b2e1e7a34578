//! What the gateway answered a charge or refund call (accepted, or refused for good), and the
//! recovery sweep's requests to send a charge or refund again, and the calls that waited in
//! line for a gateway slot: the payment's handlers for its post-commit gateway calls.

use actix::prelude::*;

use super::{PaymentActor, Reply, Step};
use crate::actors::messages::{
    ChargeAccepted, ChargeImpossible, RefundImpossible, ResubmitCharge, ResubmitRefund,
    ResumeCharge, ResumeRefund,
};
use crate::actors::{
    done, done_then_stop, on_fresh_state, GatewayTask, GATEWAY_ACTOR, SYSTEM_ACTOR,
};
use crate::domain::{GatewayOutcome, RefundId, RefundStatus};

impl Handler<ChargeAccepted> for PaymentActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: ChargeAccepted, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| {
            let outcome = GatewayOutcome::Processing {
                reference: msg.reference,
            };
            act.apply_outcome(outcome, GATEWAY_ACTOR)
        })
    }
}

impl Handler<ChargeImpossible> for PaymentActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: ChargeImpossible, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| {
            let outcome = GatewayOutcome::Failed {
                code: "processing_error".into(),
                message: msg.reason,
                amount: None,
                currency: None,
            };
            act.apply_outcome(outcome, SYSTEM_ACTOR)
        })
    }
}

impl Handler<RefundImpossible> for PaymentActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: RefundImpossible, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| {
            let outcome = GatewayOutcome::RefundFailed {
                refund_id: msg.refund_id,
                code: "processing_error".into(),
            };
            act.apply_outcome(outcome, SYSTEM_ACTOR)
        })
    }
}

impl Handler<ResubmitCharge> for PaymentActor {
    type Result = crate::actors::Reply<Self, bool>;

    fn handle(&mut self, _: ResubmitCharge, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, |act, _| {
            let created_at = match act.current() {
                Ok(payment) => payment.created_at,
                Err(err) => return done_then_stop(Err(err)),
            };
            let min_age = chrono::Duration::from_std(act.deps.config.recovery_min_age)
                .unwrap_or(chrono::Duration::zero());
            if act.deps.clock.now() - created_at < min_age {
                return done(Ok(false));
            }
            let after = act.pipeline.tail.clone();
            done(Ok(act.start_charge(after)))
        })
    }
}

impl Handler<ResubmitRefund> for PaymentActor {
    type Result = crate::actors::Reply<Self, bool>;

    fn handle(&mut self, msg: ResubmitRefund, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| {
            let min_age = chrono::Duration::from_std(act.deps.config.recovery_min_age)
                .unwrap_or(chrono::Duration::zero());
            act.ask_for_refund(msg.refund_id, min_age, None)
        })
    }
}

impl Handler<ResumeCharge> for PaymentActor {
    type Result = crate::actors::Reply<Self, bool>;

    fn handle(&mut self, msg: ResumeCharge, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, |act, _| {
            let after = act.pipeline.tail.clone();
            done(Ok(act.charge(after, Some(msg.slot))))
        })
    }
}

impl Handler<ResumeRefund> for PaymentActor {
    type Result = crate::actors::Reply<Self, bool>;

    fn handle(&mut self, msg: ResumeRefund, ctx: &mut Self::Context) -> Self::Result {
        on_fresh_state(self, ctx, move |act, _| {
            act.ask_for_refund(msg.refund_id, chrono::Duration::zero(), Some(msg.slot))
        })
    }
}

impl PaymentActor {
    /// Asks the gateway for `refund_id` if it is still pending and at least `min_age` old, in
    /// `slot` if it was given one; answers whether it was asked for.
    fn ask_for_refund(
        &mut self,
        refund_id: RefundId,
        min_age: chrono::Duration,
        slot: Option<GatewayTask>,
    ) -> Step<bool> {
        let payment = match self.current() {
            Ok(payment) => payment,
            Err(err) => return done_then_stop(Err(err)),
        };
        let now = self.deps.clock.now();
        let refund = payment.refunds.iter().find(|r| {
            r.id == refund_id && r.status == RefundStatus::Pending && now - r.created_at >= min_age
        });
        match refund.cloned() {
            Some(refund) => {
                self.start_refund(&refund, self.pipeline.tail.clone(), slot);
                done(Ok(true))
            }
            None => done(Ok(false)),
        }
    }
}
