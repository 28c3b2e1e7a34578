//! One endpoint's delivery loop. Each round takes the events past the endpoint's cursor from
//! its tenant's shared tail (`tail`: in commit order, a bounded number at a time) and the
//! retries that are due, sends them (first attempts started in commit order), and records the
//! round at once: the attempts, the retries still owed, the cursor moved past the events
//! tried. A crash before that record only means the round is sent again (at least once);
//! nothing after the cursor is ever skipped.
//!
//! A round that has something to send first reads the endpoint row afresh, with when its next
//! retry is due: a rotated secret, a new URL or new event types apply to the next delivery,
//! not only once the dispatcher has noticed the change. A round with nothing to send reads
//! only the shared tail. What the worker knows of its retries (its own writes since that read)
//! tells it when to look for due ones; a change of the endpoint (an API call, the sweep) or a
//! round that sent retries makes it read again.
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

use super::deliver::{self, Answer, Request, Target};
use super::grouped::{Backlog, Grouped, Round, State};
use super::signing::Signer;
use super::tail::{Outgoing, Tail};
use super::Shared;
use crate::store::{AttemptRow, AttemptStatus, EndpointRow, RoundEffects};

/// Events (first attempts) and due retries taken per round.
pub(crate) const ROUND_EVENTS_MAX: usize = 64;
/// A worker woken by a commit starts its next round no sooner than this after its previous
/// round began: under load a round then carries the commits of this long, rather than one
/// round (an endpoint read, a record, a backlog) per commit.
const ROUND_SPACING: Duration = Duration::from_millis(10);
/// While an endpoint catches up (full rounds one after another), its backlog gauges are
/// measured at most this often; once it has, after every round that worked.
const BACKLOG_EVERY: Duration = Duration::from_millis(250);

/// One event to send in a round, with the number of this attempt.
struct Job {
    event: Arc<Outgoing>,
    attempt: i64,
}

/// What a round found.
enum Progress {
    /// A full batch, or more events may be waiting: go again at once.
    More,
    /// Caught up; the endpoint's next retry, if any.
    Idle,
    /// The endpoint was disabled (410, failing for too long, or by the API) or deleted: stop.
    Stop,
    /// Another node took the lease during the round; nothing of it was recorded here.
    LeaseLost,
}

/// What the worker knows of its endpoint's retries.
struct Retries {
    /// When the next one is due (`None`: none is owed), as of the last read of the endpoint
    /// and this worker's own writes since.
    next: Option<DateTime<Utc>>,
    /// Read again before relying on `next`: the endpoint changed, the lease was taken, or a
    /// round sent retries (whose successors the worker does not track).
    stale: bool,
}

/// When the backlog gauges were last measured, and whether a round worked since.
struct Gauge {
    measured: Option<Instant>,
    worked: bool,
    /// The last round left nothing to send: it took every event a read begun after it asked
    /// had found, and no retry is owed. The backlog is then known to be empty (as of that
    /// read) without measuring it.
    clear: bool,
}

/// What every send of a round shares: where to, and the secrets in force.
struct Prepared {
    target: Target,
    signer: Signer,
}

pub(crate) struct Worker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) endpoint: watch::Receiver<EndpointRow>,
    pub(crate) wake: Arc<Notify>,
    /// The tenant's events, shared with its other endpoints' workers.
    pub(crate) tail: Arc<Tail>,
    /// Where it reads its endpoint, records its rounds and measures its backlog, with the
    /// other workers'.
    pub(crate) reader: Grouped<(TenantId, EndpointId), State>,
    pub(crate) recorder: Grouped<Round, bool>,
    pub(crate) gauges: Grouped<(TenantId, EndpointId, i64), Backlog>,
}

impl Worker {
    pub(crate) async fn run(mut self) {
        let mut row = self.endpoint.borrow_and_update().clone();
        let (tenant, id) = (row.tenant_id, row.id);
        // When this node last made sure it holds the lease (the moment it asked); `None`
        // while it does not hold it.
        let mut held: Option<Instant> = None;
        let mut retries = Retries {
            next: None,
            stale: true,
        };
        let mut gauge = Gauge {
            measured: None,
            worked: true,
            clear: false,
        };
        // When the last round began, if the worker has waited since.
        let mut waited_after: Option<Instant> = None;
        loop {
            match self.endpoint.has_changed() {
                // The dispatcher let the endpoint go (deleted, disabled, shutting down).
                Err(_) => break,
                // Changed by the API (a replay schedules retries), or the sweep.
                Ok(true) => retries.stale = true,
                Ok(false) => {}
            }
            self.endpoint.borrow_and_update();
            let had_lease = held.is_some();
            match self.lease(tenant, id, &mut held).await {
                Ok(true) => {
                    if !had_lease {
                        // Another node may have sent and scheduled meanwhile.
                        retries.stale = true;
                    }
                }
                Ok(false) => {
                    self.await_lease().await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %id, error = %e, "outbound lease unavailable");
                    self.idle(&retries).await;
                    continue;
                }
            }
            if let Some(began) = waited_after.take() {
                tokio::time::sleep_until(began + ROUND_SPACING).await;
            }
            let began = Instant::now();
            match self
                .round(&mut row, &mut retries, &mut gauge, &mut held)
                .await
            {
                // Measured while it works too, so an endpoint far behind shows its backlog
                // while it catches up, not only once it has.
                Ok(Progress::More) => {
                    let due = gauge
                        .measured
                        .is_none_or(|at| at.elapsed() >= BACKLOG_EVERY);
                    if due {
                        self.observe_backlog(&row, &mut gauge).await;
                    }
                }
                Ok(Progress::Stop) => {
                    self.shared.metrics.forget(id);
                    break;
                }
                Ok(Progress::LeaseLost) => self.note_lease(tenant, id, &mut held, None),
                Ok(Progress::Idle) => {
                    self.observe_backlog(&row, &mut gauge).await;
                    self.idle(&retries).await;
                    waited_after = Some(began);
                }
                Err(e) => {
                    tracing::warn!(endpoint = %id, tenant = %tenant, error = %e, "outbound round failed");
                    self.idle(&retries).await;
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
    async fn idle(&mut self, retries: &Retries) {
        let sweep = Duration::from_millis(self.shared.settings.sweep_ms.max(1));
        let until_retry = match (retries.stale, retries.next) {
            (false, Some(at)) => (at - self.shared.clock.now())
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
        retries: &mut Retries,
        gauge: &mut Gauge,
        held: &mut Option<Instant>,
    ) -> Result<Progress, StoreError> {
        let db = &self.shared.db;
        let now = self.shared.clock.now();
        let batch = self
            .tail
            .after(db, row.cursor_seq, ROUND_EVENTS_MAX)
            .await?;
        let fresh_full = batch.events.len() == ROUND_EVENTS_MAX;
        let retry_due = retries.stale || retries.next.is_some_and(|at| at <= now);
        if batch.events.is_empty() && !retry_due {
            if batch.complete {
                // Caught up, as of a read begun after the round asked.
                gauge.clear = retries.next.is_none();
                return Ok(Progress::Idle);
            }
            return Ok(Progress::More);
        }
        // The endpoint as it is now, and when its next retry is due.
        let Some((fresh, next_retry)) = self.reader.ask((row.tenant_id, row.id)).await? else {
            return Ok(Progress::Stop);
        };
        if !fresh.enabled {
            return Ok(Progress::Stop);
        }
        // The stored cursor may lag what this worker has recorded since, or be past it if
        // another node delivered meanwhile: what it sent is not sent again.
        let cursor = row.cursor_seq.max(fresh.cursor_seq);
        *row = EndpointRow {
            cursor_seq: cursor,
            ..fresh
        };
        *retries = Retries {
            next: next_retry,
            stale: false,
        };
        let due = match next_retry {
            Some(at) if at <= now => {
                db.due_deliveries(row.tenant_id, row.id, now, ROUND_EVENTS_MAX)
                    .await?
            }
            _ => Vec::new(),
        };
        let retries_full = due.len() == ROUND_EVENTS_MAX;
        let more = retries_full || fresh_full || !batch.complete;
        let fresh_events: Vec<Arc<Outgoing>> = batch
            .events
            .into_iter()
            .filter(|e| e.sequence > cursor)
            .collect();
        let new_cursor = fresh_events.last().map(|e| e.sequence);
        // Nothing but first attempts of events past the cursor, and no retry owed: the
        // record settles no earlier attempt.
        let fresh_only = due.is_empty() && next_retry.is_none();
        let sent_retries = !due.is_empty();
        let mut jobs: Vec<Job> = due
            .into_iter()
            .map(|d| Job {
                event: Arc::new(Outgoing::new(&d.event)),
                attempt: d.attempts + 1,
            })
            .collect();
        jobs.extend(
            fresh_events
                .into_iter()
                .filter(|e| row.wants(e.event_type))
                .map(|event| Job { event, attempt: 1 }),
        );
        if jobs.is_empty() && new_cursor.is_none() {
            gauge.clear = !more && retries.next.is_none();
            return Ok(if more { Progress::More } else { Progress::Idle });
        }
        let prepared = Prepared {
            target: Target::new(&row.url, &self.shared.settings),
            signer: Signer::new(&row.signing_secrets(now)),
        };
        let Some(attempts) = self.send_keeping_lease(row, &prepared, jobs, *held).await else {
            return Ok(Progress::LeaseLost);
        };
        let mut effects = self.effects(row, &attempts, new_cursor);
        effects.fresh_only = fresh_only;
        let asked = Instant::now();
        let round = Round {
            tenant: row.tenant_id,
            endpoint: row.id,
            attempts: attempts.clone(),
            effects: effects.clone(),
        };
        if !self.recorder.ask(round).await? {
            return Ok(Progress::LeaseLost);
        }
        *held = Some(asked); // recording renewed it
        if let Some(cursor) = new_cursor {
            row.cursor_seq = row.cursor_seq.max(cursor);
        }
        match effects.failing_since {
            Some(None) => row.failing_since = None,
            Some(Some(at)) => row.failing_since = row.failing_since.or(Some(at)),
            None => {}
        }
        let owed = attempts.iter().filter_map(|a| a.next_attempt_at).min();
        retries.next = match (retries.next, owed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        retries.stale = sent_retries;
        gauge.worked = true;
        gauge.clear = !more && !retries.stale && retries.next.is_none();
        self.shared.metrics.count_round(&attempts);
        if effects.disable {
            tracing::warn!(endpoint = %row.id, tenant = %row.tenant_id, "outbound endpoint disabled");
            return Ok(Progress::Stop);
        }
        Ok(if more { Progress::More } else { Progress::Idle })
    }

    /// Sends the jobs while renewing the lease every third of its duration. `None` if the
    /// lease was lost on the way, or could not be confirmed for a whole lease: the sends
    /// still under way are dropped, and the node holding the lease sends them.
    async fn send_keeping_lease(
        &self,
        row: &EndpointRow,
        prepared: &Prepared,
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
            attempts = self.send_all(prepared, jobs) => Some(attempts),
            () = keep => None,
        }
    }

    /// Sends the jobs, at most `concurrency_per_endpoint` at a time and each under the global
    /// limit; they start in order, so first attempts go out in commit order.
    async fn send_all(&self, prepared: &Prepared, jobs: Vec<Job>) -> Vec<AttemptRow> {
        let per_endpoint = self.shared.settings.concurrency_per_endpoint.max(1);
        futures::stream::iter(jobs)
            .map(|job| self.send_one(prepared, job))
            .buffered(per_endpoint)
            .collect()
            .await
    }

    async fn send_one(&self, prepared: &Prepared, job: Job) -> AttemptRow {
        let shared = &self.shared;
        let _permit = shared.in_flight.acquire().await.ok();
        let at = shared.clock.now();
        let (answer, took) = deliver::send(
            &shared.client,
            Request {
                target: &prepared.target,
                webhook_id: &job.event.webhook_id,
                timestamp: at.timestamp(),
                body: &job.event.body,
                signer: &prepared.signer,
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
            event_id: job.event.id,
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

    /// Updates the endpoint's backlog gauges if a round worked since they were last measured.
    async fn observe_backlog(&self, row: &EndpointRow, gauge: &mut Gauge) {
        if !gauge.worked {
            return;
        }
        gauge.measured = Some(Instant::now());
        gauge.worked = false;
        if gauge.clear {
            self.shared.metrics.backlog(row.tenant_id, row.id, 0, None);
            return;
        }
        if let Ok((backlog, oldest)) = self
            .gauges
            .ask((row.tenant_id, row.id, row.cursor_seq))
            .await
        {
            self.shared
                .metrics
                .backlog(row.tenant_id, row.id, backlog, oldest);
        }
    }
}
