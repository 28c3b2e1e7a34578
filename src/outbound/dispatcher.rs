//! The dispatcher: one worker task per enabled endpoint, started and stopped as endpoints
//! change, woken by its tenant's commits (the store's commit feed, which other nodes' commits
//! reach through their commit notices) and, for retries and as a backstop, by a periodic
//! sweep. The workers of one tenant share its tail of the log (`tail`). Every node runs one; a
//! worker delivers only while its node holds the endpoint's lease. On shutdown it stops its
//! workers and releases its leases. Also the purge of old attempts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use payrail_actors::domain::{EndpointId, TenantId};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::grouped::{self, Backlog, Grouped, Round, State};
use super::tail::Tail;
use super::worker::Worker;
use super::Shared;
use crate::store::feed::CommitListener;
use crate::store::EndpointRow;

/// Attempts purged per transaction.
const PURGE_BATCH_ROWS: usize = 1_000;
/// How often old attempts are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);

struct Running {
    endpoint: watch::Sender<EndpointRow>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

struct Workers {
    running: HashMap<(TenantId, EndpointId), Running>,
    /// The tails of the tenants that have workers.
    tails: HashMap<TenantId, Arc<Tail>>,
    /// Where every worker reads its endpoint, records its rounds and measures its backlog.
    reader: Grouped<(TenantId, EndpointId), State>,
    recorder: Grouped<Round, bool>,
    gauges: Grouped<(TenantId, EndpointId, i64), Backlog>,
}

pub(crate) fn spawn(shared: Arc<Shared>) {
    tokio::spawn(async move {
        tracing::info!(node = %shared.lease.owner, "outbound dispatcher started");
        let mut stop = shared.stop.subscribe();
        let mut listener = shared.db.feed().listen();
        let sweep = Duration::from_millis(shared.settings.sweep_ms.max(1));
        let mut workers = Workers {
            running: HashMap::new(),
            tails: HashMap::new(),
            reader: grouped::reader(shared.db.clone()),
            recorder: grouped::recorder(shared.db.clone(), shared.lease.clone()),
            gauges: grouped::gauges(shared.db.clone()),
        };
        let mut reload = true;
        let mut next_sweep = tokio::time::Instant::now();
        let grace = loop {
            if let Some(grace) = *stop.borrow_and_update() {
                break grace;
            }
            if reload {
                reconcile(&shared, &mut workers, &listener).await;
                reload = false;
                next_sweep = tokio::time::Instant::now() + sweep;
            }
            // Commits only wake the workers of their tenants; endpoints are re-read when the
            // API changes one, and at each sweep.
            tokio::select! {
                tenants = listener.committed() => {
                    for ((tenant, _), running) in &workers.running {
                        if tenants.contains(tenant) {
                            running.wake.notify_one();
                        }
                    }
                }
                _ = shared.changed.notified() => reload = true,
                _ = tokio::time::sleep_until(next_sweep) => reload = true,
                _ = stop.changed() => {}
            }
        };
        stop_workers(&shared, workers, grace).await;
        shared.stopped.send_replace(true);
    });
}

/// Lets every worker finish its round (for `grace` at most), drops the rounds still under
/// way, and releases this node's leases.
async fn stop_workers(shared: &Shared, workers: Workers, grace: Duration) {
    let tasks: Vec<JoinHandle<()>> = workers
        .running
        .into_values()
        .map(|running| {
            // Dropping the sender tells the worker to stop after its round.
            drop(running.endpoint);
            running.task
        })
        .collect();
    let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
    if tokio::time::timeout(grace, futures::future::join_all(tasks))
        .await
        .is_err()
    {
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
    }
    match shared.db.release_endpoint_leases(&shared.lease).await {
        Ok(n) => tracing::info!(released = n, "outbound dispatcher stopped"),
        Err(e) => tracing::warn!(error = %e, "outbound leases not released; they will expire"),
    }
}

/// Starts workers for new endpoints, hands changed rows to running ones, stops the workers of
/// endpoints that are gone or disabled (their queues stay in storage), and wakes them all.
/// From then on only the commits of tenants with endpoints wake the dispatcher: it follows
/// them before any worker starts, so none misses a commit.
async fn reconcile(shared: &Arc<Shared>, workers: &mut Workers, listener: &CommitListener) {
    let endpoints = match shared.db.enabled_endpoints().await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "outbound dispatcher cannot list endpoints");
            return;
        }
    };
    // The tenants with enabled endpoints: after this round, those with workers.
    let tenants: HashSet<TenantId> = endpoints.iter().map(|row| row.tenant_id).collect();
    workers.tails.retain(|tenant, _| tenants.contains(tenant));
    listener.follow_only(tenants);
    let mut seen = HashMap::with_capacity(endpoints.len());
    for row in endpoints {
        let key = (row.tenant_id, row.id);
        seen.insert(key, ());
        match workers.running.get(&key) {
            Some(running) if !running.task.is_finished() => {
                running.endpoint.send_replace(row);
                running.wake.notify_one();
            }
            _ => {
                let tail = workers
                    .tails
                    .entry(row.tenant_id)
                    .or_insert_with(|| Arc::new(Tail::new(row.tenant_id)))
                    .clone();
                let (endpoint, receiver) = watch::channel(row);
                let wake = Arc::new(Notify::new());
                let worker = Worker {
                    shared: shared.clone(),
                    endpoint: receiver,
                    wake: wake.clone(),
                    tail,
                    reader: workers.reader.clone(),
                    recorder: workers.recorder.clone(),
                    gauges: workers.gauges.clone(),
                };
                let task = tokio::spawn(worker.run());
                workers.running.insert(
                    key,
                    Running {
                        endpoint,
                        wake,
                        task,
                    },
                );
            }
        }
    }
    workers.running.retain(|key, _| {
        let keep = seen.contains_key(key);
        if !keep {
            shared.metrics.forget(key.1);
        }
        // Dropping the sender lets the worker finish its round and stop.
        keep
    });
}

/// Purges attempts older than the retention setting, every minute.
pub(crate) fn spawn_purge(shared: Arc<Shared>) {
    let keep = chrono::Duration::hours(
        i64::try_from(shared.settings.attempt_retention_hours).unwrap_or(i64::MAX / 3_600),
    );
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(PURGE_EVERY);
        loop {
            ticker.tick().await;
            let before = shared.clock.now() - keep;
            match shared.db.purge_attempts(before, PURGE_BATCH_ROWS).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "purged old outbound attempts"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbound attempts purge failed"),
            }
        }
    });
}
