//! The outbound dispatcher's storage: pending retries, the attempts log and the endpoint's
//! cursor (each round's record of them is in `rounds.rs`); the rounds' reads, replays,
//! redelivery, backlogs and the attempts purge.
//! Nothing here runs on the ingestion path: the dispatcher reads the log after commit.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use payrail_actors::domain::{AttemptId, EndpointId, EventId, TenantId};
use payrail_actors::ports::StoreError;

use super::endpoints::{endpoint_columns, EndpointRow, EndpointSqlRow};
use super::model::{ScopedResponse, StoredEvent};
use super::rows::{event_columns, parse_id, CountRow, EventRow};
use super::stmt::{from_micros, Bind, Dialect, Stmt};
use super::Db;

/// Events one replay may schedule.
pub const REPLAY_EVENTS_MAX: usize = 10_000;
/// Characters of a receiver's answer kept in the attempts log.
pub const RESPONSE_BODY_KEPT_BYTES: usize = 1_024;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    Succeeded,
    /// Failed; another attempt is scheduled.
    Pending,
    /// Failed; no attempt follows (schedule exhausted, endpoint gone or disabled by a 410).
    Failed,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Pending => "pending",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Succeeded, Self::Pending, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One attempt of one event to one endpoint, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub id: AttemptId,
    pub event_seq: i64,
    pub event_id: EventId,
    /// 1 for the first attempt of a delivery.
    pub attempt: i64,
    pub status: AttemptStatus,
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    pub duration_ms: i64,
    pub attempted_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A delivery due for another attempt, with its event.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// Attempts made so far in this delivery.
    pub attempts: i64,
    pub event: StoredEvent,
}

/// What a round of attempts changes on its endpoint, written with the attempts.
#[derive(Debug, Clone, Default)]
pub struct RoundEffects {
    /// The cursor moves on to here (first attempts of every event up to it are recorded).
    pub cursor_seq: Option<i64>,
    /// `Some(None)`: a success ended the run of failures; `Some(Some(t))`: a run began at `t`.
    pub failing_since: Option<Option<DateTime<Utc>>>,
    pub disable: bool,
    /// Every attempt is the first of an event past the cursor, and the endpoint owed no retry
    /// when the round began: no earlier attempt of these events waits for a retry and none of
    /// them has a delivery row, so the round settles nothing but its own attempts. (False,
    /// the default, settles every event of the round.)
    pub fresh_only: bool,
}

#[derive(QueryableByName)]
struct DueRow {
    #[diesel(sql_type = BigInt)]
    attempts: i64,
    #[diesel(embed)]
    event: EventRow,
}

#[derive(QueryableByName)]
struct AttemptSqlRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    event_seq: i64,
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = BigInt)]
    attempt: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    response_status: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    response_body: Option<String>,
    #[diesel(sql_type = BigInt)]
    duration_ms: i64,
    #[diesel(sql_type = BigInt)]
    attempted_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    next_attempt_at: Option<i64>,
}

impl AttemptSqlRow {
    fn into_row(self) -> Result<AttemptRow, StoreError> {
        Ok(AttemptRow {
            id: parse_id(&self.id)?,
            event_seq: self.event_seq,
            event_id: parse_id(&self.event_id)?,
            attempt: self.attempt,
            status: AttemptStatus::parse(&self.status)
                .ok_or_else(|| super::rows::corrupt(format!("attempt status {}", self.status)))?,
            response_status: self.response_status.and_then(|s| u16::try_from(s).ok()),
            response_body: self.response_body,
            duration_ms: self.duration_ms,
            attempted_at: from_micros(self.attempted_at),
            next_attempt_at: self.next_attempt_at.map(from_micros),
        })
    }
}

#[derive(QueryableByName)]
struct RoundStateRow {
    /// The position of the endpoint in the request, from 1.
    #[diesel(sql_type = BigInt)]
    slot: i64,
    #[diesel(embed)]
    endpoint: EndpointSqlRow,
    #[diesel(sql_type = Nullable<BigInt>)]
    next_retry: Option<i64>,
}

#[derive(QueryableByName)]
struct BacklogRow {
    /// The position of the endpoint in the request, from 1.
    #[diesel(sql_type = BigInt)]
    slot: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest: Option<i64>,
}

#[derive(QueryableByName)]
struct SeqTypeRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    event_type: String,
}

/// Binds `(tenant, endpoint)`.
pub(super) fn scope(tenant: TenantId, endpoint: EndpointId) -> Vec<Bind> {
    vec![
        Bind::Text(tenant.to_string()),
        Bind::Text(endpoint.to_string()),
    ]
}

/// `INSERT … SELECT <values> WHERE <the endpoint exists>`: scheduling for an endpoint deleted
/// meanwhile leaves nothing behind (a round's writes check the endpoint's lease instead).
const IF_ENDPOINT: &str =
    "WHERE EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.tenant_id = ? AND w.id = ?)";

impl Db {
    /// The endpoint's deliveries due at `now`, oldest due first.
    pub async fn due_deliveries(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut binds = vec![Bind::key(tenant)];
        binds.extend(scope(tenant, endpoint));
        binds.extend([Bind::ts(now), Bind::I64(limit as i64)]);
        let rows: Vec<DueRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT d.attempts, {} FROM webhook_deliveries d \
                     JOIN events e ON e.tenant_id = ? AND e.seq = d.event_seq \
                     WHERE d.tenant_id = ? AND d.endpoint_id = ? AND d.next_attempt_at <= ? \
                     ORDER BY d.next_attempt_at, d.event_seq LIMIT ?",
                    event_columns(self.dialect())
                ),
                binds,
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DueDelivery {
                    attempts: r.attempts,
                    event: r.event.into_stored()?,
                })
            })
            .collect()
    }

    /// When the endpoint's next pending retry is due, if it has one.
    pub async fn next_retry_at(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows: Vec<CountRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT {} AS n FROM webhook_deliveries WHERE tenant_id = ? AND endpoint_id = ? \
                     ORDER BY next_attempt_at LIMIT 1",
                    self.dialect().ts_out("next_attempt_at")
                ),
                scope(tenant, endpoint),
            ))
            .await?;
        Ok(rows.first().map(|r| from_micros(r.n)))
    }

    /// The tenant's events after `after_seq`, in commit order (the dispatcher's tail).
    pub async fn events_after(
        &self,
        tenant: TenantId,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(
            "e.tenant_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
            vec![
                Bind::key(tenant),
                Bind::I64(after_seq),
                Bind::I64(limit as i64),
            ],
        )
        .await
    }

    /// Each endpoint as it is now (`None` once deleted) and when its next retry is due: what
    /// a round needs to know before it sends. One query for all of them on PostgreSQL.
    pub async fn round_states(
        &self,
        endpoints: &[(TenantId, EndpointId)],
    ) -> Result<Vec<Option<(EndpointRow, Option<DateTime<Utc>>)>>, StoreError> {
        let d = self.dialect();
        let next_retry = |tenant: &str, endpoint: &str| {
            format!(
                "(SELECT {} FROM webhook_deliveries d WHERE d.tenant_id = {tenant} \
                 AND d.endpoint_id = {endpoint}) AS next_retry",
                d.ts_out("min(d.next_attempt_at)")
            )
        };
        let rows: Vec<RoundStateRow> = match d {
            Dialect::Postgres => {
                self.load(Stmt::new(
                    format!(
                        "SELECT k.slot, {}, {} FROM unnest(?, ?) WITH ORDINALITY AS k(t, e, slot) \
                         JOIN webhook_endpoints w ON w.tenant_id = k.t AND w.id = k.e",
                        endpoint_columns(d),
                        next_retry("w.tenant_id", "w.id")
                    ),
                    vec![
                        Bind::TextArr(endpoints.iter().map(|(t, _)| t.to_string()).collect()),
                        Bind::TextArr(endpoints.iter().map(|(_, e)| e.to_string()).collect()),
                    ],
                ))
                .await?
            }
            // No arrays: one query each (SQLite's queries are local calls).
            Dialect::Sqlite => {
                let mut rows = Vec::with_capacity(endpoints.len());
                for (slot, &(tenant, endpoint)) in endpoints.iter().enumerate() {
                    let mut binds = vec![Bind::I64(slot as i64 + 1)];
                    binds.extend(scope(tenant, endpoint));
                    binds.extend(scope(tenant, endpoint));
                    rows.extend(
                        self.load::<RoundStateRow>(Stmt::new(
                            format!(
                                "SELECT ? AS slot, {}, {} FROM webhook_endpoints \
                                 WHERE tenant_id = ? AND id = ?",
                                endpoint_columns(d),
                                next_retry("?", "?")
                            ),
                            binds,
                        ))
                        .await?,
                    );
                }
                rows
            }
        };
        let mut states: Vec<Option<_>> = endpoints.iter().map(|_| None).collect();
        for row in rows {
            let slot = usize::try_from(row.slot - 1).map_err(super::rows::corrupt)?;
            if let Some(state) = states.get_mut(slot) {
                *state = Some((
                    row.endpoint.into_row(&self.keys)?,
                    row.next_retry.map(from_micros),
                ));
            }
        }
        Ok(states)
    }

    /// The endpoint's attempts, newest first, after the attempt `starting_after` (cursor
    /// paging), optionally of one status. Answers one more than `limit` if there are more.
    pub async fn list_attempts(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        status: Option<AttemptStatus>,
        limit: usize,
        starting_after: Option<AttemptId>,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        let d = self.dialect();
        let mut filter = String::from("tenant_id = ? AND endpoint_id = ?");
        let mut binds = scope(tenant, endpoint);
        if let Some(status) = status {
            filter.push_str(" AND status = ?");
            binds.push(Bind::text(status.as_str()));
        }
        if let Some(after) = starting_after {
            // TypeIDs of UUIDv7s sort by creation time as text.
            filter.push_str(" AND id < ?");
            binds.push(Bind::Text(after.to_string()));
        }
        binds.push(Bind::I64(limit as i64 + 1));
        let rows: Vec<AttemptSqlRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT id, event_seq, event_id, attempt, status, response_status, \
                     response_body, duration_ms, {} AS attempted_at, {} AS next_attempt_at \
                     FROM webhook_attempts WHERE {filter} ORDER BY id DESC LIMIT ?",
                    d.ts_out("attempted_at"),
                    d.ts_out("next_attempt_at")
                ),
                binds,
            ))
            .await?;
        rows.into_iter().map(AttemptSqlRow::into_row).collect()
    }

    /// The events that occurred in `[since, until)` (and that `wanted` keeps) that a replay
    /// sends the endpoint again: those up to its cursor (later ones go out anyway). `None` if
    /// the range holds more than [`REPLAY_EVENTS_MAX`].
    pub async fn replay_range(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let mut binds = vec![Bind::key(tenant), Bind::ts(since), Bind::ts(until)];
        binds.extend(scope(tenant, endpoint));
        binds.push(Bind::I64(REPLAY_EVENTS_MAX as i64 + 1));
        let rows: Vec<SeqTypeRow> = self
            .load(Stmt::new(
                "SELECT e.seq, e.event_type FROM events e WHERE e.tenant_id = ? \
                 AND e.occurred_at >= ? AND e.occurred_at < ? AND e.seq <= \
                 (SELECT w.cursor_seq FROM webhook_endpoints w WHERE w.tenant_id = ? AND w.id = ?) \
                 ORDER BY e.seq LIMIT ?",
                binds,
            ))
            .await?;
        if rows.len() > REPLAY_EVENTS_MAX {
            return Ok(None);
        }
        let seqs: Vec<i64> = rows
            .into_iter()
            .filter(|r| wanted(&r.event_type))
            .map(|r| r.seq)
            .collect();
        Ok(Some(seqs))
    }

    /// Schedules the events at `seqs` for a new delivery (attempt 1) to the endpoint at `now`,
    /// storing `response` (the request's answer, for its `Idempotency-Key`) with the last of
    /// them. Scheduling is an upsert: a retry after a failure schedules the same deliveries.
    pub async fn schedule(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        seqs: &[i64],
        now: DateTime<Utc>,
        response: Option<&ScopedResponse>,
    ) -> Result<(), StoreError> {
        let stmts: Vec<Stmt> = seqs
            .iter()
            .map(|&seq| {
                let mut binds = scope(tenant, endpoint);
                binds.extend([Bind::I64(seq), Bind::ts(now)]);
                binds.extend(scope(tenant, endpoint));
                Stmt::new(
                    format!(
                        "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_seq, \
                         attempts, next_attempt_at) SELECT ?, ?, ?, 0, ? {IF_ENDPOINT} \
                         ON CONFLICT (tenant_id, endpoint_id, event_seq) DO UPDATE SET \
                         attempts = 0, next_attempt_at = excluded.next_attempt_at"
                    ),
                    binds,
                )
            })
            .collect();
        let mut chunks: Vec<Vec<Stmt>> = stmts.chunks(500).map(<[Stmt]>::to_vec).collect();
        let kept = self.keep_response(response)?;
        match chunks.last_mut() {
            Some(last) => last.extend(kept),
            None => chunks.push(kept),
        }
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            self.transact(chunk).await?;
        }
        Ok(())
    }

    /// The tenant's event with this id (a scan of the tenant's log: there is no index on
    /// event ids, which would cost every commit a write).
    pub async fn find_event(
        &self,
        tenant: TenantId,
        id: EventId,
    ) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self
            .events_where(
                "e.tenant_id = ? AND e.event_id = ?",
                vec![Bind::key(tenant), Bind::key(id)],
            )
            .await?
            .into_iter()
            .next())
    }

    /// Undelivered work of endpoints `(tenant, endpoint, cursor)`, in order: how many events
    /// (past its cursor, or waiting for a retry) and when the oldest of them occurred. One
    /// query for all of them on PostgreSQL.
    pub async fn endpoint_backlogs(
        &self,
        endpoints: &[(TenantId, EndpointId, i64)],
    ) -> Result<Vec<(i64, Option<DateTime<Utc>>)>, StoreError> {
        let d = self.dialect();
        // Two point lookups (the event after the cursor; the events of the pending retries,
        // by key) rather than one `seq = ? OR seq IN (…)` filter, which no index serves and
        // which read the tenant's whole log.
        // `key`: the tenant as the events' key (`Bind::Key`).
        let backlog = |tenant: &str, key: &str, endpoint: &str, cursor: &str| {
            format!(
                "COALESCE((SELECT c.last_seq FROM event_counters c WHERE c.tenant_id = {tenant}), 0) \
                 - {cursor} + (SELECT count(*) FROM webhook_deliveries d \
                 WHERE d.tenant_id = {tenant} AND d.endpoint_id = {endpoint}) AS n, \
                 (SELECT {} FROM (SELECT e.occurred_at AS at FROM events e \
                 WHERE e.tenant_id = {key} AND e.seq = {cursor} + 1 \
                 UNION ALL SELECT e.occurred_at AS at FROM webhook_deliveries d \
                 JOIN events e ON e.tenant_id = {key} AND e.seq = d.event_seq \
                 WHERE d.tenant_id = {tenant} AND d.endpoint_id = {endpoint}) o) AS oldest",
                d.ts_out("min(o.at)")
            )
        };
        let rows: Vec<BacklogRow> = match d {
            Dialect::Postgres => {
                self.load(Stmt::new(
                    format!(
                        "SELECT k.slot, {} FROM unnest(?, ?, ?, ?) WITH ORDINALITY \
                         AS k(t, tk, e, cursor_seq, slot)",
                        backlog("k.t", "k.tk", "k.e", "k.cursor_seq")
                    ),
                    vec![
                        Bind::TextArr(endpoints.iter().map(|e| e.0.to_string()).collect()),
                        Bind::KeyArr(endpoints.iter().map(|e| e.0.uuid()).collect()),
                        Bind::TextArr(endpoints.iter().map(|e| e.1.to_string()).collect()),
                        Bind::I64Arr(endpoints.iter().map(|e| e.2).collect()),
                    ],
                ))
                .await?
            }
            // No arrays: one query each (SQLite's queries are local calls).
            Dialect::Sqlite => {
                let mut rows = Vec::with_capacity(endpoints.len());
                for (slot, &(tenant, endpoint, cursor)) in endpoints.iter().enumerate() {
                    let (t, e) = (tenant.to_string(), endpoint.to_string());
                    let key = Bind::key(tenant);
                    let binds = vec![
                        Bind::I64(slot as i64 + 1),
                        Bind::Text(t.clone()),
                        Bind::I64(cursor),
                        Bind::Text(t.clone()),
                        Bind::Text(e.clone()),
                        key.clone(),
                        Bind::I64(cursor),
                        key,
                        Bind::Text(t),
                        Bind::Text(e),
                    ];
                    rows.extend(
                        self.load::<BacklogRow>(Stmt::new(
                            format!("SELECT ? AS slot, {}", backlog("?", "?", "?", "?")),
                            binds,
                        ))
                        .await?,
                    );
                }
                rows
            }
        };
        let mut backlogs = vec![(0, None); endpoints.len()];
        for row in rows {
            let slot = usize::try_from(row.slot - 1).map_err(super::rows::corrupt)?;
            if let Some(b) = backlogs.get_mut(slot) {
                *b = (row.n.max(0), row.oldest.map(from_micros));
            }
        }
        Ok(backlogs)
    }

    /// Deletes attempts logged before `before`, `batch` rows per transaction; answers how many.
    pub async fn purge_attempts(
        &self,
        before: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        self.purge_older(&super::ops::AGED_ATTEMPTS, before, batch)
            .await
    }
}
