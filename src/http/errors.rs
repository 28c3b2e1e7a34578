//! One error type for every handler, mapped to RFC 9457 problem details in exactly one place.
//! A 5xx never carries internals: its cause is logged with the request id instead.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use payrail_actors::domain::{DomainError, FieldError};
use payrail_actors::ports::StoreError;
use payrail_actors::EngineError;
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";
const PROBLEM_BASE: &str = "https://payrail.dev/problems/";

tokio::task_local! {
    /// The current request's id, for problem bodies.
    pub static REQUEST_ID: String;
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("missing or invalid API key")]
    Unauthenticated,
    #[error("{0}")]
    InvalidSignature(String),
    #[error("signature timestamp outside the allowed window")]
    StaleSignature,
    #[error("this key's role may not do this")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    InvalidState(String),
    #[error("version conflict; reload and retry")]
    VersionConflict,
    #[error("a request with this idempotency key is still in flight")]
    IdempotencyInFlight,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    InvalidUrl(String),
    #[error("{detail}")]
    AmountExceedsRemaining { detail: String, max: i64 },
    #[error("{detail}")]
    RefundExceedsCaptured { detail: String, max: i64 },
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("engine overloaded; retry shortly")]
    Overloaded,
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("service temporarily unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

/// RFC 9457 problem details, as every error response carries them.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    #[schema(example = "https://payrail.dev/problems/not-found")]
    kind: String,
    title: &'a str,
    status: u16,
    /// Stable, machine-readable; see each response's description for the codes it may carry.
    #[schema(example = "not_found")]
    code: &'a str,
    detail: String,
    request_id: String,
    /// Field-level messages (validation failures and amount limits only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<super::schemas::FieldErrorSchema>)]
    errors: Vec<FieldError>,
}

impl ApiError {
    /// One value of every variant: the OpenAPI document checks its codes against these.
    pub fn every_variant() -> Vec<ApiError> {
        let s = String::new;
        vec![
            Self::InvalidJson(s()),
            Self::InvalidRequest(s()),
            Self::Unauthenticated,
            Self::InvalidSignature(s()),
            Self::StaleSignature,
            Self::Forbidden,
            Self::NotFound(""),
            Self::InvalidState(s()),
            Self::VersionConflict,
            Self::IdempotencyInFlight,
            Self::Validation(Vec::new()),
            Self::InvalidUrl(s()),
            Self::AmountExceedsRemaining {
                detail: s(),
                max: 0,
            },
            Self::RefundExceedsCaptured {
                detail: s(),
                max: 0,
            },
            Self::IdempotencyKeyReused,
            Self::PayloadTooLarge,
            Self::RateLimited {
                retry_after_secs: 1,
            },
            Self::Overloaded,
            Self::ShuttingDown,
            Self::Unavailable(s()),
            Self::Internal(s()),
        ]
    }

    /// `(status, code, title)` of each variant: the stable contract clients rely on.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::InvalidJson(_) => (S::BAD_REQUEST, "invalid_json", "Malformed JSON body"),
            Self::InvalidRequest(_) => (S::BAD_REQUEST, "invalid_request", "Invalid request"),
            Self::Unauthenticated => (S::UNAUTHORIZED, "unauthenticated", "Unauthenticated"),
            Self::InvalidSignature(_) => {
                (S::UNAUTHORIZED, "invalid_signature", "Invalid signature")
            }
            Self::StaleSignature => (S::UNAUTHORIZED, "stale_signature", "Stale signature"),
            Self::Forbidden => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (S::NOT_FOUND, "not_found", "Not found"),
            Self::InvalidState(_) => (S::CONFLICT, "invalid_state", "Invalid state"),
            Self::VersionConflict => (S::CONFLICT, "version_conflict", "Version conflict"),
            Self::IdempotencyInFlight => {
                (S::CONFLICT, "idempotency_in_flight", "Request in flight")
            }
            Self::Validation(_) => (
                S::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            Self::InvalidUrl(_) => (S::UNPROCESSABLE_ENTITY, "invalid_url", "URL not allowed"),
            Self::AmountExceedsRemaining { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "amount_exceeds_remaining",
                "Amount exceeds remaining balance",
            ),
            Self::RefundExceedsCaptured { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "refund_exceeds_captured",
                "Refund exceeds the captured amount",
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            Self::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited", "Rate limited"),
            Self::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded", "Overloaded"),
            Self::ShuttingDown => (S::SERVICE_UNAVAILABLE, "shutting_down", "Shutting down"),
            Self::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    fn detail(&self) -> String {
        match self {
            // Never leak internals: the cause is logged, the client gets a generic text.
            Self::Internal(cause) | Self::Unavailable(cause) => {
                tracing::error!(%cause, "request failed");
                self.to_string()
            }
            other => other.to_string(),
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Validation(errors) => errors.clone(),
            Self::InvalidUrl(message) => vec![FieldError {
                field: "url".into(),
                message: message.clone(),
            }],
            Self::AmountExceedsRemaining { max, .. } | Self::RefundExceedsCaptured { max, .. } => {
                vec![FieldError {
                    field: "amount".into(),
                    message: format!("must be ≤ {max}"),
                }]
            }
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::Overloaded | Self::ShuttingDown | Self::Unavailable(_) => Some(1),
            _ => None,
        }
    }
}

/// Builds a problem response for any status (used for errors raised outside handlers, too).
pub fn problem_response(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: String,
    errors: Vec<FieldError>,
) -> HttpResponse {
    let problem = Problem {
        kind: format!("{PROBLEM_BASE}{}", code.replace('_', "-")),
        title,
        status: status.as_u16(),
        code,
        detail,
        request_id: REQUEST_ID.try_with(Clone::clone).unwrap_or_default(),
        errors,
    };
    let body = serde_json::to_string(&problem).unwrap_or_default();
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
        .body(body)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, title) = self.parts();
        let mut response =
            problem_response(status, code, title, self.detail(), self.field_errors());
        if let Some(secs) = self.retry_after() {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Domain(domain) => domain.into(),
            EngineError::NotFound(what) => Self::NotFound(what),
            EngineError::Overloaded => Self::Overloaded,
            EngineError::VersionConflict => Self::VersionConflict,
            EngineError::IdempotencyInFlight => Self::IdempotencyInFlight,
            EngineError::IdempotencyKeyReused => Self::IdempotencyKeyReused,
            EngineError::Storage(store) => store.into(),
            EngineError::Unavailable(cause) => Self::Unavailable(cause),
            EngineError::ShuttingDown => Self::ShuttingDown,
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::Validation(errors) => Self::Validation(errors),
            DomainError::Overflow => Self::Validation(vec![FieldError {
                field: "lineItems".into(),
                message: "amounts overflow".into(),
            }]),
            DomainError::InvalidState(message) => Self::InvalidState(message),
            err @ DomainError::AmountExceedsRemaining { remaining, .. } => {
                Self::AmountExceedsRemaining {
                    detail: err.to_string(),
                    max: remaining,
                }
            }
            err @ DomainError::RefundExceedsCaptured { refundable, .. } => {
                Self::RefundExceedsCaptured {
                    detail: err.to_string(),
                    max: refundable,
                }
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::VersionConflict(_) => Self::VersionConflict,
            // Another request committed the same key first; the caller replays its response.
            StoreError::IdempotencyKeyTaken => Self::IdempotencyInFlight,
            StoreError::Corrupt(cause) => Self::Internal(cause),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// Maps JSON body errors: syntax → `invalid_json`, shape/type/unknown field → `invalid_request`.
pub fn json_error(err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::InvalidJson(err.to_string()),
        Category::Data => ApiError::InvalidRequest(super::redact::without_values(&err.to_string())),
    }
}
