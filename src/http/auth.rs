//! Authentication and authorization: tenant API keys (`prk_<keyId>_<secret>`, only a hash
//! stored), roles, the platform admin token, and the per-key token-bucket rate limit.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::str::FromStr;

use actix_web::{web, FromRequest, HttpRequest};
use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};
use payrail_actors::domain::{ApiKeyId, TenantId};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

impl FromRequest for TenantKey {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let parsed = bearer(req)
            .and_then(parse_key)
            .map(|(id, s)| (id, s.to_owned()));
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal("no app state".into()))?;
            let (key_id, secret) = parsed.ok_or(ApiError::Unauthenticated)?;
            let db = state.db.clone();
            let row = detached(async move { Ok(db.find_api_key(key_id).await?) })
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            let presented = hash_secret(&secret);
            let matches: bool = presented
                .as_bytes()
                .ct_eq(row.secret_hash.as_bytes())
                .into();
            if !matches || row.revoked_at.is_some() {
                return Err(ApiError::Unauthenticated.into());
            }
            let role = row.role.parse().map_err(|_| ApiError::Unauthenticated)?;
            state.limiter.check(&key_id)?;
            Ok(TenantKey {
                tenant: row.tenant_id,
                key_id,
                role,
            })
        })
    }
}

/// A request authenticated with the platform admin token.
pub struct PlatformAdmin;

impl FromRequest for PlatformAdmin {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let configured = req
            .app_data::<web::Data<AppState>>()
            .and_then(|s| s.settings.admin_token.clone());
        let result = match (configured, bearer(req)) {
            (Some(token), Some(presented)) => {
                let ok: bool = token
                    .expose_secret()
                    .as_bytes()
                    .ct_eq(presented.as_bytes())
                    .into();
                if ok {
                    Ok(PlatformAdmin)
                } else {
                    Err(ApiError::Unauthenticated.into())
                }
            }
            _ => Err(ApiError::Unauthenticated.into()),
        };
        std::future::ready(result)
    }
}

/// A token bucket per API key.
pub struct RateLimiter {
    inner: Governor<ApiKeyId, DefaultKeyedStateStore<ApiKeyId>, DefaultClock>,
}

impl RateLimiter {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            inner: Governor::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    pub fn check(&self, key: &ApiKeyId) -> Result<(), ApiError> {
        self.inner.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }
        })
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
