//! Invoices: create, read, edit drafts, finalize, void, mark uncollectible, list, timeline.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use payrail_actors::domain::{
    Currency, InvoiceCommand, InvoiceId, InvoiceInput, InvoiceStatus, LineItem,
};
use payrail_actors::engine::Context;
use serde::Deserialize;

use super::auth::{Role, TenantKey};
use super::errors::ApiError;
use super::idempotency::{parse, respond, spec};
use super::tenants::paged;
use super::{detached, views, AppState};
use crate::store::{InvoiceQuery, InvoiceSort, Paging};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/invoices", web::post().to(create))
        .route("/invoices", web::get().to(list))
        .route("/invoices/{id}", web::get().to(get))
        .route("/invoices/{id}", web::patch().to(update))
        .route("/invoices/{id}/finalize", web::post().to(finalize))
        .route("/invoices/{id}/void", web::post().to(void))
        .route(
            "/invoices/{id}/mark-uncollectible",
            web::post().to(mark_uncollectible),
        )
        .route("/invoices/{id}/timeline", web::get().to(timeline));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInvoice {
    customer_name: String,
    customer_email: Option<String>,
    currency: Currency,
    due_date: Option<NaiveDate>,
    line_items: Vec<payrail_actors::domain::invoice::LineItemInput>,
    tax_rate_bps: Option<i64>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    finalize: bool,
}

/// PATCH: every field optional; absent fields keep their value.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchInvoice {
    customer_name: Option<String>,
    customer_email: Option<Option<String>>,
    currency: Option<Currency>,
    due_date: Option<Option<NaiveDate>>,
    line_items: Option<Vec<payrail_actors::domain::invoice::LineItemInput>>,
    tax_rate_bps: Option<i64>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

pub fn parse_id(raw: &str) -> Result<InvoiceId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("invoice"))
}

fn context(auth: &TenantKey) -> Context {
    Context::new(auth.tenant, auth.actor())
}

async fn create(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    let input: CreateInvoice = parse(&body)?;
    let mut ctx = context(&auth);
    if let Some(spec) = spec(&req, &body, StatusCode::CREATED)? {
        ctx = ctx.with_idempotency(spec);
    }
    let finalize = input.finalize;
    let input = InvoiceInput {
        customer_name: input.customer_name,
        customer_email: input.customer_email,
        currency: input.currency,
        due_date: input.due_date,
        line_items: input.line_items,
        tax_rate_bps: input.tax_rate_bps,
        metadata: input.metadata,
    };
    let outcome = state.engine.create_invoice(ctx, input, finalize).await?;
    Ok(respond(outcome, StatusCode::CREATED, |i| {
        views::to_json(&views::invoice(i))
    }))
}

async fn get(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let invoice = detached(async move { Ok(db.get_invoice(tenant, id).await?) })
        .await?
        .ok_or(ApiError::NotFound("invoice"))?;
    Ok(HttpResponse::Ok().json(views::invoice(&invoice)))
}

fn to_input(line: &LineItem) -> payrail_actors::domain::invoice::LineItemInput {
    payrail_actors::domain::invoice::LineItemInput {
        description: line.description.clone(),
        quantity: line.quantity,
        unit_amount: line.unit_amount,
    }
}

async fn update(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    let id = parse_id(&id)?;
    let patch: PatchInvoice = parse(&body)?;
    let current = state.engine.invoice(auth.tenant, id).await?;
    let d = &current.details;
    let input = InvoiceInput {
        customer_name: patch
            .customer_name
            .unwrap_or_else(|| d.customer_name.clone()),
        customer_email: patch
            .customer_email
            .unwrap_or_else(|| d.customer_email.clone()),
        currency: patch.currency.unwrap_or(d.currency),
        due_date: patch.due_date.unwrap_or(d.due_date),
        line_items: patch
            .line_items
            .unwrap_or_else(|| d.line_items.iter().map(to_input).collect()),
        tax_rate_bps: Some(patch.tax_rate_bps.unwrap_or(d.tax_rate_bps)),
        metadata: Some(patch.metadata.unwrap_or_else(|| d.metadata.clone())),
    };
    let outcome = state
        .engine
        .invoice_command(context(&auth), id, InvoiceCommand::Update(input))
        .await?;
    Ok(respond(outcome, StatusCode::OK, |i| {
        views::to_json(&views::invoice(i))
    }))
}

async fn command(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: &str,
    body: &[u8],
    command: InvoiceCommand,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(id)?;
    let mut ctx = context(&auth);
    if let Some(spec) = spec(&req, body, StatusCode::OK)? {
        ctx = ctx.with_idempotency(spec);
    }
    let outcome = state.engine.invoice_command(ctx, id, command).await?;
    Ok(respond(outcome, StatusCode::OK, |i| {
        views::to_json(&views::invoice(i))
    }))
}

async fn finalize(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    command(auth, state, req, &id, &body, InvoiceCommand::Finalize).await
}

async fn void(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    command(auth, state, req, &id, &body, InvoiceCommand::Void).await
}

async fn mark_uncollectible(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    command(
        auth,
        state,
        req,
        &id,
        &body,
        InvoiceCommand::MarkUncollectible,
    )
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    page: Option<u32>,
    page_size: Option<u32>,
    limit: Option<u32>,
    starting_after: Option<String>,
    status: Option<String>,
    customer: Option<String>,
    created_from: Option<DateTime<Utc>>,
    created_to: Option<DateTime<Utc>>,
    due_before: Option<NaiveDate>,
    overdue: Option<bool>,
    min_total: Option<i64>,
    max_total: Option<i64>,
    currency: Option<Currency>,
    sort: Option<String>,
}

fn bad(message: &str) -> ApiError {
    ApiError::InvalidRequest(message.into())
}

impl ListQuery {
    fn to_query(&self) -> Result<InvoiceQuery, ApiError> {
        let status = match &self.status {
            Some(s) => Some(InvoiceStatus::parse(s).ok_or_else(|| bad("unknown status"))?),
            None => None,
        };
        let sort = match &self.sort {
            Some(s) => InvoiceSort::parse(s).ok_or_else(|| bad("unknown sort"))?,
            None => InvoiceSort::default(),
        };
        let cursor_mode = self.limit.is_some() || self.starting_after.is_some();
        let paging = if cursor_mode {
            if self.page.is_some() || self.page_size.is_some() {
                return Err(bad("use either page/pageSize or limit/startingAfter"));
            }
            let limit = self.limit.unwrap_or(10);
            if !(1..=100).contains(&limit) {
                return Err(bad("limit must be 1-100"));
            }
            let starting_after = match &self.starting_after {
                Some(raw) => Some(
                    raw.parse()
                        .map_err(|_| bad("startingAfter must be an invoice id"))?,
                ),
                None => None,
            };
            Paging::Cursor {
                limit,
                starting_after,
            }
        } else {
            let (page, page_size) = (self.page.unwrap_or(1), self.page_size.unwrap_or(10));
            if page < 1 || !(1..=100).contains(&page_size) {
                return Err(bad("page must be ≥ 1 and pageSize 1-100"));
            }
            Paging::Offset { page, page_size }
        };
        if self.customer.as_ref().is_some_and(|c| c.len() > 200) {
            return Err(bad("customer filter too long"));
        }
        Ok(InvoiceQuery {
            status,
            customer: self.customer.clone(),
            created_from: self.created_from,
            created_to: self.created_to,
            due_before: self.due_before,
            overdue: self.overdue.unwrap_or(false),
            today: None,
            min_total: self.min_total,
            max_total: self.max_total,
            currency: self.currency,
            sort,
            paging,
        })
    }
}

async fn list(
    auth: TenantKey,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = q.to_query()?;
    let (db, tenant, paging) = (state.db.clone(), auth.tenant, query.paging.clone());
    let page = detached(async move { Ok(db.list_invoices(tenant, &query).await?) }).await?;
    let items: Vec<_> = page.items.iter().map(views::invoice).collect();
    let body = match paging {
        Paging::Offset { page: n, page_size } => {
            paged(items, n, page_size, page.total_items.unwrap_or(0))
        }
        Paging::Cursor { .. } => serde_json::json!({
            "items": items,
            "hasMore": page.has_more,
            "nextCursor": page.next_cursor.map(|c| c.to_string()),
        }),
    };
    Ok(HttpResponse::Ok().json(body))
}

async fn timeline(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let events = detached(async move {
        if db.get_invoice(tenant, id).await?.is_none() {
            return Err(ApiError::NotFound("invoice"));
        }
        Ok(db.invoice_timeline(tenant, id).await?)
    })
    .await?;
    let items: Vec<_> = events.iter().map(views::event).collect();
    Ok(HttpResponse::Ok().json(items))
}
