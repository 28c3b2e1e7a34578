//! Commit notifications for live readers of the audit log. After every committed write that
//! adds events, the store pokes the tenant's feed; a subscriber wakes and reads the log after
//! the last position it has seen. A poke carries no data, so it never blocks or buffers: a
//! commit costs one map lookup per tenant, however many or slow the subscribers are, and pokes
//! that arrive while a subscriber is busy collapse into one wake-up (nothing is lost, since
//! the subscriber reads everything after its position). Pokes are per process; on PostgreSQL,
//! commits of other nodes poke this one's feed through `notify.rs` (and a subscriber's own
//! periodic re-read covers any notice lost on the way).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use payrail_actors::domain::TenantId;
use payrail_actors::ports::{StoreError, Unit};
use tokio::sync::{watch, Notify};

use super::Db;

/// Live subscribers one tenant may hold at once (each holds a connection and a buffer).
pub const FEED_SUBSCRIBERS_PER_TENANT_MAX: usize = 32;
/// Live subscribers across all tenants.
pub const FEED_SUBSCRIBERS_MAX: usize = 1_024;

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedFull {
    #[error("this tenant has {FEED_SUBSCRIBERS_PER_TENANT_MAX} live subscribers already")]
    Tenant,
    #[error("the server has {FEED_SUBSCRIBERS_MAX} live subscribers already")]
    Server,
}

#[derive(Default)]
struct Tenants {
    senders: HashMap<TenantId, watch::Sender<()>>,
    subscribers: usize,
    /// The outbound dispatcher's view of the commits.
    listener: Option<Listener>,
}

/// What the whole-store listener has not looked at yet, and which tenants it follows.
struct Listener {
    /// Tenants with commits not yet taken (at most one entry per tenant, however many commits).
    dirty: HashSet<TenantId>,
    notify: Arc<Notify>,
    /// The tenants whose commits it wants; `None`: every tenant's.
    follows: Option<HashSet<TenantId>>,
}

impl Listener {
    fn new(notify: Arc<Notify>) -> Self {
        Self {
            dirty: HashSet::new(),
            notify,
            follows: None,
        }
    }

    /// Whether any commit can concern it.
    fn follows_any(&self) -> bool {
        self.follows
            .as_ref()
            .is_none_or(|tenants| !tenants.is_empty())
    }

    /// Notes a commit of `tenant`; true when the tenant was not waiting to be taken already.
    fn note(&mut self, tenant: TenantId) -> bool {
        if self
            .follows
            .as_ref()
            .is_some_and(|tenants| !tenants.contains(&tenant))
        {
            return false;
        }
        self.dirty.insert(tenant)
    }
}

/// Per-tenant commit notifiers; cheap to clone (one shared map).
#[derive(Clone, Default)]
pub struct Feed {
    tenants: Arc<Mutex<Tenants>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, Tenants> {
        // A panic while holding this lock leaves the map consistent (every update is one call).
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the tenants' subscribers, if they have any.
    pub fn poke(&self, tenants: impl IntoIterator<Item = TenantId>) {
        let mut map = self.lock();
        let Tenants {
            senders, listener, ..
        } = &mut *map;
        // A listener that follows no tenant (no tenant has an endpoint) is as good as none.
        let mut listener = listener.as_mut().filter(|l| l.follows_any());
        if senders.is_empty() && listener.is_none() {
            return;
        }
        let mut noted = false;
        for tenant in tenants {
            if let Some(sender) = senders.get(&tenant) {
                sender.send_replace(());
            }
            if let Some(listener) = listener.as_mut() {
                noted |= listener.note(tenant);
            }
        }
        if let (true, Some(listener)) = (noted, listener) {
            listener.notify.notify_one();
        }
    }

    /// The one whole-store listener (the outbound dispatcher): it learns which tenants
    /// committed since it last looked. A new listener replaces the previous one.
    pub fn listen(&self) -> CommitListener {
        let notify = Arc::new(Notify::new());
        self.lock().listener = Some(Listener::new(notify.clone()));
        CommitListener {
            feed: self.clone(),
            notify,
        }
    }

    /// A new subscription to the tenant's commits; it wakes for every commit from now on.
    pub fn subscribe(&self, tenant: TenantId) -> Result<Subscription, FeedFull> {
        let mut map = self.lock();
        if map.subscribers >= FEED_SUBSCRIBERS_MAX {
            return Err(FeedFull::Server);
        }
        let sender = map
            .senders
            .entry(tenant)
            .or_insert_with(|| watch::Sender::new(()));
        if sender.receiver_count() >= FEED_SUBSCRIBERS_PER_TENANT_MAX {
            return Err(FeedFull::Tenant);
        }
        let receiver = sender.subscribe();
        map.subscribers += 1;
        Ok(Subscription {
            feed: self.clone(),
            tenant,
            receiver: Some(receiver),
        })
    }

    /// Live subscribers across all tenants.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers
    }
}

/// One subscriber's wake-ups; unsubscribes when dropped.
pub struct Subscription {
    feed: Feed,
    tenant: TenantId,
    receiver: Option<watch::Receiver<()>>,
}

impl Subscription {
    /// Resolves at the next commit of the tenant after the last call (at once if one happened
    /// meanwhile). Pending forever if the feed's notifier is gone, which cannot happen while
    /// the subscription holds the feed.
    pub async fn committed(&mut self) {
        let Some(receiver) = self.receiver.as_mut() else {
            return std::future::pending().await;
        };
        if receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.feed.lock();
        drop(self.receiver.take());
        map.subscribers = map.subscribers.saturating_sub(1);
        let idle = map
            .senders
            .get(&self.tenant)
            .is_some_and(|s| s.receiver_count() == 0);
        if idle {
            map.senders.remove(&self.tenant);
        }
    }
}

/// Which tenants committed; stops listening when dropped.
pub struct CommitListener {
    feed: Feed,
    notify: Arc<Notify>,
}

impl CommitListener {
    /// From now on, only commits of `tenants` wake this listener (at first, every tenant's):
    /// the outbound dispatcher follows the tenants that have endpoints, so the commits of the
    /// others, usually nearly all of them, cost it no wake-up.
    pub fn follow_only(&self, tenants: HashSet<TenantId>) {
        if let Some(listener) = self.mine(&mut self.feed.lock()) {
            listener.dirty.retain(|tenant| tenants.contains(tenant));
            listener.follows = Some(tenants);
        }
    }

    /// The feed's listener, if it is still this one.
    fn mine<'a>(&self, map: &'a mut Tenants) -> Option<&'a mut Listener> {
        map.listener
            .as_mut()
            .filter(|l| Arc::ptr_eq(&l.notify, &self.notify))
    }

    /// The tenants that committed since the last call, waiting for at least one.
    pub async fn committed(&mut self) -> Vec<TenantId> {
        loop {
            let taken: Vec<TenantId> = match self.mine(&mut self.feed.lock()) {
                Some(listener) => listener.dirty.drain().collect(),
                None => Vec::new(),
            };
            if !taken.is_empty() {
                return taken;
            }
            self.notify.notified().await;
        }
    }
}

impl Drop for CommitListener {
    fn drop(&mut self) {
        let mut map = self.feed.lock();
        if self.mine(&mut map).is_some() {
            map.listener = None;
        }
    }
}

impl Db {
    /// The store's commit notifications.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Appends a batch, then wakes the subscribers of every tenant with a committed unit.
    pub(crate) async fn append_and_announce(
        &self,
        units: Vec<Unit>,
    ) -> Vec<Result<(), StoreError>> {
        let tenants: Vec<Option<TenantId>> = units.iter().map(|u| u.tenant_id).collect();
        let results = self.append(units).await;
        let mut committed: Vec<TenantId> = tenants
            .into_iter()
            .zip(&results)
            .filter_map(|(tenant, result)| tenant.filter(|_| result.is_ok()))
            .collect();
        committed.sort_unstable();
        committed.dedup();
        self.announce(committed);
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_poke_wakes_only_its_tenant_and_pokes_collapse() {
        let feed = Feed::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        let mut sub_a = feed.subscribe(a).unwrap();
        let mut sub_b = feed.subscribe(b).unwrap();
        feed.poke([a, a, a]);
        tokio::time::timeout(std::time::Duration::from_secs(1), sub_a.committed())
            .await
            .unwrap();
        // Three pokes, one wake-up: the next wait blocks until another commit.
        let again = tokio::time::timeout(std::time::Duration::from_millis(50), sub_a.committed());
        assert!(again.await.is_err());
        let other = tokio::time::timeout(std::time::Duration::from_millis(50), sub_b.committed());
        assert!(other.await.is_err());
    }

    #[tokio::test]
    async fn the_listener_learns_each_committed_tenant_once() {
        let feed = Feed::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        feed.poke([a]);
        let mut listener = feed.listen();
        feed.poke([a, b, a]);
        let mut got = listener.committed().await;
        got.sort_unstable();
        let mut want = vec![a, b];
        want.sort_unstable();
        assert_eq!(got, want);
        let again =
            tokio::time::timeout(std::time::Duration::from_millis(50), listener.committed());
        assert!(again.await.is_err());
        drop(listener);
        assert!(feed.lock().listener.is_none());
    }

    /// A listener told which tenants it follows wakes for their commits only, forgets what it
    /// had noted of the others, and one that follows none costs a commit no wake-up.
    #[tokio::test]
    async fn the_listener_wakes_only_for_the_tenants_it_follows() {
        let feed = Feed::default();
        let (a, b, c) = (TenantId::new(), TenantId::new(), TenantId::new());
        let mut listener = feed.listen();
        feed.poke([c]);
        listener.follow_only(HashSet::from([a]));
        feed.poke([b]);
        let quiet = std::time::Duration::from_millis(50);
        assert!(
            tokio::time::timeout(quiet, listener.committed())
                .await
                .is_err(),
            "neither the commit noted before nor one of a tenant it does not follow wakes it"
        );
        feed.poke([b, a]);
        assert_eq!(listener.committed().await, vec![a]);

        listener.follow_only(HashSet::new());
        feed.poke([a, b]);
        assert!(feed.lock().listener.as_ref().unwrap().dirty.is_empty());
        assert!(tokio::time::timeout(quiet, listener.committed())
            .await
            .is_err());
        listener.follow_only(HashSet::from([a, b]));
        feed.poke([b]);
        assert_eq!(listener.committed().await, vec![b]);
    }

    #[test]
    fn subscribers_are_bounded_per_tenant_and_released_on_drop() {
        let feed = Feed::default();
        let tenant = TenantId::new();
        let subs: Vec<_> = (0..FEED_SUBSCRIBERS_PER_TENANT_MAX)
            .map(|_| feed.subscribe(tenant).unwrap())
            .collect();
        assert_eq!(feed.subscribe(tenant).err(), Some(FeedFull::Tenant));
        assert!(feed.subscribe(TenantId::new()).is_ok());
        drop(subs);
        assert_eq!(feed.subscribers(), 0);
        assert!(feed.lock().senders.is_empty());
        assert!(feed.subscribe(tenant).is_ok());
    }
}
