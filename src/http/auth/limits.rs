//! Request budgets: a token bucket per API key and one per tenant shared by all its keys (so
//! minting keys does not multiply a tenant's rate), plus the failed-authentication budgets.
//! Idle entries are swept periodically, so memory follows the clients active in the last few
//! seconds, not every key ever seen.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};
use payrail_actors::domain::{ApiKeyId, TenantId};

use super::failures::FailureLimiter;
use crate::config::Settings;
use crate::http::errors::ApiError;
use crate::http::AppState;

/// How often idle entries are dropped from every limiter table.
pub const LIMITER_SWEEP_INTERVAL_SECS: u64 = 10;

/// The budgets, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub key_per_sec: u32,
    pub key_burst: u32,
    pub tenant_per_sec: u32,
    pub tenant_burst: u32,
    pub auth_failure_burst: u32,
    pub auth_failure_per_min: u32,
    /// Whether the client address comes from `X-Forwarded-For` (see [`client_address`]).
    pub trust_forwarded_for: bool,
}

impl From<&Settings> for Limits {
    fn from(settings: &Settings) -> Self {
        Self {
            key_per_sec: settings.rate_limit_per_sec,
            key_burst: settings.rate_limit_burst,
            tenant_per_sec: settings.tenant_rate_limit_per_sec,
            tenant_burst: settings.tenant_rate_limit_burst,
            auth_failure_burst: settings.auth_failure_burst,
            auth_failure_per_min: settings.auth_failure_per_min,
            trust_forwarded_for: settings.trust_forwarded_for,
        }
    }
}

/// Which request budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetScope {
    Key,
    Tenant,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Tenant => "tenant",
        }
    }
}

type Keyed<K, C> = Governor<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

fn quota(per_sec: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

fn keyed<K: Hash + Eq + Clone, C: Clock + Clone>(quota: Quota, clock: &C) -> Keyed<K, C> {
    Governor::new(quota, DefaultKeyedStateStore::default(), clock.clone())
}

/// Every budget the API enforces. Generic over the clock so tests can move time by hand.
pub struct RateLimiter<C: Clock + Clone = DefaultClock> {
    keys: Keyed<ApiKeyId, C>,
    tenants: Keyed<TenantId, C>,
    clock: C,
    failures: FailureLimiter,
    trust_forwarded_for: bool,
}

impl RateLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self::with_clock(limits, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(limits: &Limits, clock: C) -> Self {
        Self {
            keys: keyed(quota(limits.key_per_sec, limits.key_burst), &clock),
            tenants: keyed(quota(limits.tenant_per_sec, limits.tenant_burst), &clock),
            failures: FailureLimiter::new(limits.auth_failure_burst, limits.auth_failure_per_min),
            trust_forwarded_for: limits.trust_forwarded_for,
            clock,
        }
    }

    /// Spends one request of the key's budget and one of its tenant's.
    pub fn check(&self, key: &ApiKeyId, tenant: &TenantId) -> Result<(), (BudgetScope, ApiError)> {
        let refused = |scope, not_until: governor::NotUntil<C::Instant>| {
            let wait = not_until.wait_time_from(self.clock.now());
            let error = ApiError::RateLimited {
                // Whole seconds, rounded up (and at least one): a client that waits that long
                // gets through.
                retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            };
            (scope, error)
        };
        self.keys
            .check_key(key)
            .map_err(|n| refused(BudgetScope::Key, n))?;
        self.tenants
            .check_key(tenant)
            .map_err(|n| refused(BudgetScope::Tenant, n))
    }

    pub fn failures(&self) -> &FailureLimiter {
        &self.failures
    }

    /// The client's address: the peer, or with `trust_forwarded_for` the last entry of the
    /// last `X-Forwarded-For` header (the one the proxy in front of us appended).
    pub fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            let forwarded = req
                .headers()
                .get_all("x-forwarded-for")
                .last()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
        req.peer_addr().map(|addr| addr.ip())
    }

    /// Drops entries that no longer change an answer.
    pub fn sweep(&self, now: Instant) {
        self.keys.retain_recent();
        self.keys.shrink_to_fit();
        self.tenants.retain_recent();
        self.tenants.shrink_to_fit();
        self.failures.sweep(now);
    }

    /// Entries held by each table, by name, for the metrics.
    pub fn sizes(&self) -> [(&'static str, usize); 5] {
        let (addresses, key_ids, unknown) = self.failures.sizes();
        [
            ("key", self.keys.len()),
            ("tenant", self.tenants.len()),
            ("failed_address", addresses),
            ("failed_key_id", key_ids),
            ("unknown_key_id", unknown),
        ]
    }
}

/// Sweeps the limiter every [`LIMITER_SWEEP_INTERVAL_SECS`] until the server drains.
pub fn start_sweeper(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(LIMITER_SWEEP_INTERVAL_SECS));
        loop {
            ticker.tick().await;
            if state.draining.load(Ordering::SeqCst) {
                return;
            }
            state.limiter.sweep(Instant::now());
            state.metrics.limiter_entries(&state.limiter.sizes());
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limits(key_burst: u32, tenant_burst: u32) -> Limits {
        Limits {
            key_per_sec: 1,
            key_burst,
            tenant_per_sec: 1,
            tenant_burst,
            auth_failure_burst: 1,
            auth_failure_per_min: 1,
            trust_forwarded_for: false,
        }
    }

    #[test]
    fn a_tenants_keys_share_its_budget() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(&limits(10, 4), clock.clone());
        let (tenant, other) = (TenantId::new(), TenantId::new());
        let keys: Vec<ApiKeyId> = (0..4).map(|_| ApiKeyId::new()).collect();
        for key in &keys {
            assert!(limiter.check(key, &tenant).is_ok());
        }
        let (scope, error) = limiter.check(&ApiKeyId::new(), &tenant).unwrap_err();
        assert_eq!(scope, BudgetScope::Tenant);
        assert!(matches!(
            error,
            ApiError::RateLimited {
                retry_after_secs: 1
            }
        ));
        assert!(limiter.check(&ApiKeyId::new(), &other).is_ok());
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check(&keys[0], &tenant).is_ok());
    }

    #[test]
    fn a_key_keeps_its_own_budget_within_the_tenants() {
        let limiter = RateLimiter::with_clock(&limits(2, 100), FakeRelativeClock::default());
        let (tenant, key) = (TenantId::new(), ApiKeyId::new());
        assert!(limiter.check(&key, &tenant).is_ok());
        assert!(limiter.check(&key, &tenant).is_ok());
        assert_eq!(
            limiter.check(&key, &tenant).unwrap_err().0,
            BudgetScope::Key
        );
        assert!(limiter.check(&ApiKeyId::new(), &tenant).is_ok());
    }

    #[test]
    fn the_client_address_is_the_peer_unless_forwarded_for_is_trusted() {
        let request = || {
            actix_web::test::TestRequest::default()
                .peer_addr("192.0.2.1:5000".parse().unwrap())
                .insert_header(("x-forwarded-for", "203.0.113.7, 198.51.100.2"))
                .to_http_request()
        };
        let mut settings = limits(1, 1);
        let peer = RateLimiter::new(&settings).client_address(&request());
        assert_eq!(peer, "192.0.2.1".parse().ok());
        settings.trust_forwarded_for = true;
        let limiter = RateLimiter::new(&settings);
        // The last entry is the one our proxy appended; earlier ones are the client's say.
        assert_eq!(
            limiter.client_address(&request()),
            "198.51.100.2".parse().ok()
        );
        let garbage = actix_web::test::TestRequest::default()
            .peer_addr("192.0.2.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "not-an-address"))
            .to_http_request();
        assert_eq!(limiter.client_address(&garbage), "192.0.2.1".parse().ok());
    }

    #[test]
    fn sweeps_forget_idle_keys_and_tenants() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(&limits(2, 2), clock.clone());
        for _ in 0..1_000 {
            let _ = limiter.check(&ApiKeyId::new(), &TenantId::new());
        }
        let held = |limiter: &RateLimiter<FakeRelativeClock>| {
            limiter.sizes()[..2].iter().map(|(_, n)| n).sum::<usize>()
        };
        assert_eq!(held(&limiter), 2_000);
        // Still inside their window: kept, since forgetting them would restore their budget.
        limiter.sweep(Instant::now());
        assert_eq!(held(&limiter), 2_000);
        clock.advance(Duration::from_secs(2));
        limiter.sweep(Instant::now());
        assert_eq!(held(&limiter), 0);
    }
}
