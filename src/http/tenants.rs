//! Tenants (platform admin token): create with a first admin key and a webhook secret, read,
//! list, rotate the webhook secret.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use payrail_actors::domain::{ApiKeyId, TenantId};
use payrail_actors::ports::{AccountRegistration, Gateway};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_keys::{new_key, KeyCreated};
use super::auth::{random_secret, PlatformAdmin, Role};
use super::errors::ApiError;
use super::idempotency::{parse, Answer, FingerprintOnly, Once};
use super::openapi::{
    BadRequest, InFlight, Internal, InvalidParameter, KeyReused, NotFound, PayloadTooLarge,
    Unauthenticated, Unavailable, Unprocessable, IDEMPOTENCY_KEY,
};
use super::schemas::Page;
use super::views::{to_json, ts};
use super::{detached, AppState};
use crate::store::{TenantRow, PLATFORM_SCOPE};

pub const NAME_MAX_CHARS: usize = 200;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(schema_with = super::constraints::tenant_name, example = "Acme")]
    name: String,
}

/// A tenant. Its secrets are shown only when it is created.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Tenant)]
pub struct TenantView {
    #[schema(example = "ten_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    id: String,
    name: String,
    #[schema(format = DateTime)]
    created_at: String,
}

/// A new tenant with its first admin API key and its webhook signing secret, both shown once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantCreated {
    #[serde(flatten)]
    tenant: TenantView,
    api_key: KeyCreated,
    /// The gateway signs webhooks for this tenant with it.
    #[schema(example = "whsec_…")]
    webhook_secret: String,
}

/// A rotated webhook secret; the previous one still verifies until `previousValidUntil`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotated {
    webhook_secret: String,
    #[schema(format = DateTime)]
    previous_valid_until: String,
}

fn view(t: &TenantRow) -> TenantView {
    TenantView {
        id: t.id.to_string(),
        name: t.name.clone(),
        created_at: ts(&t.created_at),
    }
}

const TENANT_ID: &str = "Tenant id (`ten_…`); a malformed one is a 404";

/// Create a tenant with a first admin key; registers its account with the gateway.
#[utoipa::path(
    operation_id = "createTenant",
    tag = "tenants",
    security(("adminToken" = [])),
    request_body = CreateTenant,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY)),
    responses(
        (status = 201, description = "The tenant, with secrets shown once", body = TenantCreated),
        BadRequest, Unauthenticated, InFlight, PayloadTooLarge, Unprocessable, Internal,
        Unavailable,
    )
)]
#[post("/api/tenants")]
pub async fn create(
    _: PlatformAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
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
    let once = Once::begin(&req, &body, PLATFORM_SCOPE, &state.in_flight)?;
    let now = state.clock.now();
    let tenant = TenantRow {
        id: TenantId::new(),
        name,
        webhook_secret: random_secret("whsec_").into(),
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
    let created = to_json(&TenantCreated {
        tenant: view(&tenant),
        api_key: KeyCreated::new(&key),
        webhook_secret: tenant.webhook_secret.expose_secret().to_owned(),
    });
    let registration = AccountRegistration {
        account: tenant.id,
        webhook_url: state.settings.webhook_url.clone(),
        webhook_secret: tenant.webhook_secret.expose_secret().to_owned(),
    };
    let (db, gateway) = (state.db.clone(), state.gateway.clone());
    let id = tenant.id;
    let answer = Once::run(
        once.as_ref(),
        &state.db,
        StatusCode::CREATED,
        created,
        now,
        |response| async move {
            // The gateway learns the account first: a tenant without it could never be paid.
            // If two nodes race on one key, the loser leaves an account nobody uses.
            register(gateway.as_ref(), &registration).await?;
            Ok(db
                .create_tenant(&tenant, &row, &event, response.as_ref())
                .await?)
        },
    )
    .await?;
    // In case a forged webhook had the account cached as unknown.
    state.secrets.forget(id);
    Ok(answer.respond())
}

async fn register(
    gateway: &dyn Gateway,
    registration: &AccountRegistration,
) -> Result<(), ApiError> {
    gateway
        .register_account(registration)
        .await
        .map_err(|e| ApiError::Unavailable(format!("gateway registration failed: {e}")))
}

/// Get a tenant.
#[utoipa::path(
    operation_id = "getTenant",
    tag = "tenants",
    security(("adminToken" = [])),
    params(("id" = String, Path, description = TENANT_ID)),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        Unauthenticated, NotFound, Internal, Unavailable,
    )
)]
#[get("/api/tenants/{id}")]
pub async fn get(
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

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based, default 1.
    #[param(schema_with = super::constraints::page)]
    pub page: Option<u32>,
    /// 1-100, default 10.
    #[param(schema_with = super::constraints::page_size)]
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

/// List tenants.
#[utoipa::path(
    operation_id = "listTenants",
    tag = "tenants",
    security(("adminToken" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of tenants", body = Page<TenantView>),
        InvalidParameter, Unauthenticated, Internal, Unavailable,
    )
)]
#[get("/api/tenants")]
pub async fn list(
    _: PlatformAdmin,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (page, size) = q.bounds()?;
    let db = state.db.clone();
    let (rows, total) = detached(async move { Ok(db.list_tenants(page, size).await?) }).await?;
    let items: Vec<_> = rows.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, page, size, total)))
}

/// Rotate the tenant's webhook secret; the old one keeps verifying during the overlap.
#[utoipa::path(
    operation_id = "rotateWebhookSecret",
    tag = "tenants",
    security(("adminToken" = [])),
    params(
        ("id" = String, Path, description = TENANT_ID),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = IDEMPOTENCY_KEY),
    ),
    responses(
        (status = 200, description = "The new secret", body = SecretRotated),
        InvalidParameter, Unauthenticated, NotFound, InFlight, PayloadTooLarge, KeyReused,
        Internal, Unavailable,
    )
)]
#[post("/api/tenants/{id}/webhook-secret/rotate")]
pub async fn rotate(
    _: PlatformAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: FingerprintOnly,
) -> Result<HttpResponse, ApiError> {
    let id: TenantId = id.parse().map_err(|_| ApiError::NotFound("tenant"))?;
    let once = Once::begin(&req, &body, PLATFORM_SCOPE, &state.in_flight)?;
    let overlap = chrono::Duration::from_std(state.settings.secret_overlap)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = state.clock.now();
    let valid_until = now + overlap;
    let secret = random_secret("whsec_");
    let rotated = to_json(&SecretRotated {
        webhook_secret: secret.clone(),
        previous_valid_until: ts(&valid_until),
    });
    let registration = AccountRegistration {
        account: id,
        webhook_url: state.settings.webhook_url.clone(),
        webhook_secret: secret,
    };
    let (db, gateway) = (state.db.clone(), state.gateway.clone());
    let answer = Once::run(
        once.as_ref(),
        &state.db,
        StatusCode::OK,
        rotated,
        now,
        |response| async move {
            if db.get_tenant(id).await?.is_none() {
                return Err(ApiError::NotFound("tenant"));
            }
            // Gateway first: until the commit below, webhooks signed with the new secret are
            // refused and retried by the gateway; a failed commit leaves the old secret
            // current here, and the client's retry rotates again.
            register(gateway.as_ref(), &registration).await?;
            if db
                .rotate_webhook_secret(
                    id,
                    &registration.webhook_secret.clone().into(),
                    valid_until,
                    response.as_ref(),
                )
                .await?
            {
                Ok(())
            } else {
                Err(ApiError::NotFound("tenant"))
            }
        },
    )
    .await?;
    if let Answer::Replayed(replay) = &answer {
        reassert_secret(&state, id, &replay.body).await?;
    }
    state.secrets.forget(id);
    Ok(answer.respond())
}

/// On a replayed rotation, makes sure the gateway signs with the replayed secret if it is
/// still the current one: a request that lost a race for the same key on another node may
/// have registered its own secret after the winner's.
async fn reassert_secret(state: &AppState, id: TenantId, replayed: &str) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Stored {
        webhook_secret: String,
    }
    let stored: Stored = serde_json::from_str(replayed)
        .map_err(|e| ApiError::Internal(format!("stored rotation response: {e}")))?;
    let registration = AccountRegistration {
        account: id,
        webhook_url: state.settings.webhook_url.clone(),
        webhook_secret: stored.webhook_secret,
    };
    let (db, gateway) = (state.db.clone(), state.gateway.clone());
    detached(async move {
        let current = db.webhook_secrets(id).await?.map(|(current, _)| current);
        let current = current.as_ref().map(|s| s.expose_secret());
        if current == Some(registration.webhook_secret.as_str()) {
            register(gateway.as_ref(), &registration).await?;
        }
        Ok(())
    })
    .await
}
