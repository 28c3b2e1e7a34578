//! Liveness, readiness, metrics and the OpenAPI document.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{get, web, HttpResponse};

use super::errors::ApiError;
use super::openapi::{Internal, Unavailable};
use super::{detached, AppState};

/// Liveness: the process answers.
#[utoipa::path(
    operation_id = "healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"})))
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// How long readiness waits for storage before it reports storage unreachable.
const READY_PING_TIMEOUT_MS: u64 = 2_000;

/// Readiness: storage answers, migrations are applied, and the server is not draining.
#[utoipa::path(
    operation_id = "readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        Internal, Unavailable,
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(Ordering::SeqCst) || state.engine.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let db = state.db.clone();
    let ping = detached(async move { Ok(db.ping().await?) });
    match tokio::time::timeout(Duration::from_millis(READY_PING_TIMEOUT_MS), ping).await {
        Ok(answer) => answer?,
        Err(_) => {
            return Err(ApiError::Unavailable(
                "storage did not answer in time".into(),
            ))
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// Prometheus metrics.
#[utoipa::path(
    operation_id = "metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut body = state.metrics.render(
        &state.engine.metrics(),
        &state.engine.audit_writers(),
        state.db.pool_status(),
    );
    body.push_str(&state.streams.render_metrics(state.db.feed().subscribers()));
    body.push_str(&state.outbound.render_metrics());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// This document (OpenAPI 3.1); Swagger UI at `/swagger-ui/`.
#[utoipa::path(
    operation_id = "openapiDocument",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
#[get("/api/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::served_document())
}
