//! Messages between the engine, supervisors and entity actors. Every reply says what can go wrong.

use std::sync::Arc;

use actix::Message;

use super::{Durable, Fence, GatewayTask, Pending};
use crate::domain::{
    CardSummary, GatewayOutcome, Invoice, InvoiceCommand, InvoiceId, InvoiceInput, Payment,
    PaymentId, PaymentSource, Refund, RefundId,
};
use crate::error::EngineError;
use crate::ports::StreamAppend;

/// A value decided and queued; `durable` resolves once its unit is durable.
pub struct Queued<T> {
    pub value: T,
    pub durable: Durable,
}

/// The entity a command's response shows, for rendering the stored idempotent response.
pub enum Rendered<'a> {
    Invoice(&'a Invoice),
    Payment(&'a Payment),
    Refund(&'a Refund),
}

/// Renders a response body exactly as the API would send it.
pub type Renderer = Arc<dyn Fn(Rendered<'_>) -> String + Send + Sync>;

/// An `Idempotency-Key` request: its record is committed in the same unit as its effect.
#[derive(Clone)]
pub struct IdempotencySpec {
    pub key: String,
    pub fingerprint: String,
    /// The status the fresh response carries (e.g. 201).
    pub status: u16,
    pub render: Renderer,
}

impl std::fmt::Debug for IdempotencySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencySpec")
            .field("key", &self.key)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Who asks and under which idempotency key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
    pub idempotency: Option<IdempotencySpec>,
}

/// How one gateway event was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookDisposition {
    Applied,
    Duplicate,
    Ignored,
    Rejected,
}

// ---- invoice actor ----

#[derive(Message)]
#[rtype(result = "Result<Pending<Invoice>, EngineError>")]
pub struct CreateInvoice {
    pub number: u64,
    /// The tenant's numbering fence: the numbers after this one depend on it.
    pub numbering: Fence,
    pub input: InvoiceInput,
    pub finalize: bool,
    pub caller: Caller,
}

#[derive(Message)]
#[rtype(result = "Result<Pending<Invoice>, EngineError>")]
pub struct RunInvoiceCommand {
    pub command: InvoiceCommand,
    pub caller: Caller,
}

/// Reserve money for a new payment and record its `payment.attempted`, atomically.
#[derive(Message)]
#[rtype(result = "Result<Queued<Payment>, EngineError>")]
pub struct ReservePayment {
    pub payment_id: PaymentId,
    /// The payment actor's fence: its memory holds the unit too.
    pub payer: Fence,
    pub amount: Option<i64>,
    pub card: CardSummary,
    pub token: Option<String>,
    pub caller: Caller,
}

/// Commit payment events that move the invoice's money, with the invoice's own reaction.
#[derive(Message)]
#[rtype(result = "Result<Durable, EngineError>")]
pub struct SettlePayment {
    /// The payment actor's fence: its memory holds the unit too.
    pub payer: Fence,
    pub payment: StreamAppend,
    pub snapshot: Arc<Payment>,
}

#[derive(Message)]
#[rtype(result = "Result<Pending<Invoice>, EngineError>")]
pub struct GetInvoice;

// ---- payment actor ----

#[derive(Message)]
#[rtype(result = "Result<Pending<Payment>, EngineError>")]
pub struct AttemptPayment {
    pub invoice_id: InvoiceId,
    pub amount: Option<i64>,
    pub card: CardSummary,
    pub source: PaymentSource,
    pub caller: Caller,
}

#[derive(Message)]
#[rtype(result = "Result<Pending<WebhookDisposition>, EngineError>")]
pub struct ApplyGatewayEvent {
    pub gateway_event_id: String,
    pub outcome: GatewayOutcome,
}

#[derive(Message)]
#[rtype(result = "Result<Pending<Refund>, EngineError>")]
pub struct CreateRefund {
    pub refund_id: RefundId,
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub caller: Caller,
}

/// The gateway accepted the charge: record its reference.
#[derive(Message)]
#[rtype(result = "Result<Pending<()>, EngineError>")]
pub struct ChargeAccepted {
    pub reference: String,
}

/// The charge can never happen: the gateway refused it for good (4xx), or, re-sent without card
/// data, it had never seen it. The payment fails with `processing_error` and its reservation
/// is released.
#[derive(Message)]
#[rtype(result = "Result<Pending<()>, EngineError>")]
pub struct ChargeImpossible {
    /// The failure message recorded on the payment (never the gateway's own words, which
    /// could echo request data).
    pub reason: String,
}

/// The refund can never happen: the gateway refused it for good (4xx). The refund fails with
/// `processing_error`, and its amount is refundable again.
#[derive(Message)]
#[rtype(result = "Result<Pending<()>, EngineError>")]
pub struct RefundImpossible {
    pub refund_id: RefundId,
}

/// Re-send the charge if it is still waiting for the gateway and old enough that its own
/// submission has had its chance (recovery sweep). Answers whether a charge was started.
#[derive(Message)]
#[rtype(result = "Result<bool, EngineError>")]
pub struct ResubmitCharge;

/// A charge that waited in line for a gateway slot, with the slot it was given. Answers whether
/// a charge was started (the slot passes on if not).
#[derive(Message)]
#[rtype(result = "Result<bool, EngineError>")]
pub struct ResumeCharge {
    pub slot: GatewayTask,
}

/// A refund that waited in line for a gateway slot, with the slot it was given. Answers whether
/// the refund was asked for (the slot passes on if not).
#[derive(Message)]
#[rtype(result = "Result<bool, EngineError>")]
pub struct ResumeRefund {
    pub refund_id: RefundId,
    pub slot: GatewayTask,
}

/// Asks the gateway again for a refund still pending once it is old enough (recovery sweep).
/// Answers whether the refund was asked for.
#[derive(Message)]
#[rtype(result = "Result<bool, EngineError>")]
pub struct ResubmitRefund {
    pub refund_id: RefundId,
}

#[derive(Message)]
#[rtype(result = "Result<Pending<Payment>, EngineError>")]
pub struct GetPayment;

// ---- both ----

/// Stop when idle; the next message starts a fresh actor from storage.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Passivate;

/// Fault injection for tests: the actor panics while handling it.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct InjectPanic;
