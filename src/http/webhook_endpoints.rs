//! Outbound webhook endpoints: create (the secret is shown once), list, get, patch, delete and
//! rotate the secret. Admin role for writes, any role for reads; another tenant's endpoint is
//! a 404. Delivery itself is the dispatcher's (`crate::outbound`).

use actix_web::http::StatusCode;
use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use payrail_actors::domain::events::EVENT_TYPES;
use payrail_actors::domain::{EndpointId, FieldError};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Role, TenantKey};
use super::errors::ApiError;
use super::idempotency::{parse, FingerprintOnly, Once};
use super::openapi::{
    BadRequest, Forbidden, InFlight, Internal, KeyReused, NotFound, PayloadTooLarge, RateLimited,
    Unauthenticated, Unavailable, UrlRefused, IDEMPOTENCY_KEY,
};
use super::views::{to_json, ts};
use super::{detached, AppState};
use crate::outbound::{signing, ssrf};
use crate::store::{EndpointPatch, EndpointRow, ENDPOINTS_PER_TENANT_MAX};

/// Characters a description may hold.
const DESCRIPTION_MAX_CHARS: usize = 500;
/// Characters a URL may hold.
const URL_MAX_CHARS: usize = 2_048;

/// An outbound webhook endpoint, without its secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebhookEndpoint)]
pub struct EndpointView {
    #[schema(example = "we_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    id: String,
    url: String,
    description: String,
    /// Empty: every event type.
    event_types: Vec<String>,
    /// `enabled` or `disabled`.
    status: &'static str,
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new endpoint; `secret` is shown only here (and on rotation).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointCreated {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_` + base64 of the signing key's bytes (Standard Webhooks).
    secret: String,
}

/// The tenant's endpoints.
#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    items: Vec<EndpointView>,
}

/// The new secret; the previous one keeps signing (a second signature) until
/// `previousValidUntil`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EndpointSecretRotated)]
pub struct SecretRotated {
    secret: String,
    #[schema(format = DateTime)]
    previous_valid_until: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEndpoint {
    /// `https://…` (`http://` only where configuration allows it).
    url: String,
    #[schema(schema_with = super::constraints::endpoint_description)]
    description: Option<String>,
    /// Omitted or empty: every event type.
    #[schema(schema_with = super::constraints::event_types_optional)]
    event_types: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateEndpoint {
    url: Option<String>,
    #[schema(schema_with = super::constraints::endpoint_description)]
    description: Option<String>,
    #[schema(schema_with = super::constraints::event_types_optional)]
    event_types: Option<Vec<String>>,
    /// `enabled` or `disabled`; enabling resumes the queue where it stopped.
    #[schema(schema_with = super::constraints::endpoint_status_optional)]
    status: Option<String>,
}

pub(crate) fn view(row: &EndpointRow) -> EndpointView {
    EndpointView {
        id: row.id.to_string(),
        url: row.url.clone(),
        description: row.description.clone(),
        event_types: row.event_types.clone(),
        status: if row.enabled { "enabled" } else { "disabled" },
        created_at: ts(&row.created_at),
    }
}

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

fn check_description(description: &str, errors: &mut Vec<FieldError>) {
    if description.chars().count() > DESCRIPTION_MAX_CHARS {
        errors.push(field("description", "must be at most 500 characters"));
    }
}

fn check_types(types: &[String], errors: &mut Vec<FieldError>) {
    if let Some(unknown) = types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        errors.push(field(
            "eventTypes",
            format!("unknown event type {unknown:?}"),
        ));
    }
}

/// The URL, if configuration allows it as a target (422 `invalid_url` otherwise).
async fn check_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    if url.chars().count() > URL_MAX_CHARS {
        return Err(ApiError::InvalidUrl(
            "must be at most 2048 characters".into(),
        ));
    }
    let policy = state.outbound.settings().policy();
    ssrf::check(url, policy)
        .await
        .map(|u| u.to_string())
        .map_err(|e| ApiError::InvalidUrl(e.to_string()))
}

fn parse_id(raw: &str) -> Result<EndpointId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound("webhook endpoint"))
}

/// Create an outbound webhook endpoint (admin key); its secret is shown once.
#[utoipa::path(
    operation_id = "createWebhookEndpoint",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    request_body = CreateEndpoint,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    responses(
        (status = 201, description = "The endpoint, with its secret shown once", body = EndpointCreated),
        BadRequest, Unauthenticated, Forbidden, InFlight, PayloadTooLarge, UrlRefused,
        RateLimited, Internal, Unavailable,
    )
)]
#[post("/api/webhook-endpoints")]
pub async fn create(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let input: CreateEndpoint = parse(&body)?;
    let mut errors = Vec::new();
    let description = input.description.unwrap_or_default();
    check_description(&description, &mut errors);
    let event_types = input.event_types.unwrap_or_default();
    check_types(&event_types, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let url = check_url(&state, &input.url).await?;
    let once = Once::begin(&req, &body, &auth.tenant.to_string(), &state.in_flight)?;
    let now = state.clock.now();
    let row = EndpointRow {
        tenant_id: auth.tenant,
        id: EndpointId::new(),
        url,
        description,
        event_types,
        enabled: true,
        secret: signing::new_secret(),
        previous_secret: None,
        previous_valid_until: None,
        cursor_seq: 0,
        failing_since: None,
        created_at: now,
    };
    let created = to_json(&EndpointCreated {
        endpoint: view(&row),
        secret: row.secret.expose_secret().to_owned(),
    });
    let db = state.db.clone();
    let answer = Once::run(
        once.as_ref(),
        &state.db,
        StatusCode::CREATED,
        created,
        now,
        |response| async move {
            if db.create_endpoint(&row, response.as_ref()).await? {
                Ok(())
            } else {
                Err(ApiError::Validation(vec![field(
                    "url",
                    format!("a tenant may have at most {ENDPOINTS_PER_TENANT_MAX} endpoints"),
                )]))
            }
        },
    )
    .await?;
    state.outbound.endpoints_changed();
    Ok(answer.respond())
}

/// List the tenant's outbound webhook endpoints (any role), without secrets.
#[utoipa::path(
    operation_id = "listWebhookEndpoints",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        Unauthenticated, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/webhook-endpoints")]
pub async fn list(auth: TenantKey, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let rows = detached(async move { Ok(db.list_endpoints(tenant).await?) }).await?;
    Ok(HttpResponse::Ok().json(EndpointList {
        items: rows.iter().map(view).collect(),
    }))
}

/// One outbound webhook endpoint (any role), without its secret.
#[utoipa::path(
    operation_id = "getWebhookEndpoint",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Endpoint id (`we_…`)")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        Unauthenticated, NotFound, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/webhook-endpoints/{id}")]
pub async fn get(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&state, &auth, &id).await?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// The caller's endpoint, or 404 (absent, malformed id, or another tenant's).
pub(crate) async fn find(
    state: &AppState,
    auth: &TenantKey,
    raw: &str,
) -> Result<EndpointRow, ApiError> {
    let id = parse_id(raw)?;
    let (db, tenant) = (state.db.clone(), auth.tenant);
    detached(async move { Ok(db.get_endpoint(tenant, id).await?) })
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

/// Change an endpoint (admin key): URL, description, event types, or status.
#[utoipa::path(
    operation_id = "updateWebhookEndpoint",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    request_body = UpdateEndpoint,
    params(("id" = String, Path, description = "Endpoint id (`we_…`)")),
    responses(
        (status = 200, description = "The endpoint as it now is", body = EndpointView),
        BadRequest, Unauthenticated, Forbidden, NotFound, PayloadTooLarge, UrlRefused,
        RateLimited, Internal, Unavailable,
    )
)]
#[patch("/api/webhook-endpoints/{id}")]
pub async fn update(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let id = parse_id(&id)?;
    let input: UpdateEndpoint = parse(&body)?;
    let mut errors = Vec::new();
    if let Some(d) = &input.description {
        check_description(d, &mut errors);
    }
    if let Some(t) = &input.event_types {
        check_types(t, &mut errors);
    }
    let enabled = match input.status.as_deref() {
        None => None,
        Some("enabled") => Some(true),
        Some("disabled") => Some(false),
        Some(_) => {
            errors.push(field("status", "must be enabled or disabled"));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let url = match &input.url {
        Some(u) => Some(check_url(&state, u).await?),
        None => None,
    };
    let patch = EndpointPatch {
        url,
        description: input.description,
        event_types: input.event_types,
        enabled,
    };
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let row = detached(async move { Ok(db.update_endpoint(tenant, id, &patch).await?) })
        .await?
        .ok_or(ApiError::NotFound("webhook endpoint"))?;
    state.outbound.endpoints_changed();
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Delete an endpoint (admin key) with its queue and attempts log.
#[utoipa::path(
    operation_id = "deleteWebhookEndpoint",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "Endpoint id (`we_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        Unauthenticated, Forbidden, NotFound, RateLimited, Internal, Unavailable,
    )
)]
#[delete("/api/webhook-endpoints/{id}")]
pub async fn remove(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let id = parse_id(&id)?;
    let (db, tenant) = (state.db.clone(), auth.tenant);
    if !detached(async move { Ok(db.delete_endpoint(tenant, id).await?) }).await? {
        return Err(ApiError::NotFound("webhook endpoint"));
    }
    state.outbound.endpoints_changed();
    Ok(HttpResponse::NoContent().finish())
}

/// Rotate an endpoint's secret (admin key); deliveries carry both signatures during the
/// overlap (24 h by default).
#[utoipa::path(
    operation_id = "rotateWebhookEndpointSecret",
    tag = "webhook-endpoints",
    security(("apiKey" = [])),
    params(
        ("id" = String, Path, description = "Endpoint id (`we_…`)"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY),
    ),
    responses(
        (status = 200, description = "The new secret, shown once", body = SecretRotated),
        BadRequest, Unauthenticated, Forbidden, NotFound, InFlight, KeyReused, RateLimited,
        Internal, Unavailable,
    )
)]
#[post("/api/webhook-endpoints/{id}/secret/rotate")]
pub async fn rotate(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: FingerprintOnly,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let id = parse_id(&id)?;
    let once = Once::begin(&req, &body, &auth.tenant.to_string(), &state.in_flight)?;
    let now = state.clock.now();
    let overlap = chrono::Duration::from_std(state.outbound.settings().secret_overlap())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let until = now + overlap;
    let secret = signing::new_secret();
    let rotated = to_json(&SecretRotated {
        secret: secret.expose_secret().to_owned(),
        previous_valid_until: ts(&until),
    });
    let (db, tenant) = (state.db.clone(), auth.tenant);
    let answer = Once::run(
        once.as_ref(),
        &state.db,
        StatusCode::OK,
        rotated,
        now,
        |response| async move {
            if db
                .rotate_endpoint_secret(tenant, id, &secret, until, response.as_ref())
                .await?
            {
                Ok(())
            } else {
                Err(ApiError::NotFound("webhook endpoint"))
            }
        },
    )
    .await?;
    state.outbound.endpoints_changed();
    Ok(answer.respond())
}
