//! Keys claimed by requests in progress on this process: a second claim of a key still held
//! is refused, and a claim is given up when its holder drops it, however the request ends.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

/// The keys held, shared by everyone who may claim one.
pub struct Claims<K>(Mutex<HashSet<K>>);

impl<K> Default for Claims<K> {
    fn default() -> Self {
        Self(Mutex::new(HashSet::new()))
    }
}

impl<K: Eq + Hash + Clone> Claims<K> {
    /// Holds `key` until the returned claim is dropped; `None` if it is held already.
    pub fn claim(self: &Arc<Self>, key: K) -> Option<Claim<K>> {
        self.held().insert(key.clone()).then(|| Claim {
            claims: Arc::clone(self),
            key,
        })
    }

    fn held(&self) -> MutexGuard<'_, HashSet<K>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A key held; dropping it gives the key up.
pub struct Claim<K: Eq + Hash + Clone> {
    claims: Arc<Claims<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Claim<K> {
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Eq + Hash + Clone> Drop for Claim<K> {
    fn drop(&mut self) {
        self.claims.held().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_once_until_its_claim_is_dropped() {
        let claims = Arc::new(Claims::default());
        let first = claims.claim("k");
        assert!(first.is_some());
        assert!(claims.claim("k").is_none());
        let other = claims.claim("j");
        assert!(other.is_some());
        drop(first);
        assert!(claims.claim("k").is_some());
        drop(other);
        assert!(claims.claim("j").is_some());
    }
}
