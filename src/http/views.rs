//! The JSON shapes of docs/api.md, rendered from domain state. Field names are the contract.

use chrono::{DateTime, SecondsFormat, Utc};
use payrail_actors::domain::{Event, Invoice, LineItem, Payment, Refund};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::errors::ApiError;
use super::schemas::{CardSummarySchema, LineItemSchema};
use crate::store::StoredEvent;

/// RFC 3339, UTC, milliseconds: `2026-11-23T07:00:00.123Z`.
pub fn ts(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ts_opt(at: &Option<DateTime<Utc>>) -> Option<String> {
    at.as_ref().map(ts)
}

/// An invoice. Money is in the currency's minor unit.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Invoice)]
pub struct InvoiceView<'a> {
    #[schema(example = "inv_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    id: String,
    /// Per tenant and gap-free.
    #[schema(example = "INV-000042")]
    number: &'a str,
    #[schema(value_type = InvoiceStatus)]
    status: &'static str,
    customer_name: &'a str,
    #[schema(value_type = Option<String>)]
    customer_email: &'a Option<String>,
    /// ISO 4217, upper case.
    #[schema(example = "USD")]
    currency: &'a str,
    #[schema(value_type = Vec<LineItemSchema>)]
    line_items: &'a [LineItem],
    subtotal: i64,
    /// Tax rate in basis points (1000 = 10 %).
    tax_rate_bps: i64,
    /// `round_half_even(subtotal × taxRateBps / 10000)`.
    tax: i64,
    total: i64,
    amount_paid: i64,
    amount_pending: i64,
    /// `total − amountPaid − amountPending`.
    amount_remaining: i64,
    amount_refunded: i64,
    #[schema(format = Date, example = "2026-12-01")]
    due_date: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    finalized_at: Option<String>,
    #[schema(format = DateTime)]
    paid_at: Option<String>,
    #[schema(format = DateTime)]
    voided_at: Option<String>,
    version: u64,
    #[schema(value_type = Object)]
    metadata: &'a serde_json::Map<String, Value>,
}

/// Invoice states: `draft → open → paid`; `open → void`; `open → uncollectible → paid | void`.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
}

/// Payment states: `processing → succeeded | failed`; `succeeded → partially_refunded → refunded`.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Processing,
    Succeeded,
    Failed,
    PartiallyRefunded,
    Refunded,
}

/// Refund states: `pending → succeeded | failed`.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

pub fn invoice(i: &Invoice) -> InvoiceView<'_> {
    InvoiceView {
        id: i.id.to_string(),
        number: &i.number,
        status: i.status.as_str(),
        customer_name: &i.details.customer_name,
        customer_email: &i.details.customer_email,
        currency: i.details.currency.as_str(),
        line_items: &i.details.line_items,
        subtotal: i.details.subtotal,
        tax_rate_bps: i.details.tax_rate_bps,
        tax: i.details.tax,
        total: i.details.total,
        amount_paid: i.amount_paid,
        amount_pending: i.amount_pending,
        amount_remaining: i.amount_remaining(),
        amount_refunded: i.amount_refunded,
        due_date: i.details.due_date.map(|d| d.to_string()),
        created_at: ts(&i.created_at),
        finalized_at: ts_opt(&i.finalized_at),
        paid_at: ts_opt(&i.paid_at),
        voided_at: ts_opt(&i.voided_at),
        version: i.version,
        metadata: &i.details.metadata,
    }
}

/// A payment of (part of) an invoice. The card number is never stored.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Payment)]
pub struct PaymentView<'a> {
    #[schema(example = "pay_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    id: String,
    invoice_id: String,
    amount: i64,
    currency: &'a str,
    #[schema(value_type = PaymentStatus)]
    status: &'static str,
    amount_refunded: i64,
    #[schema(value_type = CardSummarySchema)]
    payment_method: &'a payrail_actors::domain::CardSummary,
    #[schema(value_type = Option<String>)]
    gateway_reference: &'a Option<String>,
    #[schema(value_type = Option<String>)]
    failure_code: &'a Option<String>,
    #[schema(value_type = Option<String>)]
    failure_message: &'a Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    version: u64,
}

pub fn payment(p: &Payment) -> PaymentView<'_> {
    PaymentView {
        id: p.id.to_string(),
        invoice_id: p.invoice_id.to_string(),
        amount: p.amount,
        currency: p.currency.as_str(),
        status: p.status.as_str(),
        amount_refunded: p.amount_refunded,
        payment_method: &p.payment_method,
        gateway_reference: &p.gateway_reference,
        failure_code: &p.failure_code,
        failure_message: &p.failure_message,
        created_at: ts(&p.created_at),
        updated_at: ts(&p.updated_at),
        version: p.version,
    }
}

/// A refund of (part of) a captured payment; its outcome arrives by webhook.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Refund)]
pub struct RefundView<'a> {
    #[schema(example = "re_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    id: String,
    payment_id: String,
    invoice_id: String,
    amount: i64,
    currency: &'a str,
    #[schema(value_type = RefundStatus)]
    status: &'static str,
    #[schema(value_type = Option<String>)]
    reason: &'a Option<String>,
    #[schema(value_type = Option<String>)]
    failure_code: &'a Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

pub fn refund(r: &Refund) -> RefundView<'_> {
    RefundView {
        id: r.id.to_string(),
        payment_id: r.payment_id.to_string(),
        invoice_id: r.invoice_id.to_string(),
        amount: r.amount,
        currency: r.currency.as_str(),
        status: r.status.as_str(),
        reason: &r.reason,
        failure_code: &r.failure_code,
        created_at: ts(&r.created_at),
        updated_at: ts(&r.updated_at),
    }
}

/// One audit event. `sequence` orders the tenant's log and is the events cursor.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Event)]
pub struct EventView {
    #[schema(example = "evt_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    id: String,
    sequence: i64,
    #[schema(schema_with = super::constraints::event_type_name)]
    event_type: &'static str,
    #[schema(format = DateTime)]
    occurred_at: String,
    subject_id: String,
    /// The API key id (`key_…`), `platform` or `gateway`.
    actor: String,
    #[schema(value_type = Object)]
    data: Value,
}

/// An event as the API shows it; one whose data does not serialize is an internal error.
pub fn event(stored: &StoredEvent) -> Result<EventView, ApiError> {
    let e: &Event = &stored.event;
    Ok(EventView {
        id: e.id.to_string(),
        sequence: stored.sequence,
        event_type: e.event_type(),
        occurred_at: ts(&e.occurred_at),
        subject_id: e.subject_id(),
        actor: e.actor.to_string(),
        data: e.data.data_json().map_err(ApiError::Internal)?,
    })
}

/// Serializes a view for a stored idempotent response.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
