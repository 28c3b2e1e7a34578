//! The workers' reads of their endpoints, records of their rounds and measures of their
//! backlogs, in groups: each worker hands its request over and waits; one task takes every
//! request waiting at that moment and answers them with one statement. While a group is under way the next requests queue up, so
//! the busier the dispatcher, the more rounds share a statement (and a commit); a lone request
//! goes at once, alone. Each round's record is still fenced by its own endpoint's lease. A
//! failed record fails every round of its group: each is sent again, as after a crash (at
//! least once).

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;

use chrono::{DateTime, Utc};
use payrail_actors::domain::{EndpointId, TenantId};
use payrail_actors::ports::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::store::{AttemptRow, Db, EndpointRow, Lease, RoundEffects};

/// Requests answered per group, at most.
const GROUP_MAX: usize = 64;

/// An endpoint as a round reads it, and when its next retry is due; `None` once deleted.
pub(crate) type State = Option<(EndpointRow, Option<DateTime<Utc>>)>;

/// One round to record.
pub(crate) struct Round {
    pub(crate) tenant: TenantId,
    pub(crate) endpoint: EndpointId,
    pub(crate) attempts: Vec<AttemptRow>,
    pub(crate) effects: RoundEffects,
}

type Waiting<Q, A> = (Q, oneshot::Sender<Result<A, StoreError>>);

/// A handle on one grouping task; the task stops once every handle is gone.
pub(crate) struct Grouped<Q, A> {
    queue: mpsc::UnboundedSender<Waiting<Q, A>>,
}

impl<Q, A> Clone for Grouped<Q, A> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<Q: Send + 'static, A: Send + 'static> Grouped<Q, A> {
    /// Starts the task: `answer` takes a group of requests, in `key` order, and answers each
    /// in turn. `key` also keeps two requests of one endpoint out of one group (the later one
    /// waits for the next).
    fn start<K, F, Fut>(key: fn(&Q) -> K, mut answer: F) -> Self
    where
        K: Ord + Hash + Send + 'static,
        F: FnMut(Vec<Q>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<A>, StoreError>> + Send,
    {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Waiting<Q, A>>();
        tokio::spawn(async move {
            let mut next: Vec<Waiting<Q, A>> = Vec::new();
            loop {
                if next.is_empty() && waiting.recv_many(&mut next, GROUP_MAX).await == 0 {
                    return;
                }
                while next.len() < GROUP_MAX {
                    match waiting.try_recv() {
                        Ok(w) => next.push(w),
                        Err(_) => break,
                    }
                }
                let mut seen = HashSet::with_capacity(next.len());
                let (mut group, later): (Vec<_>, Vec<_>) =
                    next.drain(..).partition(|(q, _)| seen.insert(key(q)));
                next = later;
                // One order for every node's statements: rows are locked in key order.
                group.sort_by_key(|(q, _)| key(q));
                let (requests, replies): (Vec<Q>, Vec<_>) = group.into_iter().unzip();
                // A worker that stopped waiting (shut down) no longer needs its answer: a
                // failed send is nothing to report.
                match answer(requests).await {
                    Ok(answers) => {
                        let mut answers = answers.into_iter();
                        for reply in replies {
                            let _ = reply.send(answers.next().ok_or_else(|| {
                                StoreError::Unavailable("a group came back short".into())
                            }));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Hands one request over and waits for its answer.
    pub(crate) async fn ask(&self, request: Q) -> Result<A, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Unavailable("the outbound dispatcher has stopped".into());
        self.queue.send((request, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Reads endpoints for their rounds, in groups.
pub(crate) fn reader(db: Db) -> Grouped<(TenantId, EndpointId), State> {
    Grouped::start(
        |&key| key,
        move |endpoints: Vec<(TenantId, EndpointId)>| {
            let db = db.clone();
            async move { db.round_states(&endpoints).await }
        },
    )
}

/// An endpoint's backlog: how many events it has not yet been sent, and when the oldest of
/// them occurred.
pub(crate) type Backlog = (i64, Option<DateTime<Utc>>);

/// Measures endpoints' backlogs `(tenant, endpoint, cursor)`, in groups.
pub(crate) fn gauges(db: Db) -> Grouped<(TenantId, EndpointId, i64), Backlog> {
    Grouped::start(
        |&(tenant, endpoint, _)| (tenant, endpoint),
        move |endpoints: Vec<(TenantId, EndpointId, i64)>| {
            let db = db.clone();
            async move { db.endpoint_backlogs(&endpoints).await }
        },
    )
}

/// Records rounds, in groups, under this node's `lease`.
pub(crate) fn recorder(db: Db, lease: Lease) -> Grouped<Round, bool> {
    Grouped::start(
        |r: &Round| (r.tenant, r.endpoint),
        move |rounds: Vec<Round>| {
            let (db, lease) = (db.clone(), lease.clone());
            async move {
                let rounds: Vec<_> = rounds
                    .iter()
                    .map(|r| (r.tenant, r.endpoint, r.attempts.as_slice(), &r.effects))
                    .collect();
                db.record_rounds(&lease, &rounds).await
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn requests_waiting_together_share_a_group_but_one_endpoint_never_twice() {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let seen = groups.clone();
        // Answers each request `(tenant, endpoint, n)` with `n * 10`, slowly, so that requests
        // queue up behind the group under way.
        let grouped: Grouped<(TenantId, EndpointId, i64), i64> = Grouped::start(
            |&(t, e, _)| (t, e),
            move |requests: Vec<(TenantId, EndpointId, i64)>| {
                seen.lock()
                    .unwrap()
                    .push(requests.iter().map(|r| r.2).collect::<Vec<_>>());
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(requests.iter().map(|r| r.2 * 10).collect())
                }
            },
        );
        let tenant = TenantId::new();
        let (a, b) = (EndpointId::new(), EndpointId::new());
        let asks =
            [(a, 1), (a, 2), (b, 3), (b, 4), (a, 5)].map(|(e, n)| grouped.ask((tenant, e, n)));
        let answers: Vec<i64> = futures::future::join_all(asks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(answers, [10, 20, 30, 40, 50]);
        let groups = groups.lock().unwrap().clone();
        assert!(groups.len() >= 3, "{groups:?}");
        for group in &groups {
            let a_requests = group
                .iter()
                .filter(|&&n| n == 1 || n == 2 || n == 5)
                .count();
            let b_requests = group.iter().filter(|&&n| n == 3 || n == 4).count();
            assert!(a_requests <= 1 && b_requests <= 1, "{groups:?}");
        }
        assert!(groups.iter().any(|g| g.len() == 2), "{groups:?}");
    }

    #[tokio::test]
    async fn a_failed_group_fails_each_of_its_requests() {
        let grouped: Grouped<(TenantId, EndpointId), ()> = Grouped::start(
            |&key| key,
            |_: Vec<(TenantId, EndpointId)>| async { Err(StoreError::Unavailable("down".into())) },
        );
        let answer = grouped.ask((TenantId::new(), EndpointId::new())).await;
        assert_eq!(answer, Err(StoreError::Unavailable("down".into())));
    }
}
