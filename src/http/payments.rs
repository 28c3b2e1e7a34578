//! Payments: create (reserve + charge), read, list, timeline, refunds.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use payrail_actors::domain::{
    card_fingerprint, tenant_fingerprint_key, InvoiceId, PaymentId, PaymentMethodInput,
    PaymentStatus, TenantId,
};
use payrail_actors::engine::PaymentAttempt;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Role, TenantKey};
use super::constraints;
use super::errors::ApiError;
use super::idempotency::{context, parse, respond};
use super::openapi::{
    BadRequest, Conflict, Forbidden, Internal, InvalidParameter, NotFound, PayloadTooLarge,
    PaymentRefused, RateLimited, RefundRefused, Unauthenticated, Unavailable, IDEMPOTENCY_KEY,
};
use super::schemas::{Page, PaymentMethodInputSchema};
use super::tenants::PageQuery;
use super::views::{EventView, PaymentView, RefundView};
use super::{detached, views, AppState};
use crate::keys::Keys;

/// A payment attempt on an `open` or `uncollectible` invoice.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePayment {
    /// An unknown or malformed id is a 404.
    #[schema(schema_with = constraints::invoice_id)]
    invoice_id: String,
    /// Default: the invoice's `amountRemaining`; more than that is a 422.
    #[schema(schema_with = constraints::amount_optional)]
    amount: Option<i64>,
    #[schema(value_type = PaymentMethodInputSchema)]
    payment_method: PaymentMethodInput,
}

/// A refund of (part of) the captured amount.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRefund {
    /// Default: everything still refundable; more than that is a 422.
    #[schema(schema_with = constraints::amount_optional)]
    amount: Option<i64>,
    #[schema(schema_with = constraints::refund_reason)]
    reason: Option<String>,
}

/// The body the idempotency fingerprint is computed over: the card number replaced by the
/// card's fingerprint and the CVC by a keyed digest, so the stored fingerprint derives from no
/// card data (it is keyed as well).
fn fingerprint_body(keys: &Keys, tenant: TenantId, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut request: serde_json::Value = parse(body)?;
    if let Some(method) = request
        .get_mut("paymentMethod")
        .and_then(|m| m.as_object_mut())
    {
        let card_key = tenant_fingerprint_key(&keys.card_fingerprint_key(), tenant);
        for field in ["number", "cvc"] {
            if let Some(value) = method.get_mut(field) {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                *value = serde_json::Value::String(card_fingerprint(&card_key, &text));
            }
        }
    }
    serde_json::to_vec(&request).map_err(|e| ApiError::Internal(e.to_string()))
}

fn parse_id(raw: &str) -> Result<PaymentId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("payment"))
}

/// Pay an invoice: the amount is reserved at once, then charged through the gateway.
#[utoipa::path(
    operation_id = "createPayment",
    tag = "payments",
    security(("apiKey" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    request_body = CreatePayment,
    responses(
        (status = 201, description = "The payment, `processing`", body = PaymentView),
        BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, PayloadTooLarge,
        PaymentRefused, RateLimited, Internal, Unavailable,
    )
)]
#[post("/api/payments")]
pub async fn create(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    let input: CreatePayment = parse(&body)?;
    let invoice_id: InvoiceId = input
        .invoice_id
        .parse()
        .map_err(|_| ApiError::NotFound("invoice"))?;
    // Only a request under an Idempotency-Key has a fingerprint to compute.
    let fingerprinted = match req.headers().contains_key(super::idempotency::HEADER) {
        true => fingerprint_body(&state.keys, auth.tenant, &body)?,
        false => Vec::new(),
    };
    let ctx = context(&auth, &req, &fingerprinted, StatusCode::CREATED)?;
    let attempt = PaymentAttempt {
        invoice_id,
        amount: input.amount,
        method: input.payment_method,
    };
    let outcome = state.engine.attempt_payment(ctx, attempt).await?;
    Ok(respond(outcome, StatusCode::CREATED, |p| {
        views::to_json(&views::payment(p))
    }))
}

/// Get a payment.
#[utoipa::path(
    operation_id = "getPayment",
    tag = "payments",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Payment id (`pay_…`); a malformed one is a 404")),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        Unauthenticated, NotFound, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/payments/{id}")]
pub async fn get(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let payment = detached(async move { Ok(db.get_payment(tenant, id).await?) })
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    Ok(HttpResponse::Ok().json(views::payment(&payment)))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this invoice's payments.
    #[param(schema_with = constraints::invoice_id_param)]
    invoice_id: Option<String>,
    #[param(value_type = Option<views::PaymentStatus>)]
    status: Option<String>,
    /// 1-based, default 1.
    #[param(schema_with = constraints::page)]
    page: Option<u32>,
    /// 1-100, default 10.
    #[param(schema_with = constraints::page_size)]
    page_size: Option<u32>,
}

/// List payments, newest first.
#[utoipa::path(
    operation_id = "listPayments",
    tag = "payments",
    security(("apiKey" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of payments", body = Page<PaymentView>),
        InvalidParameter, Unauthenticated, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/payments")]
pub async fn list(
    auth: TenantKey,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (page, size) = PageQuery {
        page: q.page,
        page_size: q.page_size,
    }
    .bounds()?;
    let invoice: Option<InvoiceId> = match &q.invoice_id {
        Some(raw) => Some(
            raw.parse()
                .map_err(|_| ApiError::InvalidRequest("invoiceId must be an invoice id".into()))?,
        ),
        None => None,
    };
    let status = match &q.status {
        Some(s) => Some(
            PaymentStatus::parse(s)
                .ok_or_else(|| ApiError::InvalidRequest("unknown status".into()))?,
        ),
        None => None,
    };
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let (rows, total) = detached(async move {
        Ok(db
            .list_payments(tenant, invoice, status, page, size)
            .await?)
    })
    .await?;
    let items: Vec<_> = rows.iter().map(views::payment).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, page, size, total)))
}

/// Every audit event of the payment and its refunds, oldest first.
#[utoipa::path(
    operation_id = "paymentTimeline",
    tag = "payments",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Payment id (`pay_…`); a malformed one is a 404")),
    responses(
        (status = 200, description = "The events", body = Vec<EventView>),
        Unauthenticated, NotFound, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/payments/{id}/timeline")]
pub async fn timeline(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let events = detached(async move {
        if db.get_payment(tenant, id).await?.is_none() {
            return Err(ApiError::NotFound("payment"));
        }
        Ok(db.payment_timeline(tenant, id).await?)
    })
    .await?;
    let items = events
        .iter()
        .map(views::event)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(items))
}

/// Refund a captured payment; the outcome arrives by webhook.
#[utoipa::path(
    operation_id = "refundPayment",
    tag = "payments",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Payment id (`pay_…`); a malformed one is a 404"), ("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    request_body = CreateRefund,
    responses(
        (status = 201, description = "The refund, `pending`", body = RefundView),
        BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, PayloadTooLarge,
        RefundRefused, RateLimited, Internal, Unavailable,
    )
)]
#[post("/api/payments/{id}/refunds")]
pub async fn refund(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    let id = parse_id(&id)?;
    let input: CreateRefund = parse(&body)?;
    let ctx = context(&auth, &req, &body, StatusCode::CREATED)?;
    let outcome = state
        .engine
        .refund(ctx, id, input.amount, input.reason)
        .await?;
    Ok(respond(outcome, StatusCode::CREATED, |r| {
        views::to_json(&views::refund(r))
    }))
}
