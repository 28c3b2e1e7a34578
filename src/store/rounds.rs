//! Recording the outbound dispatcher's rounds: each endpoint's cursor, failure state and lease,
//! the attempts log and the pending retries, written together and fenced by the endpoint's
//! lease; several endpoints' rounds in one statement on PostgreSQL.

use chrono::{DateTime, Utc};
use diesel::sql_types::Text;
use diesel::QueryableByName;
use payrail_actors::domain::{EndpointId, TenantId};
use payrail_actors::ports::StoreError;

use super::deliveries::{scope, AttemptRow, AttemptStatus, RoundEffects};
use super::leases::{extend_lease, leased_binds, Lease, LEASED};
use super::stmt::{Bind, Dialect, Stmt};
use super::Db;

/// One endpoint's round to record: `(tenant, endpoint, attempts, effects)`.
pub type Round<'a> = (TenantId, EndpointId, &'a [AttemptRow], &'a RoundEffects);

/// What recording a round writes besides the endpoint row and the attempts.
struct Settlement {
    /// The status each attempt is logged with: an attempt followed by another of the same
    /// event in the round no longer waits for a retry.
    statuses: Vec<AttemptStatus>,
    /// Events whose earlier attempts waiting for a retry now have failed.
    settled: Vec<i64>,
    /// Events that owe no retry any more: their delivery rows go.
    done: Vec<i64>,
    /// Events that owe a retry: (sequence, attempts so far, when).
    owed: Vec<(i64, i64, DateTime<Utc>)>,
}

impl Settlement {
    /// Each event's last attempt in the round decides what it owes.
    fn of(attempts: &[AttemptRow], fresh_only: bool) -> Self {
        let mut last: std::collections::BTreeMap<i64, usize> = Default::default();
        for (i, a) in attempts.iter().enumerate() {
            last.insert(a.event_seq, i);
        }
        let statuses = attempts
            .iter()
            .enumerate()
            .map(|(i, a)| match a.status {
                AttemptStatus::Pending if last.get(&a.event_seq) != Some(&i) => {
                    AttemptStatus::Failed
                }
                status => status,
            })
            .collect();
        let mut settlement = Self {
            statuses,
            settled: Vec::new(),
            done: Vec::new(),
            owed: Vec::new(),
        };
        for (&seq, &i) in &last {
            let a = &attempts[i];
            if !fresh_only {
                settlement.settled.push(seq);
            }
            match (a.status, a.next_attempt_at) {
                (AttemptStatus::Pending, Some(next)) => {
                    settlement.owed.push((seq, a.attempt, next))
                }
                _ if !fresh_only => settlement.done.push(seq),
                _ => {}
            }
        }
        settlement
    }
}

/// An endpoint whose round was recorded (its lease held).
#[derive(QueryableByName)]
struct RecordedRow {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    id: String,
}

impl Db {
    /// Records a round of attempts at once, fenced by the endpoint's lease: the endpoint's
    /// cursor, failure state and lease first (which finds the lease this node holds and locks
    /// the row), then the attempts log and each delivery's pending retry (kept, moved on, or
    /// dropped), each written only while the lease is `lease`'s. Answers `false` (and writes
    /// nothing) if another node has taken the lease.
    pub async fn record_round(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        lease: &Lease,
        attempts: &[AttemptRow],
        effects: &RoundEffects,
    ) -> Result<bool, StoreError> {
        let recorded = self
            .record_rounds(lease, &[(tenant, endpoint, attempts, effects)])
            .await?;
        Ok(recorded.first().copied().unwrap_or(false))
    }

    /// Records rounds of several endpoints in one transaction (group commit), each fenced by
    /// its own endpoint's lease as in [`Db::record_round`]; answers, per round, whether it was
    /// recorded. On PostgreSQL a round is one statement (array binds, one data-modifying CTE
    /// per table), so it costs one statement however many attempts it holds, and a single
    /// round needs no transaction of its own; on SQLite the rounds' statements run in one
    /// transaction. A failure fails every round of the call.
    pub async fn record_rounds(
        &self,
        lease: &Lease,
        rounds: &[Round<'_>],
    ) -> Result<Vec<bool>, StoreError> {
        match self.dialect() {
            Dialect::Postgres => {
                let rows: Vec<RecordedRow> =
                    self.load(self.rounds_statement(lease, rounds)).await?;
                let recorded: std::collections::HashSet<(String, String)> =
                    rows.into_iter().map(|r| (r.tenant_id, r.id)).collect();
                Ok(rounds
                    .iter()
                    .map(|(tenant, endpoint, ..)| {
                        recorded.contains(&(tenant.to_string(), endpoint.to_string()))
                    })
                    .collect())
            }
            Dialect::Sqlite => {
                let mut stmts = Vec::new();
                let mut firsts = Vec::with_capacity(rounds.len());
                for round in rounds {
                    firsts.push(stmts.len());
                    stmts.extend(self.round_statements(lease, round));
                }
                let counts = self.transact(stmts).await?;
                Ok(firsts
                    .into_iter()
                    .map(|i| counts.get(i).copied().unwrap_or(0) > 0)
                    .collect())
            }
        }
    }

    /// PostgreSQL: every round of the call as one statement (array binds; one
    /// data-modifying CTE per table). The endpoints' update returns only the rows whose lease
    /// is `lease`'s, and every other write is joined to it. All of them see one snapshot: the
    /// earlier attempts it fails are never the rounds' own. An endpoint appears in at most one
    /// round of a call.
    fn rounds_statement(&self, lease: &Lease, rounds: &[Round<'_>]) -> Stmt {
        /// Joins a write's rows `x` to the endpoints whose lease held.
        const FENCED: &str = "JOIN ep ON ep.tenant_id = x.t AND ep.id = x.e";
        let (extend, extend_bind) = extend_lease(Dialect::Postgres, lease);
        // Per round: the cursor (never backwards), the run of failures (0: as it is, 1: ended,
        // 2: begun at `failing_at` unless under way) and whether it is disabled.
        let mut sql = format!(
            "WITH r AS (SELECT * FROM unnest(?, ?, ?, ?, ?, ?) \
             AS r(t, e, cursor_seq, failing, failing_at, disable)), \
             ep AS (UPDATE webhook_endpoints w SET cursor_seq = GREATEST(w.cursor_seq, r.cursor_seq), \
             {extend}, failing_since = CASE r.failing WHEN 1 THEN NULL \
             WHEN 2 THEN COALESCE(w.failing_since, r.failing_at) ELSE w.failing_since END, \
             status = CASE WHEN r.disable = 1 THEN 'disabled' ELSE w.status END \
             FROM r WHERE w.tenant_id = r.t AND w.id = r.e AND w.lease_owner = ? \
             RETURNING w.tenant_id, w.id)"
        );
        let texts = |f: &dyn Fn(&Round<'_>) -> String| rounds.iter().map(f).collect::<Vec<_>>();
        let mut binds = vec![
            Bind::TextArr(texts(&|r| r.0.to_string())),
            Bind::TextArr(texts(&|r| r.1.to_string())),
            Bind::I64Arr(
                rounds
                    .iter()
                    .map(|r| r.3.cursor_seq.unwrap_or(i64::MIN))
                    .collect(),
            ),
            Bind::I64Arr(
                rounds
                    .iter()
                    .map(|r| match r.3.failing_since {
                        None => 0,
                        Some(None) => 1,
                        Some(Some(_)) => 2,
                    })
                    .collect(),
            ),
            Bind::OptTsArr(rounds.iter().map(|r| r.3.failing_since.flatten()).collect()),
            Bind::I64Arr(rounds.iter().map(|r| i64::from(r.3.disable)).collect()),
            extend_bind,
            Bind::Text(lease.owner.clone()),
        ];
        // Each round's attempts and settlement, flattened with their endpoints.
        let mut attempts: Vec<(TenantId, EndpointId, &AttemptRow, AttemptStatus)> = Vec::new();
        let (mut settled, mut done, mut owed) = (Vec::new(), Vec::new(), Vec::new());
        for &(tenant, endpoint, round_attempts, effects) in rounds {
            let settlement = Settlement::of(round_attempts, effects.fresh_only);
            attempts.extend(
                round_attempts
                    .iter()
                    .zip(settlement.statuses)
                    .map(|(a, status)| (tenant, endpoint, a, status)),
            );
            settled.extend(
                settlement
                    .settled
                    .into_iter()
                    .map(|seq| (tenant, endpoint, seq)),
            );
            done.extend(
                settlement
                    .done
                    .into_iter()
                    .map(|seq| (tenant, endpoint, seq)),
            );
            owed.extend(
                settlement
                    .owed
                    .into_iter()
                    .map(|(seq, n, next)| (tenant, endpoint, seq, n, next)),
            );
        }
        if !attempts.is_empty() {
            sql.push_str(&format!(
                ", ins AS (INSERT INTO webhook_attempts (tenant_id, endpoint_id, id, event_seq, \
                 event_id, attempt, status, response_status, response_body, duration_ms, \
                 attempted_at, next_attempt_at) SELECT x.t, x.e, x.id, x.seq, x.event_id, \
                 x.attempt, x.status, x.response_status, x.response_body, x.duration_ms, \
                 x.attempted_at, x.next_attempt_at FROM unnest(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 AS x(t, e, id, seq, event_id, attempt, status, response_status, response_body, \
                 duration_ms, attempted_at, next_attempt_at) {FENCED})"
            ));
            binds.extend([
                Bind::TextArr(attempts.iter().map(|a| a.0.to_string()).collect()),
                Bind::TextArr(attempts.iter().map(|a| a.1.to_string()).collect()),
                Bind::TextArr(attempts.iter().map(|a| a.2.id.to_string()).collect()),
                Bind::I64Arr(attempts.iter().map(|a| a.2.event_seq).collect()),
                Bind::TextArr(attempts.iter().map(|a| a.2.event_id.to_string()).collect()),
                Bind::I64Arr(attempts.iter().map(|a| a.2.attempt).collect()),
                Bind::TextArr(attempts.iter().map(|a| a.3.as_str().to_owned()).collect()),
                Bind::OptI64Arr(
                    attempts
                        .iter()
                        .map(|a| a.2.response_status.map(i64::from))
                        .collect(),
                ),
                Bind::OptTextArr(attempts.iter().map(|a| a.2.response_body.clone()).collect()),
                Bind::I64Arr(attempts.iter().map(|a| a.2.duration_ms).collect()),
                Bind::TsArr(attempts.iter().map(|a| a.2.attempted_at).collect()),
                Bind::OptTsArr(attempts.iter().map(|a| a.2.next_attempt_at).collect()),
            ]);
        }
        let keyed = |rows: &[(TenantId, EndpointId, i64)]| {
            [
                Bind::TextArr(rows.iter().map(|r| r.0.to_string()).collect()),
                Bind::TextArr(rows.iter().map(|r| r.1.to_string()).collect()),
                Bind::I64Arr(rows.iter().map(|r| r.2).collect()),
            ]
        };
        if !settled.is_empty() {
            // Earlier attempts of these events no longer wait for a retry.
            sql.push_str(&format!(
                ", settled AS (UPDATE webhook_attempts a SET status = 'failed' \
                 FROM unnest(?, ?, ?) AS x(t, e, seq) {FENCED} WHERE a.tenant_id = x.t \
                 AND a.endpoint_id = x.e AND a.event_seq = x.seq AND a.status = 'pending')"
            ));
            binds.extend(keyed(&settled));
        }
        if !done.is_empty() {
            sql.push_str(&format!(
                ", done AS (DELETE FROM webhook_deliveries d USING unnest(?, ?, ?) \
                 AS x(t, e, seq) {FENCED} WHERE d.tenant_id = x.t AND d.endpoint_id = x.e \
                 AND d.event_seq = x.seq)"
            ));
            binds.extend(keyed(&done));
        }
        if !owed.is_empty() {
            sql.push_str(&format!(
                ", owed AS (INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_seq, \
                 attempts, next_attempt_at) SELECT x.t, x.e, x.seq, x.attempts, x.next \
                 FROM unnest(?, ?, ?, ?, ?) AS x(t, e, seq, attempts, next) {FENCED} \
                 ON CONFLICT (tenant_id, endpoint_id, event_seq) DO UPDATE SET \
                 attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at)"
            ));
            binds.extend([
                Bind::TextArr(owed.iter().map(|o| o.0.to_string()).collect()),
                Bind::TextArr(owed.iter().map(|o| o.1.to_string()).collect()),
                Bind::I64Arr(owed.iter().map(|o| o.2).collect()),
                Bind::I64Arr(owed.iter().map(|o| o.3).collect()),
                Bind::TsArr(owed.iter().map(|o| o.4).collect()),
            ]);
        }
        sql.push_str(" SELECT tenant_id, id FROM ep");
        Stmt::new(sql, binds)
    }

    /// SQLite: the round as statements of one transaction, each fenced by the lease. The
    /// earlier attempts are failed before the round's own are logged.
    fn round_statements(&self, lease: &Lease, round: &Round<'_>) -> Vec<Stmt> {
        let &(tenant, endpoint, attempts, effects) = round;
        let settlement = Settlement::of(attempts, effects.fresh_only);
        let mut stmts = Vec::with_capacity(attempts.len() * 3 + 1);
        stmts.push(self.endpoint_effects(tenant, endpoint, lease, effects));
        let fence = leased_binds(tenant, endpoint, lease);
        let fenced = |stmt: &str, values: Vec<Bind>| {
            let mut binds = scope(tenant, endpoint);
            binds.extend(values);
            binds.extend(fence.clone());
            Stmt::new(format!("{stmt} AND {LEASED}"), binds)
        };
        for &seq in &settlement.settled {
            stmts.push(fenced(
                "UPDATE webhook_attempts SET status = 'failed' WHERE tenant_id = ? \
                 AND endpoint_id = ? AND event_seq = ? AND status = 'pending'",
                vec![Bind::I64(seq)],
            ));
        }
        for (a, status) in attempts.iter().zip(&settlement.statuses) {
            stmts.push(self.insert_attempt(tenant, endpoint, lease, a, *status));
        }
        for &seq in &settlement.done {
            stmts.push(fenced(
                "DELETE FROM webhook_deliveries WHERE tenant_id = ? AND endpoint_id = ? \
                 AND event_seq = ?",
                vec![Bind::I64(seq)],
            ));
        }
        for &(seq, attempt, next) in &settlement.owed {
            let mut binds = scope(tenant, endpoint);
            binds.extend([Bind::I64(seq), Bind::I64(attempt), Bind::ts(next)]);
            binds.extend(fence.clone());
            stmts.push(Stmt::new(
                format!(
                    "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_seq, \
                     attempts, next_attempt_at) SELECT ?, ?, ?, ?, ? WHERE {LEASED} \
                     ON CONFLICT (tenant_id, endpoint_id, event_seq) DO UPDATE SET \
                     attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at"
                ),
                binds,
            ));
        }
        stmts
    }

    fn insert_attempt(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        lease: &Lease,
        a: &AttemptRow,
        status: AttemptStatus,
    ) -> Stmt {
        let mut binds = scope(tenant, endpoint);
        binds.extend([
            Bind::Text(a.id.to_string()),
            Bind::I64(a.event_seq),
            Bind::Text(a.event_id.to_string()),
            Bind::I64(a.attempt),
            Bind::text(status.as_str()),
            match a.response_status {
                Some(s) => Bind::I64(i64::from(s)),
                None => Bind::OptText(None),
            },
            Bind::OptText(a.response_body.clone()),
            Bind::I64(a.duration_ms),
            Bind::ts(a.attempted_at),
            Bind::opt_ts(a.next_attempt_at),
        ]);
        binds.extend(leased_binds(tenant, endpoint, lease));
        let status = match a.response_status {
            Some(_) => "?",
            None => "CAST(? AS BIGINT)",
        };
        Stmt::new(
            format!(
                "INSERT INTO webhook_attempts (tenant_id, endpoint_id, id, event_seq, event_id, \
                 attempt, status, response_status, response_body, duration_ms, attempted_at, \
                 next_attempt_at) SELECT ?, ?, ?, ?, ?, ?, ?, {status}, ?, ?, ?, ? WHERE {LEASED}"
            ),
            binds,
        )
    }

    /// The round's effects on its endpoint row, and the lease extended: only while `lease`
    /// holds it (the cursor never moves for a node that lost it, nor ever backwards).
    fn endpoint_effects(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        lease: &Lease,
        e: &RoundEffects,
    ) -> Stmt {
        let (extend, extend_bind) = extend_lease(self.dialect(), lease);
        let mut sets = vec![
            "cursor_seq = CASE WHEN cursor_seq < ? THEN ? ELSE cursor_seq END".to_owned(),
            extend,
        ];
        let cursor = e.cursor_seq.unwrap_or(i64::MIN);
        let mut binds = vec![Bind::I64(cursor), Bind::I64(cursor), extend_bind];
        match e.failing_since {
            Some(None) => sets.push("failing_since = NULL".into()),
            // A run already under way keeps its start.
            Some(Some(at)) => {
                sets.push("failing_since = COALESCE(failing_since, ?)".into());
                binds.push(Bind::ts(at));
            }
            None => {}
        }
        if e.disable {
            sets.push("status = 'disabled'".into());
        }
        binds.extend(leased_binds(tenant, endpoint, lease));
        Stmt::new(
            format!(
                "UPDATE webhook_endpoints SET {} WHERE tenant_id = ? AND id = ? \
                 AND lease_owner = ?",
                sets.join(", ")
            ),
            binds,
        )
    }
}
