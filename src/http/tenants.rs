//! Tenants (platform admin token): create with a first admin key and a webhook secret, read,
//! list, rotate the webhook secret.

use actix_web::{web, HttpResponse};
use payrail_actors::domain::{ApiKeyId, TenantId};
use payrail_actors::ports::AccountRegistration;
use serde::Deserialize;

use super::api_keys::{new_key, KeyCreated};
use super::auth::{random_secret, PlatformAdmin, Role};
use super::errors::ApiError;
use super::idempotency::parse;
use super::views::ts;
use super::{detached, AppState};
use crate::store::TenantRow;

pub const NAME_MAX_CHARS: usize = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tenants", web::post().to(create))
        .route("/tenants", web::get().to(list))
        .route("/tenants/{id}", web::get().to(get))
        .route(
            "/tenants/{id}/webhook-secret/rotate",
            web::post().to(rotate),
        );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

fn view(t: &TenantRow) -> serde_json::Value {
    serde_json::json!({"id": t.id.to_string(), "name": t.name, "createdAt": ts(&t.created_at)})
}

async fn create(
    _: PlatformAdmin,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: CreateTenant = parse(&body)?;
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > NAME_MAX_CHARS {
        return Err(ApiError::Validation(vec![
            payrail_actors::domain::FieldError {
                field: "name".into(),
                message: "must be 1-200 characters".into(),
            },
        ]));
    }
    let now = state.clock.now();
    let tenant = TenantRow {
        id: TenantId::new(),
        name,
        webhook_secret: random_secret("whsec_"),
        previous_webhook_secret: None,
        previous_valid_until: None,
        created_at: now,
    };
    let (row, event, key) = new_key(
        tenant.id,
        ApiKeyId::new(),
        "default",
        Role::Admin,
        now,
        "platform",
    );
    let registration = AccountRegistration {
        account: tenant.id,
        webhook_url: state.settings.webhook_url.clone(),
        webhook_secret: tenant.webhook_secret.clone(),
    };
    let (db, gateway, saved) = (state.db.clone(), state.gateway.clone(), tenant.clone());
    detached(async move {
        // The gateway learns the account first: a tenant without it could never be paid.
        gateway
            .register_account(&registration)
            .await
            .map_err(|e| ApiError::Unavailable(format!("gateway registration failed: {e}")))?;
        db.create_tenant(&saved).await?;
        db.create_api_key(&row, &event).await?;
        Ok(())
    })
    .await?;
    let mut body = view(&tenant);
    body["apiKey"] = serde_json::to_value(KeyCreated::new(&key)).unwrap_or_default();
    body["webhookSecret"] = serde_json::Value::String(tenant.webhook_secret);
    Ok(HttpResponse::Created().json(body))
}

async fn get(
    _: PlatformAdmin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: TenantId = id.parse().map_err(|_| ApiError::NotFound("tenant"))?;
    let db = state.db.clone();
    let tenant = detached(async move { Ok(db.get_tenant(id).await?) })
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    Ok(HttpResponse::Ok().json(view(&tenant)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    pub page: Option<u32>,
    pub page_size: Option<u32>,
}

impl PageQuery {
    /// `(page, page_size)` validated: page ≥ 1, 1 ≤ pageSize ≤ 100 (default 10).
    pub fn bounds(&self) -> Result<(u32, u32), ApiError> {
        let page = self.page.unwrap_or(1);
        let size = self.page_size.unwrap_or(10);
        if page < 1 || !(1..=100).contains(&size) {
            return Err(ApiError::InvalidRequest(
                "page must be ≥ 1 and pageSize 1-100".into(),
            ));
        }
        Ok((page, size))
    }
}

pub fn paged<T: serde::Serialize>(
    items: Vec<T>,
    page: u32,
    size: u32,
    total: u64,
) -> serde_json::Value {
    serde_json::json!({
        "items": items,
        "page": page,
        "pageSize": size,
        "totalItems": total,
        "totalPages": total.div_ceil(u64::from(size)),
    })
}

async fn list(
    _: PlatformAdmin,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (page, size) = q.bounds()?;
    let db = state.db.clone();
    let (rows, total) = detached(async move { Ok(db.list_tenants(page, size).await?) }).await?;
    let items: Vec<_> = rows.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(paged(items, page, size, total)))
}

async fn rotate(
    _: PlatformAdmin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: TenantId = id.parse().map_err(|_| ApiError::NotFound("tenant"))?;
    let overlap = chrono::Duration::from_std(state.settings.secret_overlap)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let valid_until = state.clock.now() + overlap;
    let secret = random_secret("whsec_");
    let registration = AccountRegistration {
        account: id,
        webhook_url: state.settings.webhook_url.clone(),
        webhook_secret: secret.clone(),
    };
    let (db, gateway, new_secret) = (state.db.clone(), state.gateway.clone(), secret.clone());
    detached(async move {
        if !db
            .rotate_webhook_secret(id, &new_secret, valid_until)
            .await?
        {
            return Err(ApiError::NotFound("tenant"));
        }
        gateway
            .register_account(&registration)
            .await
            .map_err(|e| ApiError::Unavailable(format!("gateway registration failed: {e}")))
    })
    .await?;
    state.secrets.forget(id);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "webhookSecret": secret,
        "previousValidUntil": ts(&valid_until),
    })))
}
