//! The pure domain: money, ids, invoices, payments, refunds and their events.
//! Every aggregate is `decide(&state, command) -> Result<Vec<EventData>, DomainError>` plus
//! `apply(&mut state, &Event)`. Nothing here does I/O.

pub mod card;
pub mod events;
pub mod ids;
pub mod invoice;
pub mod money;
pub mod payment;

pub use card::{
    fingerprint as card_fingerprint, tenant_fingerprint_key, CardSummary, PaymentMethodInput,
    PaymentSource,
};
pub use events::{Event, EventData, StreamId};
pub use ids::{
    ApiKeyId, AttemptId, EndpointId, EventId, IdMap, IdParseError, IdSet, InvoiceId, PaymentId,
    RefundId, TenantId,
};
pub use invoice::{
    Invoice, InvoiceCommand, InvoiceDetails, InvoiceInput, InvoicePatch, InvoiceStatus, LineItem,
};
pub use money::Currency;
pub use payment::{Disposition, GatewayOutcome, Payment, PaymentStatus, Refund, RefundStatus};

use serde::Serialize;

/// One field-level validation message, as carried in a problem response's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Why a command was refused by a state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("{0}")]
    InvalidState(String),
    #[error("amount {requested} exceeds the remaining {remaining} {currency}")]
    AmountExceedsRemaining {
        requested: i64,
        remaining: i64,
        currency: Currency,
    },
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    RefundExceedsCaptured { requested: i64, refundable: i64 },
}

impl DomainError {
    pub fn validation(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError {
            field: field.to_owned(),
            message: message.to_owned(),
        }])
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::InvalidState(message.into())
    }
}

#[cfg(test)]
mod tests;
