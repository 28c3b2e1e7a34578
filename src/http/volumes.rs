//! `GET /api/tenants/{id}/volumes` (platform admin): how much a tenant holds, for the console's
//! platform view. Counts only: the platform admin never reads a tenant's invoices or payments.

use actix_web::{get, web, HttpResponse};
use payrail_actors::domain::TenantId;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::PlatformAdmin;
use super::errors::ApiError;
use super::openapi::{Internal, NotFound, Unauthenticated, Unavailable};
use super::{detached, AppState};

/// How much one tenant holds, counted when asked.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumesView {
    #[schema(example = "ten_01jd6x2c8ef9r4t7bq5n1k3h2m")]
    tenant_id: String,
    invoices: i64,
    payments: i64,
    refunds: i64,
    /// Audit events; also the `sequence` of the tenant's latest event.
    events: i64,
}

/// How many invoices, payments, refunds and audit events a tenant has.
#[utoipa::path(
    operation_id = "getTenantVolumes",
    tag = "tenants",
    security(("adminToken" = [])),
    params(("id" = String, Path, description = "The tenant's id (`ten_…`)")),
    responses(
        (status = 200, description = "The tenant's volumes", body = VolumesView),
        Unauthenticated, NotFound, Internal, Unavailable,
    )
)]
#[get("/api/tenants/{id}/volumes")]
pub async fn get(
    _: PlatformAdmin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: TenantId = id.parse().map_err(|_| ApiError::NotFound("tenant"))?;
    let db = state.db.clone();
    let volumes = detached(async move {
        if db.get_tenant(id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(db.tenant_volumes(id).await?))
    })
    .await?
    .ok_or(ApiError::NotFound("tenant"))?;
    Ok(HttpResponse::Ok().json(VolumesView {
        tenant_id: id.to_string(),
        invoices: volumes.invoices,
        payments: volumes.payments,
        refunds: volumes.refunds,
        events: volumes.events,
    }))
}
