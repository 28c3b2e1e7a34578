//! Budgets for failed authentications, per client address and per presented key id, and a
//! short memory of key ids the store does not know. A client that keeps presenting bad
//! credentials is answered 429 before its request costs a database query. Every table is
//! bounded; time is passed in, so the arithmetic is tested without a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use payrail_actors::domain::ApiKeyId;

/// Client addresses (or key ids) with failures still counting against them, per table. At the
/// bound, a new one is not tracked until a sweep frees room: memory stays bounded and clients
/// already tracked keep their budgets (see `record`).
pub const FAILURE_SOURCES_MAX: usize = 100_000;
/// Unknown key ids remembered at once.
pub const UNKNOWN_KEYS_MAX: usize = 10_000;
/// How long an unknown key id is answered 401 without asking the store again. Key ids are
/// random and minted by the server, so one that was unknown cannot become a real key.
pub const UNKNOWN_KEY_TTL_SECS: u64 = 60;
/// A full table is swept inline at most this often, so a flood of new sources cannot make
/// every request pay for a sweep.
const INLINE_SWEEP_MIN_INTERVAL_MS: u64 = 1_000;

/// Which budget refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureScope {
    Address,
    KeyId,
}

impl FailureScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::KeyId => "key_id",
        }
    }
}

/// A client refused because its failures spent its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub scope: FailureScope,
    pub retry_after_secs: u64,
}

/// Failures allowed at once, and how fast they are forgiven.
#[derive(Debug, Clone, Copy)]
struct Budget {
    burst: f64,
    per_sec: f64,
}

/// A token bucket: each failure takes a token; tokens come back at `per_sec`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn tokens_at(&self, budget: Budget, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * budget.per_sec).min(budget.burst)
    }
}

struct Entries<K> {
    buckets: HashMap<K, Bucket>,
    last_sweep: Option<Instant>,
}

/// One bounded table of buckets.
struct Table<K> {
    entries: Mutex<Entries<K>>,
    max: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can be left half-updated by a panic: carry on with what is there.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new(max: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
            max,
        }
    }

    /// Seconds until `key` may fail again, if its budget is spent.
    fn blocked(&self, key: &K, budget: Budget, now: Instant) -> Option<u64> {
        let tokens = lock(&self.entries).buckets.get(key)?.tokens_at(budget, now);
        (tokens < 1.0).then(|| ((1.0 - tokens) / budget.per_sec).ceil().max(1.0) as u64)
    }

    /// Takes a token from `key`'s bucket. Returns false when the table is full and `key` is
    /// not in it: the failure is not counted (and the caller says so in its metrics).
    fn record(&self, key: K, budget: Budget, now: Instant) -> bool {
        let mut entries = lock(&self.entries);
        if entries.buckets.len() >= self.max && !entries.buckets.contains_key(&key) {
            let recently = entries.last_sweep.is_some_and(|at| {
                now.saturating_duration_since(at)
                    < Duration::from_millis(INLINE_SWEEP_MIN_INTERVAL_MS)
            });
            if recently {
                return false;
            }
            sweep_entries(&mut entries, budget, now);
            if entries.buckets.len() >= self.max {
                return false;
            }
        }
        let bucket = entries.buckets.entry(key).or_insert(Bucket {
            tokens: budget.burst,
            updated: now,
        });
        // Concurrent failures may overdraw a bucket; it stops at empty.
        bucket.tokens = (bucket.tokens_at(budget, now) - 1.0).max(0.0);
        bucket.updated = now;
        true
    }

    fn sweep(&self, budget: Budget, now: Instant) {
        sweep_entries(&mut lock(&self.entries), budget, now);
    }

    fn len(&self) -> usize {
        lock(&self.entries).buckets.len()
    }
}

/// Forgets buckets that have refilled: they are no different from a source never seen.
fn sweep_entries<K: Hash + Eq>(entries: &mut Entries<K>, budget: Budget, now: Instant) {
    entries
        .buckets
        .retain(|_, bucket| bucket.tokens_at(budget, now) < budget.burst);
    entries.buckets.shrink_to_fit();
    entries.last_sweep = Some(now);
}

/// The limiter's key for a client address: IPv6 clients usually hold a whole /64, so that is
/// what one budget covers.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Failure budgets per client address and per key id, and the unknown-key memory.
pub struct FailureLimiter {
    budget: Budget,
    addresses: Table<IpAddr>,
    key_ids: Table<ApiKeyId>,
    unknown: Mutex<HashMap<ApiKeyId, Instant>>,
}

impl FailureLimiter {
    /// `burst` failures at once, then `per_min` a minute (both at least 1).
    pub fn new(burst: u32, per_min: u32) -> Self {
        Self::bounded(burst, per_min, FAILURE_SOURCES_MAX)
    }

    fn bounded(burst: u32, per_min: u32, max: usize) -> Self {
        Self {
            budget: Budget {
                burst: f64::from(burst.max(1)),
                per_sec: f64::from(per_min.max(1)) / 60.0,
            },
            addresses: Table::new(max),
            key_ids: Table::new(max),
            unknown: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses a client whose address, or the key id it presents, has spent its budget.
    pub fn admit(
        &self,
        address: Option<IpAddr>,
        key_id: Option<&ApiKeyId>,
        now: Instant,
    ) -> Result<(), Throttled> {
        let by_address = address.and_then(|ip| {
            let wait = self.addresses.blocked(&address_key(ip), self.budget, now)?;
            Some((FailureScope::Address, wait))
        });
        let by_key = || {
            let wait = self.key_ids.blocked(key_id?, self.budget, now)?;
            Some((FailureScope::KeyId, wait))
        };
        match by_address.or_else(by_key) {
            Some((scope, retry_after_secs)) => Err(Throttled {
                scope,
                retry_after_secs,
            }),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication against its address and key id. Returns false if a
    /// table was full and the failure went uncounted there.
    pub fn record(&self, address: Option<IpAddr>, key_id: Option<ApiKeyId>, now: Instant) -> bool {
        let by_address =
            address.is_none_or(|ip| self.addresses.record(address_key(ip), self.budget, now));
        let by_key = key_id.is_none_or(|id| self.key_ids.record(id, self.budget, now));
        by_address && by_key
    }

    /// Whether the store recently said it has no key with this id.
    pub fn is_unknown(&self, key_id: &ApiKeyId, now: Instant) -> bool {
        lock(&self.unknown)
            .get(key_id)
            .is_some_and(|expires| now < *expires)
    }

    /// Remembers that the store has no key with this id, while there is room.
    pub fn remember_unknown(&self, key_id: ApiKeyId, now: Instant) {
        let mut unknown = lock(&self.unknown);
        if unknown.len() >= UNKNOWN_KEYS_MAX {
            unknown.retain(|_, expires| now < *expires);
        }
        if unknown.len() < UNKNOWN_KEYS_MAX {
            unknown.insert(key_id, now + Duration::from_secs(UNKNOWN_KEY_TTL_SECS));
        }
    }

    /// Drops everything that no longer changes an answer: refilled buckets, expired ids.
    pub fn sweep(&self, now: Instant) {
        self.addresses.sweep(self.budget, now);
        self.key_ids.sweep(self.budget, now);
        let mut unknown = lock(&self.unknown);
        unknown.retain(|_, expires| now < *expires);
        unknown.shrink_to_fit();
    }

    /// Entries held: (addresses, key ids, unknown key ids).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.addresses.len(),
            self.key_ids.len(),
            lock(&self.unknown).len(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_spent_address_waits_for_its_budget_to_refill() {
        let limiter = FailureLimiter::new(3, 60);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.admit(ip("10.0.0.1"), None, t0).is_ok());
            assert!(limiter.record(ip("10.0.0.1"), None, t0));
        }
        let refused = limiter.admit(ip("10.0.0.1"), None, t0).unwrap_err();
        assert_eq!(
            (refused.scope, refused.retry_after_secs),
            (FailureScope::Address, 1)
        );
        assert!(limiter.admit(ip("10.0.0.2"), None, t0).is_ok());
        // One a second comes back.
        assert!(limiter
            .admit(ip("10.0.0.1"), None, t0 + Duration::from_millis(999))
            .is_err());
        assert!(limiter
            .admit(ip("10.0.0.1"), None, t0 + Duration::from_secs(1))
            .is_ok());
    }

    #[test]
    fn a_key_id_is_limited_whatever_the_address() {
        let limiter = FailureLimiter::new(2, 1);
        let (key, t0) = (ApiKeyId::new(), Instant::now());
        limiter.record(ip("10.0.0.1"), Some(key), t0);
        limiter.record(ip("10.0.0.2"), Some(key), t0);
        let refused = limiter.admit(ip("10.0.0.3"), Some(&key), t0).unwrap_err();
        assert_eq!(refused.scope, FailureScope::KeyId);
        assert_eq!(refused.retry_after_secs, 60, "one a minute");
        assert!(limiter
            .admit(ip("10.0.0.3"), Some(&ApiKeyId::new()), t0)
            .is_ok());
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_prefix() {
        let limiter = FailureLimiter::new(1, 1);
        let t0 = Instant::now();
        limiter.record(ip("2001:db8:1:2::1"), None, t0);
        assert!(limiter.admit(ip("2001:db8:1:2:ffff::9"), None, t0).is_err());
        assert!(limiter.admit(ip("2001:db8:1:3::1"), None, t0).is_ok());
        limiter.record(ip("::ffff:10.0.0.7"), None, t0);
        assert!(limiter.admit(ip("10.0.0.7"), None, t0).is_err());
    }

    #[test]
    fn tables_stay_bounded_and_sweeps_forget_refilled_sources() {
        let limiter = FailureLimiter::bounded(2, 60, 100);
        let t0 = Instant::now();
        for i in 0..1_000u32 {
            let address = IpAddr::from(i.to_be_bytes());
            limiter.record(Some(address), Some(ApiKeyId::new()), t0);
        }
        let (addresses, key_ids, _) = limiter.sizes();
        assert_eq!((addresses, key_ids), (100, 100));
        // Sources already tracked keep their budget while the table is full.
        let first = IpAddr::from(0u32.to_be_bytes());
        limiter.record(Some(first), None, t0);
        assert!(limiter.admit(Some(first), None, t0).is_err());
        // Once refilled (two seconds at one a second) they are forgotten.
        limiter.sweep(t0 + Duration::from_secs(2));
        assert_eq!(limiter.sizes(), (0, 0, 0));
    }

    #[test]
    fn unknown_key_ids_are_remembered_for_a_while_and_bounded() {
        let limiter = FailureLimiter::new(1, 1);
        let (key, t0) = (ApiKeyId::new(), Instant::now());
        assert!(!limiter.is_unknown(&key, t0));
        limiter.remember_unknown(key, t0);
        assert!(limiter.is_unknown(&key, t0 + Duration::from_secs(UNKNOWN_KEY_TTL_SECS - 1)));
        assert!(!limiter.is_unknown(&key, t0 + Duration::from_secs(UNKNOWN_KEY_TTL_SECS)));
        for _ in 0..UNKNOWN_KEYS_MAX + 10 {
            limiter.remember_unknown(ApiKeyId::new(), t0);
        }
        assert_eq!(limiter.sizes().2, UNKNOWN_KEYS_MAX);
        limiter.sweep(t0 + Duration::from_secs(UNKNOWN_KEY_TTL_SECS));
        assert_eq!(limiter.sizes().2, 0);
    }
}
