//! `Idempotency-Key` handling: the request fingerprint, the stored-response renderer, and
//! turning an engine outcome (fresh or replayed) into a response.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use payrail_actors::engine::{IdempotencySpec, Outcome, Rendered, Renderer};
use sha2::{Digest, Sha256};

use super::errors::ApiError;
use super::views;

pub const HEADER: &str = "Idempotency-Key";
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
pub const KEY_MAX_CHARS: usize = 255;

/// Renders any entity exactly as the API shows it.
pub fn renderer() -> Renderer {
    Arc::new(|rendered| match rendered {
        Rendered::Invoice(i) => views::to_json(&views::invoice(i)),
        Rendered::Payment(p) => views::to_json(&views::payment(p)),
        Rendered::Refund(r) => views::to_json(&views::refund(r)),
    })
}

/// The request's idempotency spec, if it carries a key; a malformed key is a 400.
pub fn spec(
    req: &HttpRequest,
    body: &[u8],
    status: StatusCode,
) -> Result<Option<IdempotencySpec>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= KEY_MAX_CHARS
                && k.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .ok_or_else(|| {
            ApiError::InvalidRequest(
                "Idempotency-Key must be 1-255 printable ASCII characters".into(),
            )
        })?;
    let mut hasher = Sha256::new();
    hasher.update(req.method().as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(req.path().as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    Ok(Some(IdempotencySpec {
        key: key.to_owned(),
        fingerprint: hex::encode(hasher.finalize()),
        status: status.as_u16(),
        render: renderer(),
    }))
}

/// A fresh outcome as `status` + the view; a replay as the stored status and body.
pub fn respond<T>(
    outcome: Outcome<T>,
    status: StatusCode,
    render: impl Fn(&T) -> String,
) -> HttpResponse {
    match outcome {
        Outcome::Fresh(value) => HttpResponse::build(status)
            .content_type("application/json")
            .body(render(&value)),
        Outcome::Replayed(record) => {
            let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
            HttpResponse::build(status)
                .content_type("application/json")
                .insert_header((REPLAYED_HEADER, "true"))
                .body(record.body)
        }
    }
}

/// Parses a JSON body with the API's error mapping (400 `invalid_json` / `invalid_request`).
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(super::errors::json_error)
}
