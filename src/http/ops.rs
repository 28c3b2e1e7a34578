//! Liveness, readiness, metrics and the OpenAPI document.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::errors::ApiError;
use super::{detached, AppState};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Ready when storage answers and the server is not draining.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(Ordering::SeqCst) || state.engine.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    let db = state.db.clone();
    detached(async move { Ok(db.ping().await?) }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let body = state.metrics.render(&state.engine.metrics(), None);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::document())
}
