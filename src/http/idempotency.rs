//! `Idempotency-Key` handling: the request fingerprint, the stored-response renderer, turning
//! an engine outcome (fresh or replayed) into a response, and [`Once`] for the admin requests
//! that run outside the engine.

use std::future::Future;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payrail_actors::claims::{Claim, Claims};
use payrail_actors::engine::{Context, IdempotencySpec, Outcome, Rendered, Renderer};
use payrail_actors::ports::IdempotencyRecord;

use super::auth::TenantKey;
use super::errors::ApiError;
use super::{views, AppState};
use crate::keys::Keys;
use crate::store::{Db, ScopedResponse};

pub const HEADER: &str = "Idempotency-Key";

/// The body of a POST that takes no input: it only feeds the idempotency fingerprint. (An
/// alias, so the OpenAPI generator doesn't document raw bytes as a request body.)
pub type FingerprintOnly = actix_web::web::Bytes;
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
    let Some(key) = header_key(req)? else {
        return Ok(None);
    };
    let keys = keys(req)?;
    Ok(Some(IdempotencySpec {
        key: digest(&keys, key),
        fingerprint: fingerprint(&keys, req, body),
        status: status.as_u16(),
        render: renderer(),
    }))
}

/// Refuses a malformed `Idempotency-Key` (400) on a request that needs no replay.
pub fn check_header(req: &HttpRequest) -> Result<(), ApiError> {
    header_key(req).map(drop)
}

/// The `Idempotency-Key` header: absent, or 1-255 printable ASCII characters (else 400).
fn header_key(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= KEY_MAX_CHARS
                && k.bytes().all(|b| (0x20..0x7f).contains(&b))
        })
        .map(Some)
        .ok_or_else(|| {
            ApiError::InvalidRequest(
                "Idempotency-Key must be 1-255 printable ASCII characters".into(),
            )
        })
}

/// Method, path and body, as a keyed digest (the body may hold a card: see
/// `payments::fingerprint_body`): a different request under the same key is refused.
fn fingerprint(keys: &Keys, req: &HttpRequest, body: &[u8]) -> String {
    let mut request = Vec::with_capacity(body.len() + 64);
    request.extend_from_slice(req.method().as_str().as_bytes());
    request.push(b' ');
    request.extend_from_slice(req.path().as_bytes());
    request.push(b'\n');
    request.extend_from_slice(body);
    keys.digest("request fingerprint", &request)
}

/// The deployment's keys, from the application state.
pub fn keys(req: &HttpRequest) -> Result<Arc<Keys>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|state| state.keys.clone())
        .ok_or_else(|| ApiError::Internal("no application state".into()))
}

/// The engine context of a write: the caller, with the idempotency spec if the request
/// carries a key (a malformed key is a 400).
pub fn context(
    auth: &TenantKey,
    req: &HttpRequest,
    body: &[u8],
    status: StatusCode,
) -> Result<Context, ApiError> {
    let ctx = Context::new(auth.tenant, auth.actor());
    Ok(match spec(req, body, status)? {
        Some(spec) => ctx.with_idempotency(spec),
        None => ctx,
    })
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
        Outcome::Replayed(record) => Replay {
            status: StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK),
            body: record.body,
        }
        .respond(),
    }
}

/// Parses a JSON body with the API's error mapping (400 `invalid_json` / `invalid_request`);
/// an integral number such as `1443.0` reads as an integer.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    super::json_body::parse(body)
}

/// The stored form of an `Idempotency-Key`: a keyed digest. Clients sometimes put meaning into
/// keys, and the key is part of what opens a sealed response (see [`Once`]), so it is never
/// stored.
fn digest(keys: &Keys, raw: &str) -> String {
    keys.digest("idempotency key", raw.as_bytes())
}

/// Keys being run by this node's admin requests, as (scope, digest): a second request with a
/// key still running is refused with 409 `idempotency_in_flight` instead of waiting.
pub type InFlight = Claims<(String, String)>;

/// Idempotency for the requests that run outside the engine: tenant creation, API key
/// creation, webhook-secret rotation. Their responses hold secrets shown once, which the
/// database otherwise keeps only as hashes (API keys). So the stored response is sealed with
/// ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the client's `Idempotency-Key`,
/// its scope and the request fingerprint; the `Idempotency-Key` itself is stored only as a
/// digest. The same key and body open it again; the database alone cannot, as long as the
/// key is unguessable (a random UUID, as clients should send anyway).
pub struct Once {
    raw: String,
    fingerprint: String,
    /// Holds the key's (scope, digest) on this node while the request runs.
    claim: Claim<(String, String)>,
    keys: Arc<Keys>,
}

/// A response stored by an earlier request with the same key, opened.
pub struct Replay {
    pub status: StatusCode,
    pub body: String,
}

impl Replay {
    pub fn respond(self) -> HttpResponse {
        HttpResponse::build(self.status)
            .content_type("application/json")
            .insert_header((REPLAYED_HEADER, "true"))
            .body(self.body)
    }
}

/// What a request under [`Once::run`] answered: its own response, or an earlier one's.
pub enum Answer {
    Fresh(HttpResponse),
    Replayed(Replay),
}

impl Answer {
    pub fn respond(self) -> HttpResponse {
        match self {
            Self::Fresh(response) => response,
            Self::Replayed(replay) => replay.respond(),
        }
    }
}

impl Once {
    /// Claims the request's key on this node; `None` without a key. A malformed key is a 400,
    /// a key still running here a 409.
    pub fn begin(
        req: &HttpRequest,
        body: &[u8],
        scope: &str,
        in_flight: &Arc<InFlight>,
    ) -> Result<Option<Self>, ApiError> {
        let Some(raw) = header_key(req)? else {
            return Ok(None);
        };
        let keys = keys(req)?;
        let claim = in_flight
            .claim((scope.to_owned(), digest(&keys, raw)))
            .ok_or(ApiError::IdempotencyInFlight)?;
        Ok(Some(Self {
            raw: raw.to_owned(),
            fingerprint: fingerprint(&keys, req, body),
            claim,
            keys,
        }))
    }

    /// Answers an earlier request's stored response if there is one; otherwise runs `effect`,
    /// which must write the [`ScopedResponse`] it is handed in the same transaction as its
    /// changes, and answers `status` with `body`. A key reused for another request is a 422;
    /// a key another node committed first while this one ran is replayed from storage.
    pub async fn run<F, Fut>(
        once: Option<&Self>,
        db: &Db,
        status: StatusCode,
        body: String,
        at: DateTime<Utc>,
        effect: F,
    ) -> Result<Answer, ApiError>
    where
        F: FnOnce(Option<ScopedResponse>) -> Fut,
        Fut: Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        if let Some(once) = once {
            if let Some(replay) = once.earlier(db).await? {
                return Ok(Answer::Replayed(replay));
            }
        }
        let response = once.map(|o| o.keep(status, &body, at)).transpose()?;
        match (super::detached(effect(response)).await, once) {
            (Ok(()), _) => Ok(Answer::Fresh(
                HttpResponse::build(status)
                    .content_type("application/json")
                    .body(body),
            )),
            (Err(ApiError::IdempotencyInFlight), Some(once)) => once
                .earlier(db)
                .await?
                .map(Answer::Replayed)
                .ok_or(ApiError::IdempotencyInFlight),
            (Err(e), _) => Err(e),
        }
    }

    /// The response an earlier request stored under this key, if any (422 if that request
    /// was a different one).
    pub async fn earlier(&self, db: &Db) -> Result<Option<Replay>, ApiError> {
        let (db, scope, key) = (db.clone(), self.scope().to_owned(), self.key().to_owned());
        let Some(record) =
            super::detached(async move { Ok(db.stored_response(&scope, &key).await?) }).await?
        else {
            return Ok(None);
        };
        if record.fingerprint != self.fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        let body = self.open(&record.body)?;
        let status = StatusCode::from_u16(record.status)
            .map_err(|_| ApiError::Internal(format!("stored status {}", record.status)))?;
        Ok(Some(Replay { status, body }))
    }

    /// The sealed response, ready to be written with the effect.
    pub fn keep(
        &self,
        status: StatusCode,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<ScopedResponse, ApiError> {
        let sealed = self
            .keys
            .seal(self.raw.as_bytes(), &self.seal_context(), body.as_bytes());
        Ok(ScopedResponse {
            scope: self.scope().to_owned(),
            record: IdempotencyRecord {
                key: self.key().to_owned(),
                fingerprint: self.fingerprint.clone(),
                status: status.as_u16(),
                body: sealed,
                created_at: at,
            },
        })
    }

    fn open(&self, stored: &str) -> Result<String, ApiError> {
        let corrupt =
            |e: String| ApiError::Internal(format!("a stored response cannot be opened: {e}"));
        let plain = self
            .keys
            .open(self.raw.as_bytes(), &self.seal_context(), stored)
            .map_err(|e| corrupt(e.to_string()))?;
        String::from_utf8(plain).map_err(|_| corrupt("not UTF-8".into()))
    }

    /// What a stored response is sealed for: its scope and request.
    fn seal_context(&self) -> String {
        format!("replay\n{}\n{}", self.scope(), self.fingerprint)
    }

    fn scope(&self) -> &str {
        &self.claim.key().0
    }

    /// The key as stored: its digest.
    fn key(&self) -> &str {
        &self.claim.key().1
    }
}
