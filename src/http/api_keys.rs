//! Tenant API keys (tenant admin): create (the key is shown once), list, revoke.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use payrail_actors::domain::{ApiKeyId, Event, EventData, EventId, StreamId, TenantId};
use serde::{Deserialize, Serialize};

use super::auth::{hash_secret, random_secret, Role, TenantKey, KEY_PREFIX};
use super::errors::ApiError;
use super::idempotency::parse;
use super::views::ts;
use super::{detached, AppState};
use crate::store::ApiKeyRow;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api-keys", web::post().to(create))
        .route("/api-keys", web::get().to(list))
        .route("/api-keys/{id}", web::delete().to(revoke));
}

/// A freshly minted key: the row to store, its audit event and the full key (shown once).
pub struct NewKey {
    pub row: ApiKeyRow,
    pub key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCreated {
    id: String,
    name: String,
    role: String,
    key: String,
    created_at: String,
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
        actor: actor.to_owned(),
        occurred_at: at,
        gateway_event_id: None,
        data,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    role: String,
}

fn view(row: &ApiKeyRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id.to_string(),
        "name": row.name,
        "role": row.role,
        "createdAt": ts(&row.created_at),
        "revokedAt": row.revoked_at.as_ref().map(ts),
    })
}

async fn create(
    auth: TenantKey,
    state: web::Data<AppState>,
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
    let (row, event, key) = new_key(
        auth.tenant,
        ApiKeyId::new(),
        name,
        role,
        state.clock.now(),
        &auth.actor(),
    );
    let db = state.db.clone();
    detached(async move { Ok(db.create_api_key(&row, &event).await?) }).await?;
    Ok(HttpResponse::Created().json(KeyCreated::new(&key)))
}

fn field(name: &str, message: &str) -> payrail_actors::domain::FieldError {
    payrail_actors::domain::FieldError {
        field: name.into(),
        message: message.into(),
    }
}

async fn list(auth: TenantKey, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth.require(Role::Admin)?;
    let db = state.db.clone();
    let tenant = auth.tenant;
    let rows = detached(async move { Ok(db.list_api_keys(tenant).await?) }).await?;
    let items: Vec<_> = rows.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

async fn revoke(
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
