//! API keys as authentication reads them, cached so that a request does not read its key from
//! the database every time, without ever letting a revoked key back in:
//! - revoking a key on this node drops it from this node's cache as the revocation commits;
//! - on PostgreSQL the revoking transaction also notifies every node (`notify.rs`); each
//!   node's listener drops the key when the notification arrives. While a node's listener is not
//!   connected (not started, reconnecting), it might miss one, so that node caches nothing;
//! - a read that began before a revocation was heard is not cached (it may have read the key
//!   before the revocation committed);
//! - an entry lives at most `KEY_CACHE_TTL`: the bound if a listener's connection is cut
//!   silently, so that no notification arrives and no error either.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use payrail_actors::domain::ApiKeyId;

use super::model::ApiKeyRow;
use crate::ttl_cache::TtlCache;

const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
const KEY_CACHE_MAX_ENTRIES: usize = 100_000;

pub(crate) struct KeyCache {
    entries: TtlCache<ApiKeyId, ApiKeyRow>,
    /// Moves on with every revocation heard and every time the listener (re)connects.
    epoch: AtomicU64,
    /// Whether every revocation will be heard: always on SQLite (one process owns the file),
    /// on PostgreSQL only while the listener is connected.
    complete: AtomicBool,
}

impl KeyCache {
    pub(crate) fn new(complete: bool) -> Self {
        Self {
            entries: TtlCache::new(KEY_CACHE_TTL, KEY_CACHE_MAX_ENTRIES),
            epoch: AtomicU64::new(0),
            complete: AtomicBool::new(complete),
        }
    }

    pub(crate) fn get(&self, id: &ApiKeyId) -> Option<ApiKeyRow> {
        if !self.complete.load(Ordering::Acquire) {
            return None;
        }
        self.entries.get(id)
    }

    /// Where a read starts: pass it back to `put` with what the read found.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches `row` if nothing was revoked (or missed) since the read began at `epoch`.
    pub(crate) fn put(&self, row: &ApiKeyRow, epoch: u64) {
        if self.complete.load(Ordering::Acquire) && self.epoch() == epoch {
            self.entries.put(row.id, row.clone());
            // A revocation heard while the entry went in must still win.
            if self.epoch() != epoch {
                self.entries.remove(&row.id);
            }
        }
    }

    /// The key was revoked (here or on another node).
    pub(crate) fn revoked(&self, id: &ApiKeyId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(id);
    }

    /// Revocations may go unheard from now on: cache nothing.
    pub(crate) fn incomplete(&self) {
        self.complete.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Every revocation is heard from now on; what was cached before may be stale.
    pub(crate) fn complete(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
        self.complete.store(true, Ordering::Release);
    }

    /// Whether lookups are served from the cache now.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }
}
