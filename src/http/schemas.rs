//! OpenAPI schemas for the domain types the API shows or accepts. The domain crate stays free of
//! HTTP concerns, so these mirror its serde shapes here; `openapi` tests compare them with real
//! responses.

use serde::Serialize;
use utoipa::ToSchema;

use super::constraints;

/// A line item as the client gives it.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = LineItemInput)]
pub struct LineItemInputSchema {
    #[schema(schema_with = constraints::line_description, example = "Seat")]
    description: String,
    #[schema(schema_with = constraints::quantity)]
    quantity: i64,
    #[schema(schema_with = constraints::amount, example = 1000)]
    unit_amount: i64,
}

/// A line item with its computed amount (`quantity × unitAmount`).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LineItem)]
pub struct LineItemSchema {
    description: String,
    quantity: i64,
    unit_amount: i64,
    amount: i64,
}

/// What is kept about a card: never the full number.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CardSummary)]
pub struct CardSummarySchema {
    #[serde(rename = "type")]
    #[schema(example = "card")]
    kind: String,
    #[schema(example = "visa")]
    brand: String,
    #[schema(example = "4242")]
    last4: String,
    exp_month: u32,
    exp_year: u32,
    /// Keyed fingerprint of the card number.
    fingerprint: String,
}

/// `paymentMethod` as a client sends it: a raw card, or a gateway test token. Beyond these
/// shapes the server checks the card number's Luhn digit and that the card has not expired
/// (422 `validation_failed`).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = PaymentMethodInput)]
pub enum PaymentMethodInputSchema {
    Card(CardInputSchema),
    Token(TokenInputSchema),
}

/// The only payment method type.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub enum PaymentMethodType {
    #[serde(rename = "card")]
    Card,
}

/// The test tokens the gateway knows (see the test cards in the API guide).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub enum CardToken {
    #[serde(rename = "tok_visa")]
    Visa,
    #[serde(rename = "tok_chargeDeclined")]
    ChargeDeclined,
    #[serde(rename = "tok_insufficientFunds")]
    InsufficientFunds,
    #[serde(rename = "tok_lateFailure")]
    LateFailure,
}

/// A raw card. The number is sent to the gateway and never stored.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CardInput)]
pub struct CardInputSchema {
    #[serde(rename = "type")]
    kind: PaymentMethodType,
    /// 12-19 digits, passing the Luhn check.
    #[schema(pattern = "^[0-9]{12,19}$", example = "4242424242424242")]
    number: String,
    #[schema(minimum = 1, maximum = 12, example = 12)]
    exp_month: i64,
    /// Four digits; with `expMonth`, not in the past.
    #[schema(minimum = 2000, maximum = 2100, example = 2030)]
    exp_year: i64,
    #[schema(pattern = "^[0-9]{3,4}$", example = "123")]
    cvc: String,
    /// Absent (or `null`) when paying with a card number.
    #[schema(schema_with = constraints::null_only)]
    token: Option<()>,
}

/// A gateway test token instead of a card.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TokenInput)]
pub struct TokenInputSchema {
    #[serde(rename = "type")]
    kind: PaymentMethodType,
    token: CardToken,
    /// Absent (or `null`) when paying with a token.
    #[schema(schema_with = constraints::null_only)]
    number: Option<()>,
    /// Ignored with a token.
    #[schema(minimum = 0, maximum = 4294967295_i64, format = Int64)]
    exp_month: Option<i64>,
    /// Ignored with a token.
    #[schema(minimum = 0, maximum = 4294967295_i64, format = Int64)]
    exp_year: Option<i64>,
    /// Ignored with a token.
    cvc: Option<String>,
}

/// One message of the `GET /api/events/stream` event stream.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = StreamEvent)]
pub struct StreamEventSchema {
    /// The audit event's `sequence`; absent on `close`.
    id: Option<String>,
    /// The audit event's `eventType`, or `close` when the server ends the stream.
    event: String,
    /// The audit event as `GET /api/events` shows it, or `{"reason":…}` on `close` (JSON).
    data: String,
}

/// One field-level validation message of a problem response.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorSchema {
    field: String,
    message: String,
}

/// Per-request webhook outcome counts.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookSummary)]
pub struct WebhookSummarySchema {
    received: u64,
    applied: u64,
    duplicates: u64,
    ignored: u64,
    rejected: u64,
}

/// An offset page: `page` is 1-based, `pageSize` 1–100.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub page_size: u32,
    pub total_items: u64,
    pub total_pages: u64,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, page: u32, page_size: u32, total_items: u64) -> Self {
        Self {
            items,
            page,
            page_size,
            total_items,
            total_pages: total_items.div_ceil(u64::from(page_size)),
        }
    }
}

/// A cursor page: pass `nextCursor` as `startingAfter` to get the next one.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CursorPage<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}
