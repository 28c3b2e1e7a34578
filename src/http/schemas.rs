//! OpenAPI schemas for the domain types the API shows or accepts. The domain crate stays free of
//! HTTP concerns, so these mirror its serde shapes here; `openapi` tests compare them with real
//! responses.

use serde::Serialize;
use utoipa::ToSchema;

/// A line item as the client gives it.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LineItemInput)]
pub struct LineItemInputSchema {
    #[schema(example = "Seat")]
    description: String,
    #[schema(minimum = 1, example = 3)]
    quantity: i64,
    /// In the currency's minor unit.
    #[schema(minimum = 0, example = 1000)]
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

/// `paymentMethod` as a client sends it: a raw card (`number`, `expMonth`, `expYear`, `cvc`) or a
/// gateway token (`token`).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PaymentMethodInput)]
pub struct PaymentMethodInputSchema {
    #[serde(rename = "type")]
    #[schema(example = "card")]
    kind: String,
    #[schema(example = "4242424242424242")]
    number: Option<String>,
    exp_month: Option<u32>,
    exp_year: Option<u32>,
    cvc: Option<String>,
    #[schema(example = "tok_visa")]
    token: Option<String>,
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
