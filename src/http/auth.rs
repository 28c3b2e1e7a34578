//! Authentication and authorization: tenant API keys (`prk_<keyId>_<secret>`, only a hash
//! stored), roles and the platform admin token. Every failed authentication spends a budget of
//! its client address (and of the key id it named); a spent budget is answered 429 before the
//! store is asked. An authenticated request then spends its key's and its tenant's budgets.

mod failures;
mod limits;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Instant;

use actix_web::{web, FromRequest, HttpRequest};
use payrail_actors::domain::{ApiKeyId, TenantId};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use failures::{FailureScope, Throttled};
pub use limits::{start_sweeper, BudgetScope, Limits, RateLimiter};

use super::errors::ApiError;
use super::{detached, AppState};

pub const KEY_PREFIX: &str = "prk_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "operator" => Ok(Self::Operator),
            "admin" => Ok(Self::Admin),
            _ => Err(()),
        }
    }
}

/// A request authenticated with a tenant API key.
#[derive(Debug, Clone)]
pub struct TenantKey {
    pub tenant: TenantId,
    pub key_id: ApiKeyId,
    pub role: Role,
}

impl TenantKey {
    /// Refuses the request unless the key's role is at least `min`.
    pub fn require(&self, min: Role) -> Result<(), ApiError> {
        if self.role >= min {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    pub fn actor(&self) -> String {
        self.key_id.to_string()
    }
}

/// SHA-256 of a key secret, hex: what the store keeps.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret with a prefix, e.g. `whsec_…`.
pub fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Splits `prk_<keyId>_<secret>`; the key id itself is `key_<26 chars>`.
fn parse_key(token: &str) -> Option<(ApiKeyId, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let id_len = ApiKeyId::PREFIX.len() + 1 + 26;
    let (id, secret) = (rest.get(..id_len)?, rest.get(id_len..)?.strip_prefix('_')?);
    if secret.is_empty() {
        return None;
    }
    Some((id.parse().ok()?, secret))
}

/// Why an authentication failed, as the metrics label it.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// No bearer token, or not shaped like a key.
    Malformed,
    /// The store has no key with that id.
    UnknownKey,
    /// The store was asked about that id moments ago.
    UnknownKeyCached,
    WrongSecret,
    Revoked,
    AdminToken,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::UnknownKeyCached => "unknown_key_cached",
            Self::WrongSecret => "wrong_secret",
            Self::Revoked => "revoked",
            Self::AdminToken => "admin_token",
        }
    }
}

/// The gate every credential passes first: refuses a client whose failures spent its budget.
fn admit(
    state: &AppState,
    address: Option<IpAddr>,
    key_id: Option<&ApiKeyId>,
    now: Instant,
) -> Result<(), ApiError> {
    state
        .limiter
        .failures()
        .admit(address, key_id, now)
        .map_err(|throttled| {
            state.metrics.rate_limited(throttled.scope.as_str());
            ApiError::RateLimited {
                retry_after_secs: throttled.retry_after_secs,
            }
        })
}

/// Counts a failure against the client's address and, for a real key id, against that id;
/// answers 401.
fn failed(
    state: &AppState,
    address: Option<IpAddr>,
    key_id: Option<ApiKeyId>,
    failure: Failure,
    now: Instant,
) -> ApiError {
    state.metrics.auth_failure(failure.as_str());
    if !state.limiter.failures().record(address, key_id, now) {
        state.metrics.auth_failure("untracked");
    }
    ApiError::Unauthenticated
}

impl FromRequest for TenantKey {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let address = state.as_ref().and_then(|s| s.limiter.client_address(req));
        let parsed = bearer(req)
            .and_then(parse_key)
            .map(|(id, s)| (id, s.to_owned()));
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal("no app state".into()))?;
            Ok(authenticate(&state, address, parsed).await?)
        })
    }
}

async fn authenticate(
    state: &web::Data<AppState>,
    address: Option<IpAddr>,
    parsed: Option<(ApiKeyId, String)>,
) -> Result<TenantKey, ApiError> {
    let now = Instant::now();
    admit(state, address, parsed.as_ref().map(|(id, _)| id), now)?;
    let Some((key_id, secret)) = parsed else {
        return Err(failed(state, address, None, Failure::Malformed, now));
    };
    // Unknown ids count against the address only: the memory of them already spares the
    // store, and random ids must not crowd real ones out of the key-id table.
    if state.limiter.failures().is_unknown(&key_id, now) {
        return Err(failed(state, address, None, Failure::UnknownKeyCached, now));
    }
    let db = state.db.clone();
    let Some(row) = detached(async move { Ok(db.find_api_key(key_id).await?) }).await? else {
        state.limiter.failures().remember_unknown(key_id, now);
        return Err(failed(state, address, None, Failure::UnknownKey, now));
    };
    let presented = hash_secret(&secret);
    let matches: bool = presented
        .as_bytes()
        .ct_eq(row.secret_hash.as_bytes())
        .into();
    if !matches {
        return Err(failed(
            state,
            address,
            Some(key_id),
            Failure::WrongSecret,
            now,
        ));
    }
    if row.revoked_at.is_some() {
        return Err(failed(state, address, Some(key_id), Failure::Revoked, now));
    }
    let role = row.role.parse().map_err(|_| ApiError::Unauthenticated)?;
    state
        .limiter
        .check(&key_id, &row.tenant_id)
        .map_err(|(scope, error)| {
            state.metrics.rate_limited(scope.as_str());
            error
        })?;
    Ok(TenantKey {
        tenant: row.tenant_id,
        key_id,
        role,
    })
}

/// A request authenticated with the platform admin token.
pub struct PlatformAdmin;

impl FromRequest for PlatformAdmin {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<AppState>>() {
            Some(state) => admin(state, req).map_err(Into::into),
            None => Err(ApiError::Internal("no app state".into()).into()),
        };
        std::future::ready(result)
    }
}

fn admin(state: &AppState, req: &HttpRequest) -> Result<PlatformAdmin, ApiError> {
    let now = Instant::now();
    let address = state.limiter.client_address(req);
    admit(state, address, None, now)?;
    let ok = match (&state.settings.admin_token, bearer(req)) {
        (Some(token), Some(presented)) => token
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into(),
        _ => false,
    };
    if ok {
        Ok(PlatformAdmin)
    } else {
        Err(failed(state, address, None, Failure::AdminToken, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_refuses_malformed_ones() {
        let id = ApiKeyId::new();
        let token = format!("prk_{id}_secret123");
        let (parsed, secret) = parse_key(&token).unwrap();
        assert_eq!((parsed, secret), (id, "secret123"));
        for bad in [
            "",
            "prk_",
            &format!("prk_{id}"),
            &format!("prk_{id}_"),
            "prk_key_x_y",
            &format!("xyz_{id}_s"),
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        let key = TenantKey {
            tenant: TenantId::new(),
            key_id: ApiKeyId::new(),
            role: Role::Viewer,
        };
        assert!(key.require(Role::Operator).is_err());
        assert!(key.require(Role::Viewer).is_ok());
    }
}
