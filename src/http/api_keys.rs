//! Tenant API keys (tenant admin): create (the key is shown once), list, revoke.

use actix_web::http::StatusCode;
use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payrail_actors::domain::{ApiKeyId, Event, EventData, EventId, StreamId, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{hash_secret, random_secret, Role, TenantKey, KEY_PREFIX};
use super::errors::ApiError;
use super::idempotency::{parse, Once};
use super::openapi::{
    BadRequest, Forbidden, InFlight, Internal, NotFound, PayloadTooLarge, RateLimited,
    Unauthenticated, Unavailable, Unprocessable, IDEMPOTENCY_KEY,
};
use super::views::{to_json, ts};
use super::{detached, AppState};
use crate::store::ApiKeyRow;

/// A freshly minted key: the row to store, its audit event and the full key (shown once).
pub struct NewKey {
    pub row: ApiKeyRow,
    pub key: String,
}

/// A new API key; `key` is shown only here.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyCreated {
    #[schema(example = "key_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    id: String,
    name: String,
    #[schema(value_type = RoleName)]
    role: String,
    /// `Authorization: Bearer <key>`.
    #[schema(example = "prk_key_01jd6x2c8ef9r4t7bq5n1k3h2m_…")]
    key: String,
    #[schema(format = DateTime)]
    created_at: String,
}

/// `admin` (everything), `operator` (invoices, payments, refunds; read), `viewer` (read only).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Role)]
pub enum RoleName {
    Admin,
    Operator,
    Viewer,
}

/// An API key, without its secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiKey)]
pub struct KeyView {
    id: String,
    name: String,
    #[schema(value_type = RoleName)]
    role: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
}

/// Every key of the tenant, revoked ones included.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    items: Vec<KeyView>,
}

impl KeyCreated {
    pub fn new(key: &NewKey) -> Self {
        Self {
            id: key.row.id.to_string(),
            name: key.row.name.clone(),
            role: key.row.role.clone(),
            key: key.key.clone(),
            created_at: ts(&key.row.created_at),
        }
    }
}

pub fn new_key(
    tenant: TenantId,
    id: ApiKeyId,
    name: &str,
    role: Role,
    at: DateTime<Utc>,
    actor: &str,
) -> (ApiKeyRow, Event, NewKey) {
    let secret = random_secret("");
    let row = ApiKeyRow {
        tenant_id: tenant,
        id,
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        secret_hash: hash_secret(&secret),
        created_at: at,
        revoked_at: None,
    };
    let event = key_event(
        &row,
        1,
        actor,
        at,
        EventData::ApiKeyCreated {
            name: name.to_owned(),
            role: role.as_str().to_owned(),
        },
    );
    let key = NewKey {
        row: row.clone(),
        key: format!("{KEY_PREFIX}{id}_{secret}"),
    };
    (row, event, key)
}

fn key_event(
    row: &ApiKeyRow,
    version: u64,
    actor: &str,
    at: DateTime<Utc>,
    data: EventData,
) -> Event {
    Event {
        id: EventId::new(),
        tenant_id: row.tenant_id,
        stream: StreamId::ApiKey(row.id),
        version,
        invoice_id: None,
        actor: actor.to_owned().into(),
        occurred_at: at,
        gateway_event_id: None,
        data,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(schema_with = super::constraints::key_name, example = "ci")]
    name: String,
    #[schema(value_type = RoleName)]
    role: String,
}

fn view(row: &ApiKeyRow) -> KeyView {
    KeyView {
        id: row.id.to_string(),
        name: row.name.clone(),
        role: row.role.clone(),
        created_at: ts(&row.created_at),
        revoked_at: row.revoked_at.as_ref().map(ts),
    }
}

/// Create an API key (admin key); the full key is shown once.
#[utoipa::path(
    operation_id = "createApiKey",
    tag = "api-keys",
    security(("apiKey" = [])),
    request_body = CreateKey,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    responses(
        (status = 201, description = "The key, shown once", body = KeyCreated),
        BadRequest, Unauthenticated, Forbidden, InFlight, PayloadTooLarge, Unprocessable,
        RateLimited, Internal, Unavailable,
    )
)]
#[post("/api/api-keys")]
pub async fn create(
    auth: TenantKey,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let input: CreateKey = parse(&body)?;
    let mut errors = Vec::new();
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(field("name", "must be 1-100 characters"));
    }
    let role: Result<Role, ()> = input.role.parse();
    if role.is_err() {
        errors.push(field("role", "must be admin, operator or viewer"));
    }
    let Ok(role) = role else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let once = Once::begin(&req, &body, &auth.tenant.to_string(), &state.in_flight)?;
    let now = state.clock.now();
    let (row, event, key) = new_key(auth.tenant, ApiKeyId::new(), name, role, now, &auth.actor());
    let created = to_json(&KeyCreated::new(&key));
    let db = state.db.clone();
    let answer = Once::run(
        once.as_ref(),
        &state.db,
        StatusCode::CREATED,
        created,
        now,
        |response| async move { Ok(db.create_api_key(&row, &event, response.as_ref()).await?) },
    )
    .await?;
    Ok(answer.respond())
}

fn field(name: &str, message: &str) -> payrail_actors::domain::FieldError {
    payrail_actors::domain::FieldError {
        field: name.into(),
        message: message.into(),
    }
}

/// List the tenant's API keys (admin key), without secrets.
#[utoipa::path(
    operation_id = "listApiKeys",
    tag = "api-keys",
    security(("apiKey" = [])),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        Unauthenticated, Forbidden, RateLimited, Internal, Unavailable,
    )
)]
#[get("/api/api-keys")]
pub async fn list(auth: TenantKey, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let db = state.db.clone();
    let tenant = auth.tenant;
    let rows = detached(async move { Ok(db.list_api_keys(tenant).await?) }).await?;
    let items: Vec<_> = rows.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(KeyList { items }))
}

/// Revoke an API key (admin key); it is refused at once.
#[utoipa::path(
    operation_id = "revokeApiKey",
    tag = "api-keys",
    security(("apiKey" = [])),
    params(("id" = String, Path, description = "API key id (`key_…`); a malformed one is a 404")),
    responses(
        (status = 204, description = "Revoked"),
        Unauthenticated, Forbidden, NotFound, RateLimited, Internal, Unavailable,
    )
)]
#[delete("/api/api-keys/{id}")]
pub async fn revoke(
    auth: TenantKey,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let id: ApiKeyId = id.parse().map_err(|_| ApiError::NotFound("api key"))?;
    let now = state.clock.now();
    let db = state.db.clone();
    let tenant = auth.tenant;
    let actor = auth.actor();
    let revoked = detached(async move {
        let Some(row) = db
            .list_api_keys(tenant)
            .await?
            .into_iter()
            .find(|k| k.id == id)
        else {
            return Ok(false);
        };
        if row.revoked_at.is_some() {
            return Ok(true);
        }
        let event = key_event(&row, 2, &actor, now, EventData::ApiKeyRevoked {});
        Ok(db.revoke_api_key(tenant, id, &event).await?)
    })
    .await?;
    if revoked {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("api key"))
    }
}
