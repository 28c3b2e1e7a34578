//! Payments: create (reserve + charge), read, list, timeline, refunds.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use payrail_actors::domain::{InvoiceId, PaymentId, PaymentMethodInput, PaymentStatus};
use payrail_actors::engine::{Context, PaymentAttempt};
use serde::Deserialize;

use super::auth::{Role, TenantKey};
use super::errors::ApiError;
use super::idempotency::{parse, respond, spec};
use super::tenants::{paged, PageQuery};
use super::{detached, views, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/payments", web::post().to(create))
        .route("/payments", web::get().to(list))
        .route("/payments/{id}", web::get().to(get))
        .route("/payments/{id}/timeline", web::get().to(timeline))
        .route("/payments/{id}/refunds", web::post().to(refund));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatePayment {
    invoice_id: String,
    amount: Option<i64>,
    payment_method: PaymentMethodInput,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRefund {
    amount: Option<i64>,
    reason: Option<String>,
}

fn parse_id(raw: &str) -> Result<PaymentId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("payment"))
}

async fn create(
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
    let mut ctx = Context::new(auth.tenant, auth.actor());
    if let Some(spec) = spec(&req, &body, StatusCode::CREATED)? {
        ctx = ctx.with_idempotency(spec);
    }
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

async fn get(
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    invoice_id: Option<String>,
    status: Option<String>,
    page: Option<u32>,
    page_size: Option<u32>,
}

async fn list(
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
    Ok(HttpResponse::Ok().json(paged(items, page, size, total)))
}

async fn timeline(
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
    let items: Vec<_> = events.iter().map(views::event).collect();
    Ok(HttpResponse::Ok().json(items))
}

async fn refund(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    let id = parse_id(&id)?;
    let input: CreateRefund = parse(&body)?;
    let mut ctx = Context::new(auth.tenant, auth.actor());
    if let Some(spec) = spec(&req, &body, StatusCode::CREATED)? {
        ctx = ctx.with_idempotency(spec);
    }
    let outcome = state
        .engine
        .refund(ctx, id, input.amount, input.reason)
        .await?;
    Ok(respond(outcome, StatusCode::CREATED, |r| {
        views::to_json(&views::refund(r))
    }))
}
