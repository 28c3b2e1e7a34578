//! One endpoint's delivery loop. Each round sends the retries that are due, then the first
//! attempts of the events past the endpoint's cursor (started in commit order, a bounded
//! number at a time), and records the round in one transaction: the attempts, the retries
//! still owed, the cursor moved past the events tried. A crash before that commit only means
//! the round is sent again (at least once); nothing after the cursor is ever skipped.
//!
//! A worker delivers only while its node holds the endpoint's lease: it takes or renews it
//! before a round (renewing at most every third of its duration), keeps renewing it while a
//! long round is under way, and the round's record is written only if the lease is still its
//! own. A worker without the lease looks again at every sweep, and releases it when it stops.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use payrail_actors::domain::{AttemptId, EndpointId, TenantId};
use payrail_actors::ports::StoreError;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::deliver::{self, Answer, Request};
use super::Shared;
use crate::http::views;
use crate::store::{AttemptRow, AttemptStatus, EndpointRow, RoundEffects, StoredEvent};

/// Events (first attempts) and due retries taken per round.
pub(crate) const ROUND_EVENTS_MAX: usize = 64;

/// One event to send in a round, with the number of this attempt.
struct Job {
    event: StoredEvent,
    attempt: i64,
}

/// What a round found.
enum Progress {
    /// A full batch: go again at once.
    More,
    /// Caught up; the endpoint's next retry, if any.
    Idle,
    /// The endpoint was disabled (410, or failing for too long): stop.
    Disabled,
    /// Another node took the lease during the round; nothing of it was recorded here.
    LeaseLost,
}

pub(crate) struct Worker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) endpoint: watch::Receiver<EndpointRow>,
    pub(crate) wake: Arc<Notify>,
}

impl Worker {
    pub(crate) async fn run(mut self) {
        let mut row = self.endpoint.borrow_and_update().clone();
        let (tenant, id) = (row.tenant_id, row.id);
        // When this node last made sure it holds the lease (the moment it asked); `None`
        // while it does not hold it.
        let mut held: Option<Instant> = None;
        loop {
            if self.endpoint.has_changed().is_err() {
                break; // the dispatcher let the endpoint go (deleted, disabled, shutting down)
            }
            self.endpoint.borrow_and_update();
            match self.lease(tenant, id, &mut held).await {
                Ok(true) => {}
                Ok(false) => {
                    self.await_lease().await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "outbound lease unavailable");
                    self.idle(&row).await;
                    continue;
                }
            }
            // Every round reads the row afresh: a rotated secret or a new URL applies to the
            // next delivery, not only once the dispatcher has noticed the change.
            match self.shared.db.get_endpoint(tenant, id).await {
                Ok(Some(fresh)) if fresh.enabled => {
                    // The stored cursor may lag what this worker has recorded since.
                    let cursor = row.cursor_seq.max(fresh.cursor_seq);
                    row = EndpointRow {
                        cursor_seq: cursor,
                        ..fresh
                    };
                }
                Ok(_) => {
                    self.shared.metrics.forget(id);
                    break;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "outbound endpoint unreadable");
                    self.idle(&row).await;
                    continue;
                }
            }
            match self.round(&mut row, &mut held).await {
                // Measured after every round, so an endpoint far behind shows its backlog
                // while it catches up, not only once it has.
                Ok(Progress::More) => self.observe_backlog(&row).await,
                Ok(Progress::Disabled) => {
                    self.shared.metrics.forget(id);
                    break;
                }
                Ok(Progress::LeaseLost) => self.note_lease(tenant, id, &mut held, None),
                Ok(Progress::Idle) => {
                    self.observe_backlog(&row).await;
                    self.idle(&row).await;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %id, tenant = %tenant, error = %e, "outbound round failed");
                    self.idle(&row).await;
                }
            }
        }
        if held.is_some() {
            self.shared.metrics.forget(id);
            if let Err(e) = self
                .shared
                .db
                .release_endpoint_lease(tenant, id, &self.shared.lease)
                .await
            {
                tracing::warn!(endpoint = %id, error = %e, "outbound lease not released");
            }
        }
    }

    /// How often a held lease is renewed.
    fn renew_every(&self) -> Duration {
        self.shared.lease.duration / 3
    }

    /// Makes sure this node holds the endpoint's lease: taken or renewed unless it was made
    /// sure of less than a third of its duration ago.
    async fn lease(
        &self,
        tenant: TenantId,
        id: EndpointId,
        held: &mut Option<Instant>,
    ) -> Result<bool, StoreError> {
        if held.is_some_and(|at| at.elapsed() < self.renew_every()) {
            return Ok(true);
        }
        let asked = Instant::now();
        let taken = self
            .shared
            .db
            .take_endpoint_lease(tenant, id, &self.shared.lease)
            .await?;
        self.note_lease(tenant, id, held, taken.then_some(asked));
        Ok(taken)
    }

    /// Records whether this node holds the lease now (`Some`: made sure of at that moment).
    fn note_lease(
        &self,
        tenant: TenantId,
        id: EndpointId,
        held: &mut Option<Instant>,
        now: Option<Instant>,
    ) {
        match (held.is_some(), now.is_some()) {
            (false, true) => {
                tracing::debug!(endpoint = %id, tenant = %tenant, "outbound lease taken");
                self.shared.metrics.leased(id);
            }
            (true, false) => {
                tracing::info!(endpoint = %id, tenant = %tenant, "outbound lease lost to another node");
                self.shared.metrics.forget(id);
            }
            _ => {}
        }
        *held = now;
    }

    /// Without the lease: waits for the next sweep (or a change), then asks again. Commits
    /// on this node do not wake it; the holder delivers them.
    async fn await_lease(&mut self) {
        let sweep = Duration::from_millis(self.shared.settings.sweep_ms.max(1));
        tokio::select! {
            _ = self.endpoint.changed() => {}
            _ = tokio::time::sleep(sweep) => {}
        }
    }

    /// Waits for a commit of the tenant, a change, the next due retry or the sweep.
    async fn idle(&mut self, row: &EndpointRow) {
        let sweep = Duration::from_millis(self.shared.settings.sweep_ms.max(1));
        let until_retry = match self.shared.db.next_retry_at(row.tenant_id, row.id).await {
            Ok(Some(at)) => (at - self.shared.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO),
            _ => sweep,
        };
        // A held lease is renewed in time even if the sweep is slower.
        let wait = until_retry.min(sweep).min(self.renew_every());
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = self.endpoint.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    async fn round(
        &self,
        row: &mut EndpointRow,
        held: &mut Option<Instant>,
    ) -> Result<Progress, StoreError> {
        let db = &self.shared.db;
        let now = self.shared.clock.now();
        let due = db
            .due_deliveries(row.tenant_id, row.id, now, ROUND_EVENTS_MAX)
            .await?;
        let retries_full = due.len() == ROUND_EVENTS_MAX;
        let mut jobs: Vec<Job> = due
            .into_iter()
            .map(|d| Job {
                event: d.event,
                attempt: d.attempts + 1,
            })
            .collect();
        let fresh = db
            .events_after(row.tenant_id, row.cursor_seq, ROUND_EVENTS_MAX)
            .await?;
        let fresh_full = fresh.len() == ROUND_EVENTS_MAX;
        let cursor = fresh.last().map(|e| e.sequence);
        jobs.extend(
            fresh
                .into_iter()
                .filter(|e| row.wants(e.event.event_type()))
                .map(|event| Job { event, attempt: 1 }),
        );
        if jobs.is_empty() && cursor.is_none() {
            return Ok(Progress::Idle);
        }
        let Some(attempts) = self.send_keeping_lease(row, jobs, *held).await else {
            return Ok(Progress::LeaseLost);
        };
        let effects = self.effects(row, &attempts, cursor);
        let asked = Instant::now();
        let lease = &self.shared.lease;
        if !db
            .record_round(row.tenant_id, row.id, lease, &attempts, &effects)
            .await?
        {
            return Ok(Progress::LeaseLost);
        }
        *held = Some(asked); // recording renewed it
        if let Some(cursor) = cursor {
            row.cursor_seq = row.cursor_seq.max(cursor);
        }
        match effects.failing_since {
            Some(None) => row.failing_since = None,
            Some(Some(at)) => row.failing_since = row.failing_since.or(Some(at)),
            None => {}
        }
        self.shared.metrics.count_round(&attempts);
        if effects.disable {
            tracing::warn!(endpoint = %row.id, tenant = %row.tenant_id, "outbound endpoint disabled");
            return Ok(Progress::Disabled);
        }
        Ok(if retries_full || fresh_full {
            Progress::More
        } else {
            Progress::Idle
        })
    }

    /// Sends the jobs while renewing the lease every third of its duration. `None` if the
    /// lease was lost on the way, or could not be confirmed for a whole lease: the sends
    /// still under way are dropped, and the node holding the lease sends them.
    async fn send_keeping_lease(
        &self,
        row: &EndpointRow,
        jobs: Vec<Job>,
        held: Option<Instant>,
    ) -> Option<Vec<AttemptRow>> {
        let (db, lease) = (&self.shared.db, &self.shared.lease);
        let every = self.renew_every();
        let keep = async {
            let mut confirmed = held.unwrap_or_else(Instant::now);
            let mut next = confirmed + every;
            loop {
                tokio::time::sleep_until(next).await;
                let asked = Instant::now();
                match db.renew_endpoint_lease(row.tenant_id, row.id, lease).await {
                    Ok(true) => {
                        confirmed = asked;
                        next = asked + every;
                    }
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(endpoint = %row.id, error = %e, "outbound lease not renewed");
                        if confirmed.elapsed() >= lease.duration {
                            return;
                        }
                        next = Instant::now() + every / 4;
                    }
                }
            }
        };
        tokio::select! {
            attempts = self.send_all(row, jobs) => Some(attempts),
            () = keep => None,
        }
    }

    /// Sends the jobs, at most `concurrency_per_endpoint` at a time and each under the global
    /// limit; they start in order, so first attempts go out in commit order.
    async fn send_all(&self, row: &EndpointRow, jobs: Vec<Job>) -> Vec<AttemptRow> {
        let per_endpoint = self.shared.settings.concurrency_per_endpoint.max(1);
        futures::stream::iter(jobs)
            .map(|job| self.send_one(row, job))
            .buffered(per_endpoint)
            .collect()
            .await
    }

    async fn send_one(&self, row: &EndpointRow, job: Job) -> AttemptRow {
        let shared = &self.shared;
        let _permit = shared.in_flight.acquire().await.ok();
        let at = shared.clock.now();
        let body = match views::event(&job.event) {
            Ok(view) => serde_json::to_vec(&view).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let webhook_id = job.event.event.id.to_string();
        let (answer, took) = deliver::send(
            &shared.client,
            &shared.settings,
            Request {
                url: &row.url,
                webhook_id: &webhook_id,
                timestamp: at.timestamp(),
                body: &body,
                secrets: row.signing_secrets(at),
            },
        )
        .await;
        let finished = shared.clock.now();
        let next = if answer.succeeded() {
            None
        } else {
            shared
                .schedule
                .delay_after(job.attempt, rand::random::<f64>())
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| finished + d)
        };
        let status = match (answer.succeeded(), next) {
            (true, _) => AttemptStatus::Succeeded,
            (false, Some(_)) => AttemptStatus::Pending,
            (false, None) => AttemptStatus::Failed,
        };
        let (response_status, response_body) = match answer {
            Answer::Status(code, body) => (Some(code), Some(body)),
            Answer::NoAnswer(reason) => (None, Some(reason)),
        };
        AttemptRow {
            id: AttemptId::new(),
            event_seq: job.event.sequence,
            event_id: job.event.event.id,
            attempt: job.attempt,
            status,
            response_status,
            response_body,
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            attempted_at: at,
            next_attempt_at: next,
        }
    }

    /// The round's effects on its endpoint: the cursor, the run of failures, and whether it
    /// is disabled (a 410, or failing for longer than the limit).
    fn effects(
        &self,
        row: &EndpointRow,
        attempts: &[AttemptRow],
        cursor: Option<i64>,
    ) -> RoundEffects {
        let now = self.shared.clock.now();
        let any_success = attempts
            .iter()
            .any(|a| a.status == AttemptStatus::Succeeded);
        let gone = attempts.iter().any(|a| a.response_status == Some(410));
        let failing_since = if any_success {
            Some(None)
        } else if attempts.is_empty() {
            None
        } else {
            Some(Some(now))
        };
        let limit = chrono::Duration::seconds(
            i64::try_from(self.shared.settings.disable_after_failing_secs).unwrap_or(i64::MAX),
        );
        let failing_too_long = !any_success
            && row
                .failing_since
                .is_some_and(|since: DateTime<Utc>| now - since >= limit);
        RoundEffects {
            cursor_seq: cursor,
            failing_since,
            disable: gone || failing_too_long,
            fresh_only: false,
        }
    }

    /// Updates the endpoint's backlog gauges.
    async fn observe_backlog(&self, row: &EndpointRow) {
        if let Some(&(backlog, oldest)) = self
            .shared
            .db
            .endpoint_backlogs(&[(row.tenant_id, row.id, row.cursor_seq)])
            .await
            .ok()
            .as_ref()
            .and_then(|b| b.first())
        {
            self.shared
                .metrics
                .backlog(row.tenant_id, row.id, backlog, oldest);
        }
    }
}
