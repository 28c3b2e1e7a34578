//! Invoices: create, read, edit drafts, finalize, void, mark uncollectible, list, timeline.

use actix_web::http::StatusCode;
use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use payrail_actors::domain::{
    Currency, InvoiceCommand, InvoiceId, InvoiceInput, InvoicePatch, InvoiceStatus,
};
use payrail_actors::engine::Context;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Role, TenantKey};
use super::constraints;
use super::errors::ApiError;
use super::idempotency::{context, parse, respond, FingerprintOnly};
use super::openapi::{
    BadRequest, Conflict, Forbidden, Internal, Invalid, InvalidParameter, NotFound,
    PayloadTooLarge, RateLimited, StateConflict, Unauthenticated, Unavailable, Unprocessable,
    IDEMPOTENCY_KEY,
};
use super::schemas::{CursorPage, LineItemInputSchema, Page};
use super::views::InvoiceView;
use super::{detached, views, AppState};
use crate::store::{InvoiceQuery, InvoiceSort, Paging};

/// A new invoice: a draft, or open at once with `finalize: true`. Totals that overflow an `i64`
/// are refused (422 `validation_failed`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInvoice {
    #[schema(schema_with = constraints::customer_name, example = "Jane Doe")]
    customer_name: String,
    #[schema(schema_with = constraints::customer_email)]
    customer_email: Option<String>,
    #[schema(schema_with = constraints::currency)]
    currency: Currency,
    due_date: Option<NaiveDate>,
    /// 1 to 100 lines.
    #[schema(value_type = Vec<LineItemInputSchema>, min_items = 1, max_items = 100)]
    line_items: Vec<payrail_actors::domain::invoice::LineItemInput>,
    #[schema(schema_with = constraints::tax_rate_bps)]
    tax_rate_bps: Option<i64>,
    #[schema(schema_with = constraints::metadata)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Open the invoice at once; default `false` (a draft).
    #[serde(default)]
    finalize: bool,
}

impl CreateInvoice {
    /// The invoice's editable fields, and whether to open it at once.
    pub fn into_input(self) -> (InvoiceInput, bool) {
        let input = InvoiceInput {
            customer_name: self.customer_name,
            customer_email: self.customer_email,
            currency: self.currency,
            due_date: self.due_date,
            line_items: self.line_items,
            tax_rate_bps: self.tax_rate_bps,
            metadata: self.metadata,
        };
        (input, self.finalize)
    }
}

/// PATCH: every field optional; absent (or `null`) fields keep their value, except
/// `customerEmail` and `dueDate`, which `null` clears.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchInvoice {
    #[schema(schema_with = constraints::customer_name_patch)]
    customer_name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = constraints::customer_email)]
    customer_email: Option<Option<String>>,
    #[schema(schema_with = constraints::currency_optional)]
    currency: Option<Currency>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    due_date: Option<Option<NaiveDate>>,
    #[schema(value_type = Option<Vec<LineItemInputSchema>>, min_items = 1, max_items = 100)]
    line_items: Option<Vec<payrail_actors::domain::invoice::LineItemInput>>,
    #[schema(schema_with = constraints::tax_rate_bps)]
    tax_rate_bps: Option<i64>,
    #[schema(schema_with = constraints::metadata)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(schema_with = constraints::expected_version)]
    version: Option<i64>,
}

/// A field that is present, `null` included: serde alone reads `null` as absent, which would
/// make a clearable field impossible to clear.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `GET /api/invoices` answers an offset page, or a cursor page with `limit`/`startingAfter`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum InvoiceList<'a> {
    Page(Page<InvoiceView<'a>>),
    Cursor(CursorPage<InvoiceView<'a>>),
}

pub fn parse_id(raw: &str) -> Result<InvoiceId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("invoice"))
}

/// Create an invoice.
#[utoipa::path(
    operation_id = "createInvoice",
    tag = "invoices",
    security(("apiKey" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    request_body = CreateInvoice,
    responses(
        (status = 201, description = "The invoice (draft, or open if `finalize`)", body = InvoiceView),
        BadRequest, Unauthenticated, Forbidden, Conflict, PayloadTooLarge, Unprocessable,
        RateLimited, Internal, Unavailable,
    )
)]
#[post("/api/invoices")]
pub async fn create(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    let input: CreateInvoice = parse(&body)?;
    let ctx = context(&auth, &req, &body, StatusCode::CREATED)?;
    let (input, open_now) = input.into_input();
    let outcome = state.engine.create_invoice(ctx, input, open_now).await?;
    Ok(respond(outcome, StatusCode::CREATED, |i| {
        views::to_json(&views::invoice(i))
    }))
}

/// Get an invoice.
#[utoipa::path(
    operation_id = "getInvoice",
    tag = "invoices",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Invoice id (`inv_…`); a malformed one is a 404")),
    responses(
        (status = 200, description = "The invoice", body = InvoiceView),
        Unauthenticated, NotFound, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/invoices/{id}")]
pub async fn get(
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

/// Edit a draft invoice; absent fields keep their value and totals are recomputed.
#[utoipa::path(
    operation_id = "updateInvoice",
    tag = "invoices",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Invoice id (`inv_…`); a malformed one is a 404")),
    request_body = PatchInvoice,
    responses(
        (status = 200, description = "The updated draft", body = InvoiceView),
        BadRequest, Unauthenticated, Forbidden, NotFound, StateConflict, PayloadTooLarge,
        Invalid, RateLimited, Internal, Unavailable,
    )
)]
#[patch("/api/invoices/{id}")]
pub async fn update(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    let id = parse_id(&id)?;
    let patch: PatchInvoice = parse(&body)?;
    // Merged inside the invoice's actor: two concurrent edits of different fields both land.
    let patch = InvoicePatch {
        customer_name: patch.customer_name,
        customer_email: patch.customer_email,
        currency: patch.currency,
        due_date: patch.due_date,
        line_items: patch.line_items,
        tax_rate_bps: patch.tax_rate_bps,
        metadata: patch.metadata,
        expected_version: patch.version.map(|v| v.max(0) as u64),
    };
    let outcome = state
        .engine
        .invoice_command(
            Context::new(auth.tenant, auth.actor()),
            id,
            InvoiceCommand::Patch(patch),
        )
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
    let ctx = context(&auth, &req, body, StatusCode::OK)?;
    let outcome = state.engine.invoice_command(ctx, id, command).await?;
    Ok(respond(outcome, StatusCode::OK, |i| {
        views::to_json(&views::invoice(i))
    }))
}

/// Finalize a draft: it becomes `open` and payable.
#[utoipa::path(
    operation_id = "finalizeInvoice",
    tag = "invoices",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Invoice id (`inv_…`); a malformed one is a 404"), ("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    responses(
        (status = 200, description = "The invoice", body = InvoiceView),
        InvalidParameter, Unauthenticated, Forbidden, NotFound, Conflict, PayloadTooLarge,
        Unprocessable, RateLimited, Internal, Unavailable,
    )
)]
#[post("/api/invoices/{id}/finalize")]
pub async fn finalize(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: FingerprintOnly,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Operator)?;
    command(auth, state, req, &id, &body, InvoiceCommand::Finalize).await
}

/// Void an open or uncollectible invoice (admin key); no payment may be in flight.
#[utoipa::path(
    operation_id = "voidInvoice",
    tag = "invoices",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Invoice id (`inv_…`); a malformed one is a 404"), ("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    responses(
        (status = 200, description = "The invoice", body = InvoiceView),
        InvalidParameter, Unauthenticated, Forbidden, NotFound, Conflict, PayloadTooLarge,
        Unprocessable, RateLimited, Internal, Unavailable,
    )
)]
#[post("/api/invoices/{id}/void")]
pub async fn void(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: FingerprintOnly,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    command(auth, state, req, &id, &body, InvoiceCommand::Void).await
}

/// Mark an open invoice uncollectible; it can still be paid or voided.
#[utoipa::path(
    operation_id = "markInvoiceUncollectible",
    tag = "invoices",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Invoice id (`inv_…`); a malformed one is a 404"), ("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    responses(
        (status = 200, description = "The invoice", body = InvoiceView),
        InvalidParameter, Unauthenticated, Forbidden, NotFound, Conflict, PayloadTooLarge,
        Unprocessable, RateLimited, Internal, Unavailable,
    )
)]
#[post("/api/invoices/{id}/mark-uncollectible")]
pub async fn mark_uncollectible(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: FingerprintOnly,
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

/// Offset mode (`page`, `pageSize`) or cursor mode (`limit`, `startingAfter`): giving
/// parameters of both is a 400.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1-based page, default 1 (offset mode; not with `limit` or `startingAfter`).
    #[param(schema_with = constraints::page)]
    page: Option<u32>,
    /// 1-100, default 10 (offset mode; not with `limit` or `startingAfter`).
    #[param(schema_with = constraints::page_size)]
    page_size: Option<u32>,
    /// 1-100, default 10: switches to cursor mode (not with `page` or `pageSize`).
    #[param(schema_with = constraints::page_size)]
    limit: Option<u32>,
    /// An invoice id: the page starts after it (cursor mode; not with `page` or `pageSize`).
    #[param(schema_with = constraints::invoice_id_param)]
    starting_after: Option<String>,
    #[param(value_type = Option<views::InvoiceStatus>)]
    status: Option<String>,
    /// Case-insensitive substring of the customer's name or email, up to 200 characters.
    #[param(schema_with = constraints::customer_filter)]
    customer: Option<String>,
    created_from: Option<DateTime<Utc>>,
    created_to: Option<DateTime<Utc>>,
    due_before: Option<NaiveDate>,
    /// Open and past due.
    overdue: Option<bool>,
    #[param(schema_with = constraints::total_filter)]
    min_total: Option<i64>,
    #[param(schema_with = constraints::total_filter)]
    max_total: Option<i64>,
    #[param(schema_with = constraints::currency_filter)]
    currency: Option<Currency>,
    /// Default `-createdAt`; ties by id.
    #[param(value_type = Option<InvoiceSortKey>, inline)]
    sort: Option<String>,
}

/// Sort keys of `GET /api/invoices`; `-` means descending. No due date sorts after any date.
#[allow(dead_code)]
#[derive(ToSchema)]
pub enum InvoiceSortKey {
    #[schema(rename = "createdAt")]
    CreatedAt,
    #[schema(rename = "-createdAt")]
    CreatedAtDesc,
    #[schema(rename = "total")]
    Total,
    #[schema(rename = "-total")]
    TotalDesc,
    #[schema(rename = "dueDate")]
    DueDate,
    #[schema(rename = "-dueDate")]
    DueDateDesc,
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
        if self
            .customer
            .as_ref()
            .is_some_and(|c| c.chars().count() > 200)
        {
            return Err(bad("customer filter too long"));
        }
        if self.customer.as_ref().is_some_and(|c| c.contains('\0')) {
            return Err(bad("customer may not contain U+0000"));
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

/// List invoices: filters combine; offset pages by default, cursor pages with `limit`.
#[utoipa::path(
    operation_id = "listInvoices",
    tag = "invoices",
    security(("apiKey" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of invoices", body = InvoiceList),
        InvalidParameter, Unauthenticated, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/invoices")]
pub async fn list(
    auth: TenantKey,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = q.to_query()?;
    let (db, tenant, paging) = (state.db.clone(), auth.tenant, query.paging.clone());
    let page = detached(async move { Ok(db.list_invoices(tenant, &query).await?) }).await?;
    let items: Vec<_> = page.items.iter().map(views::invoice).collect();
    let body = match paging {
        Paging::Offset { page: n, page_size } => InvoiceList::Page(Page::new(
            items,
            n,
            page_size,
            page.total_items.unwrap_or(0),
        )),
        Paging::Cursor { .. } => InvoiceList::Cursor(CursorPage {
            items,
            has_more: page.has_more,
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }),
    };
    Ok(HttpResponse::Ok().json(body))
}

/// Every audit event of the invoice, its payments and refunds, oldest first.
#[utoipa::path(
    operation_id = "invoiceTimeline",
    tag = "invoices",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Invoice id (`inv_…`); a malformed one is a 404")),
    responses(
        (status = 200, description = "The events", body = Vec<views::EventView>),
        Unauthenticated, NotFound, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/invoices/{id}/timeline")]
pub async fn timeline(
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
    let items = events
        .iter()
        .map(views::event)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(items))
}
