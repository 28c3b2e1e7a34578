//! Request ids (`X-Request-Id`, echoed when valid), per-request tracing spans, request
//! metrics, and problem details for errors raised outside handlers (unknown routes, 405,
//! oversized bodies).

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use tracing::Instrument;

use super::errors::{problem_response, PROBLEM_JSON, REQUEST_ID};
use super::metrics::{method_label, UNMATCHED_ROUTE};
use super::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The same, as a header name: looked up by a `&str`, actix-web would build (and allocate) it
/// on every request.
static REQUEST_ID_HEADER_NAME: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
const REQUEST_ID_MAX_CHARS: usize = 128;
/// Requests slower than this are logged at info level whatever their status.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_millis(500);

fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_MAX_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID_HEADER_NAME)
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    // Metrics labels come from fixed sets: a route pattern (or `unmatched`) and a known method
    // (or `OTHER`), so made-up paths and methods cannot create series without bound.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.into());
    let method = method_label(req.method());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!("request", request_id = %request_id, method, %route);
    let started = Instant::now();
    let result = REQUEST_ID
        .scope(request_id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let mut response = match result {
        Ok(response) => response.map_into_boxed_body(),
        Err(err) => return Err(err),
    };
    if response.status().as_u16() >= 400 && !is_problem(&response) {
        // An error actix answered itself (no route, wrong method, body too large).
        let status = response.status();
        let code = match status.as_u16() {
            404 => "not_found",
            405 => "method_not_allowed",
            413 => "payload_too_large",
            400 => "invalid_request",
            _ => "error",
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let problem = REQUEST_ID.sync_scope(request_id.clone(), || {
            problem_response(status, code, title, title.to_owned(), Vec::new())
        });
        let request = response.request().clone();
        response = ServiceResponse::new(request, problem);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let status = response.status().as_u16();
    if let Some(state) = state {
        state
            .metrics
            .observe(method, &route, status, started.elapsed());
    }
    // Errors and slow requests at info; the rest at debug, so a webhook flood doesn't spend its
    // CPU formatting access logs (`RUST_LOG=payrail=debug` shows every request).
    let elapsed = started.elapsed();
    span.in_scope(|| {
        let elapsed_ms = elapsed.as_millis() as u64;
        if status >= 400 || elapsed >= SLOW_REQUEST {
            tracing::info!(status, elapsed_ms, "request");
        } else {
            tracing::debug!(status, elapsed_ms, "request");
        }
    });
    Ok(response)
}

fn is_problem(response: &ServiceResponse<BoxBody>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}
