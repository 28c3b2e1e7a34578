//! The audit events: one enum whose `event_type()` strings are exactly the API's list, plus the
//! envelope that places an event in a stream at a version.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::card::CardSummary;
use super::ids::{ApiKeyId, EventId, IdParseError, InvoiceId, PaymentId, RefundId, TenantId};
use super::invoice::InvoiceDetails;

/// The stream an event belongs to: one per entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamId {
    Invoice(InvoiceId),
    Payment(PaymentId),
    ApiKey(ApiKeyId),
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invoice(id) => id.fmt(f),
            Self::Payment(id) => id.fmt(f),
            Self::ApiKey(id) => id.fmt(f),
        }
    }
}

impl StreamId {
    /// The UUID inside the entity's id.
    pub fn uuid(&self) -> uuid::Uuid {
        match self {
            Self::Invoice(id) => id.uuid(),
            Self::Payment(id) => id.uuid(),
            Self::ApiKey(id) => id.uuid(),
        }
    }

    /// The stream that holds events of `event_type`, around `uuid`: an invoice's events are in
    /// its own stream, a payment's and its refunds' in the payment's, an API key's in the key's.
    pub fn for_event_type(event_type: &str, uuid: uuid::Uuid) -> Option<Self> {
        let (kind, _) = event_type.split_once('.')?;
        match kind {
            "invoice" => Some(Self::Invoice(InvoiceId::from_uuid(uuid))),
            "payment" | "refund" => Some(Self::Payment(PaymentId::from_uuid(uuid))),
            "apikey" => Some(Self::ApiKey(ApiKeyId::from_uuid(uuid))),
            _ => None,
        }
    }
}

impl std::str::FromStr for StreamId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("inv_") {
            s.parse().map(Self::Invoice)
        } else if s.starts_with("pay_") {
            s.parse().map(Self::Payment)
        } else {
            s.parse().map(Self::ApiKey)
        }
    }
}

/// What happened. Serialized as `{"eventType": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", content = "data")]
pub enum EventData {
    #[serde(rename = "invoice.created", rename_all = "camelCase")]
    InvoiceCreated {
        number: String,
        #[serde(flatten)]
        details: Arc<InvoiceDetails>,
    },
    #[serde(rename = "invoice.updated", rename_all = "camelCase")]
    InvoiceUpdated {
        #[serde(flatten)]
        details: Arc<InvoiceDetails>,
    },
    #[serde(rename = "invoice.finalized")]
    InvoiceFinalized {},
    #[serde(rename = "invoice.payment_pending", rename_all = "camelCase")]
    InvoicePaymentPending { payment_id: PaymentId, amount: i64 },
    #[serde(rename = "invoice.paid", rename_all = "camelCase")]
    InvoicePaid { amount_paid: i64 },
    #[serde(rename = "invoice.voided")]
    InvoiceVoided {},
    #[serde(rename = "invoice.marked_uncollectible")]
    InvoiceMarkedUncollectible {},
    #[serde(rename = "payment.attempted", rename_all = "camelCase")]
    PaymentAttempted {
        invoice_id: InvoiceId,
        amount: i64,
        currency: super::Currency,
        /// Shared with the payment it creates, whose every change copies its state.
        payment_method: Arc<CardSummary>,
        /// A gateway token (never a card number): kept so a charge can be re-sent after a crash.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    #[serde(rename = "payment.processing", rename_all = "camelCase")]
    PaymentProcessing { gateway_reference: String },
    #[serde(rename = "payment.succeeded", rename_all = "camelCase")]
    PaymentSucceeded {
        amount: i64,
        gateway_reference: Option<String>,
    },
    #[serde(rename = "payment.failed", rename_all = "camelCase")]
    PaymentFailed {
        amount: i64,
        failure_code: String,
        failure_message: String,
    },
    #[serde(rename = "refund.created", rename_all = "camelCase")]
    RefundCreated {
        refund_id: RefundId,
        amount: i64,
        reason: Option<String>,
    },
    #[serde(rename = "refund.succeeded", rename_all = "camelCase")]
    RefundSucceeded { refund_id: RefundId, amount: i64 },
    #[serde(rename = "refund.failed", rename_all = "camelCase")]
    RefundFailed {
        refund_id: RefundId,
        failure_code: String,
    },
    #[serde(rename = "apikey.created", rename_all = "camelCase")]
    ApiKeyCreated { name: String, role: String },
    #[serde(rename = "apikey.revoked")]
    ApiKeyRevoked {},
}

/// Every event type string, in the API's order.
pub const EVENT_TYPES: [&str; 16] = [
    "invoice.created",
    "invoice.updated",
    "invoice.finalized",
    "invoice.payment_pending",
    "invoice.paid",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "payment.attempted",
    "payment.processing",
    "payment.succeeded",
    "payment.failed",
    "refund.created",
    "refund.succeeded",
    "refund.failed",
    "apikey.created",
    "apikey.revoked",
];

impl EventData {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::InvoiceCreated { .. } => "invoice.created",
            Self::InvoiceUpdated { .. } => "invoice.updated",
            Self::InvoiceFinalized {} => "invoice.finalized",
            Self::InvoicePaymentPending { .. } => "invoice.payment_pending",
            Self::InvoicePaid { .. } => "invoice.paid",
            Self::InvoiceVoided {} => "invoice.voided",
            Self::InvoiceMarkedUncollectible {} => "invoice.marked_uncollectible",
            Self::PaymentAttempted { .. } => "payment.attempted",
            Self::PaymentProcessing { .. } => "payment.processing",
            Self::PaymentSucceeded { .. } => "payment.succeeded",
            Self::PaymentFailed { .. } => "payment.failed",
            Self::RefundCreated { .. } => "refund.created",
            Self::RefundSucceeded { .. } => "refund.succeeded",
            Self::RefundFailed { .. } => "refund.failed",
            Self::ApiKeyCreated { .. } => "apikey.created",
            Self::ApiKeyRevoked {} => "apikey.revoked",
        }
    }

    /// The entity an event is about, for the timeline's `subjectId`: a refund event is about
    /// its refund, everything else about its stream's entity.
    pub fn refund_id(&self) -> Option<RefundId> {
        match self {
            Self::RefundCreated { refund_id, .. }
            | Self::RefundSucceeded { refund_id, .. }
            | Self::RefundFailed { refund_id, .. } => Some(*refund_id),
            _ => None,
        }
    }

    /// The `data` object alone (without the type tag), as stored and returned in timelines.
    /// An event that does not serialize is an error, never a stored or answered `null`.
    pub fn data_json(&self) -> Result<serde_json::Value, String> {
        let tagged = serde_json::to_value(self)
            .map_err(|e| format!("{} does not serialize: {e}", self.event_type()))?;
        match tagged {
            serde_json::Value::Object(mut map) => map
                .remove("data")
                .ok_or_else(|| format!("{} serialized without data", self.event_type())),
            _ => Err(format!("{} serialized to a non-object", self.event_type())),
        }
    }

    /// Rebuilds an event from its type string and `data` object (the inverse of `data_json`).
    pub fn from_parts(
        event_type: &str,
        data: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "eventType": event_type, "data": data }))
    }
}

/// An event placed in its stream: the unit of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub tenant_id: TenantId,
    pub stream: StreamId,
    /// Position in the stream, contiguous from 1.
    pub version: u64,
    /// The invoice whose timeline shows this event.
    pub invoice_id: Option<InvoiceId>,
    /// Who caused it: an API key id, `gateway`, or `system` (the last two held by the program,
    /// not copied into each event).
    pub actor: Cow<'static, str>,
    pub occurred_at: DateTime<Utc>,
    /// The gateway event that caused it, if any (for at-most-once application).
    pub gateway_event_id: Option<String>,
    pub data: EventData,
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        self.data.event_type()
    }

    /// `subjectId` in timelines and the audit log.
    pub fn subject_id(&self) -> String {
        match self.data.refund_id() {
            Some(refund) => refund.to_string(),
            None => self.stream.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event type names the kind of stream its events are in, so a stream id stored
    /// as its bare UUID can be read back whole.
    #[test]
    fn every_event_type_names_its_stream() {
        let invoice = InvoiceId::new();
        let payment = PaymentId::new();
        let key = ApiKeyId::new();
        let events = [
            (StreamId::Invoice(invoice), "invoice.created"),
            (StreamId::Invoice(invoice), "invoice.payment_pending"),
            (StreamId::Invoice(invoice), "invoice.marked_uncollectible"),
            (StreamId::Payment(payment), "payment.succeeded"),
            (StreamId::Payment(payment), "refund.created"),
            (StreamId::ApiKey(key), "apikey.revoked"),
        ];
        for (stream, event_type) in events {
            assert_eq!(
                StreamId::for_event_type(event_type, stream.uuid()),
                Some(stream)
            );
        }
        assert_eq!(
            StreamId::for_event_type("webhook.sent", payment.uuid()),
            None
        );
    }

    #[test]
    fn every_event_type_round_trips_through_its_parts() {
        let samples = vec![
            EventData::InvoiceFinalized {},
            EventData::InvoicePaymentPending {
                payment_id: PaymentId::new(),
                amount: 5,
            },
            EventData::InvoicePaid { amount_paid: 5 },
            EventData::InvoiceVoided {},
            EventData::InvoiceMarkedUncollectible {},
            EventData::PaymentProcessing {
                gateway_reference: "ch_1".into(),
            },
            EventData::PaymentSucceeded {
                amount: 5,
                gateway_reference: None,
            },
            EventData::PaymentFailed {
                amount: 5,
                failure_code: "card_declined".into(),
                failure_message: "declined".into(),
            },
            EventData::RefundCreated {
                refund_id: RefundId::new(),
                amount: 1,
                reason: None,
            },
            EventData::RefundSucceeded {
                refund_id: RefundId::new(),
                amount: 1,
            },
            EventData::RefundFailed {
                refund_id: RefundId::new(),
                failure_code: "x".into(),
            },
            EventData::ApiKeyCreated {
                name: "ci".into(),
                role: "viewer".into(),
            },
            EventData::ApiKeyRevoked {},
        ];
        for sample in samples {
            let ty = sample.event_type();
            assert!(EVENT_TYPES.contains(&ty), "{ty}");
            let back = EventData::from_parts(ty, sample.data_json().unwrap()).unwrap();
            assert_eq!(back, sample);
        }
    }
}
