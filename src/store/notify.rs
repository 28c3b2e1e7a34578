//! What one node tells the others through PostgreSQL's `pg_notify`, and the listener that
//! hears it on a connection of its own:
//! - `payrail_api_key_revoked` (payload: the key's id), sent by the revoking transaction itself:
//!   every node drops the key from its cache when it commits;
//! - `payrail_committed` (payload: `<node>:<tenant>,<tenant>…`): tenants whose logs grew on
//!   another node. The listener pokes this node's feed, so the outbound dispatcher and live
//!   event streams here wake at once instead of at their next periodic re-read. These are sent
//!   after the commits, outside their transactions (a `NOTIFY` in the batch's transaction made
//!   every batch commit behind PostgreSQL's notification lock and cost a fifth of the ingestion
//!   rate), gathered over `ANNOUNCE_EVERY`.
//!
//! Nothing depends on a notification arriving: while the listener is down, the key cache is
//! off and readers of the log fall back to their periodic re-reads.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures::StreamExt;
use payrail_actors::domain::{ApiKeyId, TenantId};

use super::feed::Feed;
use super::key_cache::KeyCache;
use super::stmt::{Bind, Stmt};
use super::Backend;

pub(crate) const REVOCATIONS_CHANNEL: &str = "payrail_api_key_revoked";
pub(crate) const COMMITS_CHANNEL: &str = "payrail_committed";
/// PostgreSQL refuses payloads of 8,000 bytes or more: tenants go out in several notices.
const PAYLOAD_MAX_BYTES: usize = 7_000;
/// Waits between attempts to (re)connect the listener: doubling up to the maximum.
const LISTEN_RETRY_MIN: Duration = Duration::from_millis(100);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(5);
/// Commits are announced at most this often: one notice for every tenant that grew meanwhile.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(5);

/// The statement announcing a key's revocation when its transaction commits.
pub(crate) fn revocation_notice(id: ApiKeyId) -> Stmt {
    Stmt::new(
        format!("SELECT pg_notify('{REVOCATIONS_CHANNEL}', ?)"),
        vec![Bind::Text(id.to_string())],
    )
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
        .map(|p| {
            Stmt::new(
                format!("SELECT pg_notify('{COMMITS_CHANNEL}', ?)"),
                vec![Bind::Text(p)],
            )
        })
        .collect()
}

/// What the listener acts on.
pub(crate) struct Hearers {
    pub(crate) node: String,
    pub(crate) keys: Arc<KeyCache>,
    pub(crate) feed: Feed,
}

impl Hearers {
    fn hear(&self, channel: &str, payload: &str) {
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
            _ => {}
        }
    }
}

/// Listens on its own connection, reconnecting until aborted.
async fn listen(url: String, hearers: Hearers) {
    let mut retry = LISTEN_RETRY_MIN;
    loop {
        match AsyncPgConnection::establish(&url).await {
            Ok(mut conn) => match conn
                .batch_execute(&format!(
                    "LISTEN {REVOCATIONS_CHANNEL}; LISTEN {COMMITS_CHANNEL}"
                ))
                .await
            {
                Ok(()) => {
                    hearers.keys.complete();
                    retry = LISTEN_RETRY_MIN;
                    let mut heard = std::pin::pin!(conn.notifications_stream());
                    while let Some(Ok(notice)) = heard.next().await {
                        hearers.hear(&notice.channel, &notice.payload);
                    }
                    tracing::warn!("the listener for other nodes' notices lost its connection");
                }
                Err(e) => tracing::warn!(error = %e, "could not listen for other nodes' notices"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not connect to listen for other nodes' notices")
            }
        }
        hearers.keys.incomplete();
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LISTEN_RETRY_MAX);
    }
}

/// Tenants whose commits are still to be announced, and the announcer's wake-up.
#[derive(Default)]
struct Pending {
    tenants: Mutex<HashSet<TenantId>>,
    wake: tokio::sync::Notify,
}

/// Sends the commit notices, gathering what committed while the previous one went out. A
/// notice that cannot be sent is dropped: the other nodes' periodic re-reads cover it.
async fn announce(node: String, pending: Arc<Pending>, backend: Arc<Backend>) {
    let Backend::Postgres(pg) = &*backend else {
        return;
    };
    loop {
        pending.wake.notified().await;
        tokio::time::sleep(ANNOUNCE_EVERY).await;
        let tenants: Vec<TenantId> = {
            let mut tenants = pending.tenants.lock().unwrap_or_else(|p| p.into_inner());
            tenants.drain().collect()
        };
        if tenants.is_empty() {
            continue;
        }
        if let Err(e) = pg.transact(commit_notices(&node, &tenants)).await {
            tracing::debug!(error = %e, "a commit notice to other nodes was not sent");
        }
    }
}

/// The listener's and the announcer's tasks, stopped when the store's last handle goes.
pub(crate) struct Listener {
    tasks: [tokio::task::AbortHandle; 2],
    pending: Arc<Pending>,
}

impl Listener {
    pub(crate) fn start(url: String, hearers: Hearers, backend: Arc<Backend>) -> Self {
        let pending = Arc::new(Pending::default());
        let announcer = tokio::spawn(announce(hearers.node.clone(), pending.clone(), backend));
        let listener = tokio::spawn(listen(url, hearers));
        Self {
            tasks: [listener.abort_handle(), announcer.abort_handle()],
            pending,
        }
    }

    /// Tells the other nodes that these tenants' logs grew.
    pub(crate) fn announce(&self, tenants: &[TenantId]) {
        if tenants.is_empty() {
            return;
        }
        self.pending
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tenants.iter().copied());
        self.pending.wake.notify_one();
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
