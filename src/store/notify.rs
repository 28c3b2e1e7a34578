//! What one node tells the others through PostgreSQL's `pg_notify`, and the listener that
//! hears it on a connection of its own:
//! - `payrail_api_key_revoked` (payload: the key's id), sent by the revoking transaction itself:
//!   every node drops the key from its cache when it commits;
//! - `payrail_committed` (payload: `<node>:<tenant>,<tenant>…`): tenants whose logs grew on
//!   another node. The listener pokes this node's feed, so the outbound dispatcher and live
//!   event streams here wake at once instead of at their next periodic re-read. These are sent
//!   after the commits, outside their transactions (a `NOTIFY` in the batch's transaction made
//!   every batch commit behind PostgreSQL's notification lock and cost a fifth of the ingestion
//!   rate), gathered over `ANNOUNCE_EVERY`, and only while another node may hear them;
//! - `payrail_nodes` (payload: `<node>`): a node saying it is there, when it starts listening,
//!   every `HELLO_EVERY`, and in answer to a node it had not heard before. A node that has heard
//!   no other within `PEER_TIMEOUT` (while it listens) sends no commit notices: alone on the
//!   database, each would be a transaction of its own (with a commit PostgreSQL flushes to its
//!   log) every few milliseconds for nobody.
//!
//! Nothing depends on a notification arriving: while the listener is down, the key cache is
//! off, commit notices go out whether or not another node is known, and readers of the log fall
//! back to their periodic re-reads.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures::StreamExt;
use payrail_actors::domain::{ApiKeyId, TenantId};

use super::feed::Feed;
use super::key_cache::KeyCache;
use super::stmt::{Bind, Stmt};
use super::Backend;

pub(crate) const REVOCATIONS_CHANNEL: &str = "payrail_api_key_revoked";
pub(crate) const COMMITS_CHANNEL: &str = "payrail_committed";
pub(crate) const NODES_CHANNEL: &str = "payrail_nodes";
/// PostgreSQL refuses payloads of 8,000 bytes or more: tenants go out in several notices.
const PAYLOAD_MAX_BYTES: usize = 7_000;
/// Waits between attempts to (re)connect the listener: doubling up to the maximum.
const LISTEN_RETRY_MIN: Duration = Duration::from_millis(100);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(5);
/// Commits are announced at most this often: one notice for every tenant that grew meanwhile.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(5);
/// How often a node says it is there.
const HELLO_EVERY: Duration = Duration::from_secs(2);
/// A node not heard from for this long (three hellos missed) is taken to be gone.
const PEER_TIMEOUT: Duration = Duration::from_secs(7);

/// The statement sending `payload` on `channel` (when its transaction commits).
fn notice(channel: &str, payload: String) -> Stmt {
    Stmt::new(
        format!("SELECT pg_notify('{channel}', ?)"),
        vec![Bind::Text(payload)],
    )
}

/// The statement announcing a key's revocation when its transaction commits.
pub(crate) fn revocation_notice(id: ApiKeyId) -> Stmt {
    notice(REVOCATIONS_CHANNEL, id.to_string())
}

/// The statements announcing that these tenants' logs grow when their transaction commits
/// (none for no tenant).
pub(crate) fn commit_notices(node: &str, tenants: &[TenantId]) -> Vec<Stmt> {
    let mut payloads = Vec::new();
    let mut payload = String::new();
    for tenant in tenants {
        let tenant = tenant.to_string();
        if !payload.is_empty() && payload.len() + tenant.len() + 1 > PAYLOAD_MAX_BYTES {
            payloads.push(std::mem::take(&mut payload));
        }
        if payload.is_empty() {
            payload.push_str(node);
            payload.push(':');
        } else {
            payload.push(',');
        }
        payload.push_str(&tenant);
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
        .into_iter()
        .map(|p| notice(COMMITS_CHANNEL, p))
        .collect()
}

/// The statement saying that `node` is there.
fn hello(node: &str) -> Stmt {
    notice(NODES_CHANNEL, node.to_owned())
}

/// Whether a hello heard `at` still counts at `now`.
fn lately(at: Instant, now: Instant) -> bool {
    now.duration_since(at) < PEER_TIMEOUT
}

/// The other nodes this one has heard say they are there, and when it last did.
#[derive(Default)]
struct Peers {
    /// Whether the listener is connected: until it is, no node can be heard.
    listening: AtomicBool,
    heard: Mutex<HashMap<String, Instant>>,
}

impl Peers {
    /// Notes `node`'s hello at `now`; whether it is news (not heard within `PEER_TIMEOUT`),
    /// which this node answers with a hello of its own so that the newcomer knows of it at once.
    fn heard(&self, node: &str, now: Instant) -> bool {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.retain(|_, at| lately(*at, now));
        heard.insert(node.to_owned(), now).is_none()
    }

    /// Whether another node was heard within `PEER_TIMEOUT` of `now`.
    fn known(&self, now: Instant) -> bool {
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.values().any(|at| lately(*at, now))
    }

    /// Whether another node may be listening for commit notices: one was heard lately, or this
    /// one cannot tell (its listener is not connected).
    fn may_listen(&self, now: Instant) -> bool {
        !self.listening.load(Ordering::SeqCst) || self.known(now)
    }
}

/// What the listener acts on.
pub(crate) struct Hearers {
    pub(crate) node: String,
    pub(crate) keys: Arc<KeyCache>,
    pub(crate) feed: Feed,
}

impl Hearers {
    fn hear(&self, channel: &str, payload: &str, shared: &Shared) {
        match channel {
            REVOCATIONS_CHANNEL => match payload.parse::<ApiKeyId>() {
                Ok(id) => self.keys.revoked(&id),
                // Unreadable: which key it was is unknown, so no key may stay cached.
                Err(_) => self.keys.incomplete(),
            },
            COMMITS_CHANNEL => {
                let Some((node, tenants)) = payload.split_once(':') else {
                    return;
                };
                if node != self.node {
                    self.feed
                        .poke(tenants.split(',').filter_map(|t| t.parse().ok()));
                }
            }
            NODES_CHANNEL
                if payload != self.node && shared.peers.heard(payload, Instant::now()) =>
            {
                shared.hello_now.notify_one();
            }
            _ => {}
        }
    }
}

/// Listens on its own connection, reconnecting until aborted.
async fn listen(url: String, hearers: Hearers, shared: Arc<Shared>) {
    let mut retry = LISTEN_RETRY_MIN;
    loop {
        match AsyncPgConnection::establish(&url).await {
            Ok(mut conn) => match conn
                .batch_execute(&format!(
                    "LISTEN {REVOCATIONS_CHANNEL}; LISTEN {COMMITS_CHANNEL}; \
                     LISTEN {NODES_CHANNEL}"
                ))
                .await
            {
                Ok(()) => {
                    // Before the key cache says so: whoever sees this node listen sees it
                    // count the nodes it hears.
                    shared.peers.listening.store(true, Ordering::SeqCst);
                    hearers.keys.complete();
                    shared.hello_now.notify_one();
                    retry = LISTEN_RETRY_MIN;
                    let mut heard = std::pin::pin!(conn.notifications_stream());
                    while let Some(Ok(notice)) = heard.next().await {
                        hearers.hear(&notice.channel, &notice.payload, &shared);
                    }
                    tracing::warn!("the listener for other nodes' notices lost its connection");
                }
                Err(e) => tracing::warn!(error = %e, "could not listen for other nodes' notices"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not connect to listen for other nodes' notices")
            }
        }
        shared.peers.listening.store(false, Ordering::SeqCst);
        hearers.keys.incomplete();
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LISTEN_RETRY_MAX);
    }
}

/// What the listener and the announcer share: the tenants whose commits are still to be
/// announced and the announcer's wake-up, the other nodes heard, and a call for a hello now.
#[derive(Default)]
struct Shared {
    tenants: Mutex<HashSet<TenantId>>,
    wake: tokio::sync::Notify,
    peers: Peers,
    hello_now: tokio::sync::Notify,
}

/// Sends the commit notices, gathering what committed while the previous one went out, and
/// this node's hellos. A notice that cannot be sent is dropped: the other nodes' periodic
/// re-reads cover it, and a lost hello is sent again at the next tick.
async fn announce(node: String, shared: Arc<Shared>, backend: Arc<Backend>) {
    let Backend::Postgres(pg) = &*backend else {
        return;
    };
    let mut hellos = tokio::time::interval(HELLO_EVERY);
    hellos.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stmts = tokio::select! {
            () = shared.wake.notified() => {
                tokio::time::sleep(ANNOUNCE_EVERY).await;
                let tenants: Vec<TenantId> = {
                    let mut tenants = shared.tenants.lock().unwrap_or_else(|p| p.into_inner());
                    tenants.drain().collect()
                };
                commit_notices(&node, &tenants)
            }
            _ = hellos.tick() => vec![hello(&node)],
            () = shared.hello_now.notified() => vec![hello(&node)],
        };
        if stmts.is_empty() {
            continue;
        }
        if let Err(e) = pg.transact(stmts).await {
            tracing::debug!(error = %e, "a notice to other nodes was not sent");
        }
    }
}

/// The listener's and the announcer's tasks, stopped when the store's last handle goes.
pub(crate) struct Listener {
    tasks: [tokio::task::AbortHandle; 2],
    shared: Arc<Shared>,
}

impl Listener {
    pub(crate) fn start(url: String, hearers: Hearers, backend: Arc<Backend>) -> Self {
        let shared = Arc::new(Shared::default());
        let announcer = tokio::spawn(announce(hearers.node.clone(), shared.clone(), backend));
        let listener = tokio::spawn(listen(url, hearers, shared.clone()));
        Self {
            tasks: [listener.abort_handle(), announcer.abort_handle()],
            shared,
        }
    }

    /// Tells the other nodes that these tenants' logs grew, if another node may be listening.
    pub(crate) fn announce(&self, tenants: &[TenantId]) {
        if tenants.is_empty() || !self.shared.peers.may_listen(Instant::now()) {
            return;
        }
        self.shared
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tenants.iter().copied());
        self.shared.wake.notify_one();
    }

    /// Whether another node listening to the same database was heard lately.
    pub(crate) fn hears_other_nodes(&self) -> bool {
        self.shared.peers.known(Instant::now())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_news_once_and_gone_after_the_timeout() {
        let peers = Peers::default();
        let start = Instant::now();
        assert!(peers.may_listen(start), "not listening: cannot tell");
        peers.listening.store(true, Ordering::Relaxed);
        assert!(!peers.known(start) && !peers.may_listen(start), "alone");

        assert!(peers.heard("b", start), "a newcomer is news");
        assert!(
            !peers.heard("b", start + HELLO_EVERY),
            "its next hello is not"
        );
        assert!(peers.may_listen(start + HELLO_EVERY));
        assert!(peers.heard("c", start + HELLO_EVERY), "another newcomer is");

        let later = start + HELLO_EVERY + PEER_TIMEOUT;
        assert!(!peers.known(later), "both silent for the timeout: gone");
        assert!(!peers.may_listen(later));
        assert!(
            peers.heard("b", later),
            "back after the timeout: news again"
        );

        peers.listening.store(false, Ordering::Relaxed);
        assert!(
            peers.may_listen(later + PEER_TIMEOUT * 2),
            "a node that cannot hear assumes it is heard"
        );
    }

    #[test]
    fn commit_notices_stay_under_the_payload_limit() {
        assert!(commit_notices("n", &[]).is_empty());
        let tenants: Vec<TenantId> = (0..600).map(|_| TenantId::new()).collect();
        let notices = commit_notices("node1", &tenants);
        assert!(notices.len() > 1);
        let mut heard = Vec::new();
        for notice in &notices {
            let [Bind::Text(payload)] = notice.binds.as_slice() else {
                panic!("one text bind")
            };
            assert!(payload.len() < 8_000);
            let (node, list) = payload.split_once(':').unwrap();
            assert_eq!(node, "node1");
            heard.extend(list.split(',').map(|t| t.parse::<TenantId>().unwrap()));
        }
        assert_eq!(heard, tenants);
    }
}
