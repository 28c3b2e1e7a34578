//! Operations: readiness ping, purging old dedup/idempotency rows, rebuilding the projections
//! from the events alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use payrail_actors::domain::{Invoice, InvoiceId, Payment, PaymentId, StreamId, TenantId};
use payrail_actors::ports::StoreError;

use super::rows::{parse_key, CountRow, TextRow};
use super::stmt::{Bind, Dialect, Stmt};
use super::write::{
    insert_rows, invoice_row, payment_row, refund_rows, INVOICES, PAYMENTS, REFUNDS,
};
use super::{Db, PREFER_INDEXES};

/// A table purged by age: its key (after `tenant_id`), the column holding its rows' age and
/// that column's index (a BRIN on PostgreSQL).
pub(crate) struct Aged {
    pub(crate) table: &'static str,
    pub(crate) key: &'static str,
    pub(crate) age: &'static str,
    pub(crate) index: &'static str,
}

pub(crate) const AGED_DEDUP: Aged = Aged {
    table: "webhook_dedup",
    key: "payment_id, gateway_event_id",
    age: "created_at",
    index: "webhook_dedup_created",
};

pub(crate) const AGED_IDEMPOTENCY: Aged = Aged {
    table: "idempotency_keys",
    key: "key",
    age: "created_at",
    index: "idempotency_keys_created",
};

pub(crate) const AGED_ATTEMPTS: Aged = Aged {
    table: "webhook_attempts",
    key: "endpoint_id, id",
    age: "attempted_at",
    index: "webhook_attempts_created",
};

/// A purge's statement: a batch of `aged` rows older than a time (the binds, in that order).
pub(crate) fn purge_sql(aged: &Aged) -> String {
    let Aged {
        table, key, age, ..
    } = aged;
    format!(
        "DELETE FROM {table} WHERE (tenant_id, {key}) IN \
         (SELECT tenant_id, {key} FROM {table} WHERE {age} < ? LIMIT ?)"
    )
}

/// Events read per query while rebuilding.
const REBUILD_PAGE_EVENTS: i64 = 1_000;
/// Rows per insert statement while rebuilding (bounds each statement's size).
const REBUILD_INSERT_ROWS: usize = 1_000;

/// Projections of one tenant, rebuilt by folding its events.
#[derive(Default)]
struct Replay {
    invoices: BTreeMap<InvoiceId, Invoice>,
    payments: BTreeMap<PaymentId, Payment>,
}

impl Db {
    /// Storage reachable and answering.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let rows: Vec<CountRow> = self
            .load(Stmt::new("SELECT CAST(1 AS BIGINT) AS n", vec![]))
            .await?;
        if rows.is_empty() {
            return Err(StoreError::Unavailable("ping answered nothing".into()));
        }
        Ok(())
    }

    /// Deletes dedup keys older than `dedup_before` and idempotency records older than
    /// `idempotency_before`, `batch` rows per transaction so writers are never held up long.
    /// Answers how many of each were deleted.
    pub async fn purge_expired(
        &self,
        dedup_before: DateTime<Utc>,
        idempotency_before: DateTime<Utc>,
        batch: usize,
    ) -> Result<(usize, usize), StoreError> {
        let dedup = self.purge_older(&AGED_DEDUP, dedup_before, batch).await?;
        let idempotency = self
            .purge_older(&AGED_IDEMPOTENCY, idempotency_before, batch)
            .await?;
        Ok((dedup, idempotency))
    }

    /// Deletes the rows of `aged` older than `before`, `batch` rows per transaction; answers
    /// how many. On PostgreSQL the age index first summarizes the page ranges filled since
    /// the last purge: a range without a summary is read whole by every purge, and the
    /// summaries that inserts request are left to autovacuum, which lags behind a busy table.
    pub(crate) async fn purge_older(
        &self,
        aged: &Aged,
        before: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let batch = batch.max(1);
        let sql = purge_sql(aged);
        if self.dialect() == Dialect::Postgres {
            self.transact(vec![Stmt::new(
                "SELECT brin_summarize_new_values(CAST(? AS regclass))",
                vec![Bind::text(aged.index)],
            )])
            .await?;
        }
        let mut total = 0;
        loop {
            let mut stmts = Vec::with_capacity(2);
            if self.dialect() == Dialect::Postgres {
                stmts.push(Stmt::new(PREFER_INDEXES, vec![]));
            }
            stmts.push(Stmt::new(
                sql.as_str(),
                vec![Bind::ts(before), Bind::I64(batch as i64)],
            ));
            let counts = self.transact(stmts).await?;
            let deleted = counts.last().copied().unwrap_or(0);
            total += deleted;
            if deleted < batch {
                return Ok(total);
            }
        }
    }

    /// Replaces `invoices`, `payments` and `refunds` with a replay of `events` (the domain's own
    /// `apply`), in one transaction. Meant for maintenance (`payrail rebuild-projections`) with
    /// the engine stopped. Answers how many invoices and payments were rebuilt.
    pub async fn rebuild_projections(&self) -> Result<usize, StoreError> {
        let tenants: Vec<TextRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT DISTINCT {} AS value FROM events ORDER BY value",
                    self.dialect().key_out("tenant_id")
                ),
                vec![],
            ))
            .await?;
        // One row per entity: the replay is keyed by id.
        let (mut invoices, mut payments, mut refunds) = (Vec::new(), Vec::new(), Vec::new());
        let mut rebuilt = 0;
        for row in tenants {
            let tenant = parse_key(&row.value, TenantId::from_uuid)?;
            let replay = self.replay_tenant(tenant).await?;
            rebuilt += replay.invoices.len() + replay.payments.len();
            for invoice in replay.invoices.values() {
                invoices.push(invoice_row(tenant, invoice, true)?);
            }
            for payment in replay.payments.values() {
                payments.push(payment_row(tenant, payment, true)?);
                refunds.extend(refund_rows(tenant, payment)?.into_iter().map(|(_, r)| r));
            }
        }
        let d = self.dialect();
        let mut stmts = vec![
            Stmt::new("DELETE FROM refunds", vec![]),
            Stmt::new("DELETE FROM payments", vec![]),
            Stmt::new("DELETE FROM invoices", vec![]),
        ];
        for (table, rows) in [
            (&INVOICES, invoices),
            (&PAYMENTS, payments),
            (&REFUNDS, refunds),
        ] {
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<_> = rows.by_ref().take(REBUILD_INSERT_ROWS).collect();
                stmts.extend(insert_rows(d, table, chunk)?);
            }
        }
        self.transact(stmts).await?;
        Ok(rebuilt)
    }

    async fn replay_tenant(&self, tenant: TenantId) -> Result<Replay, StoreError> {
        let mut replay = Replay::default();
        let mut after = 0;
        loop {
            let page = self
                .events_where(
                    "e.tenant_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
                    vec![
                        Bind::key(tenant),
                        Bind::I64(after),
                        Bind::I64(REBUILD_PAGE_EVENTS),
                    ],
                )
                .await?;
            let Some(last) = page.last() else {
                return Ok(replay);
            };
            after = last.sequence;
            for stored in &page {
                let event = &stored.event;
                if let Some(invoice_id) = event.invoice_id {
                    replay
                        .invoices
                        .entry(invoice_id)
                        .or_insert_with(|| Invoice::blank(tenant, invoice_id, event.occurred_at))
                        .apply(event);
                }
                if let StreamId::Payment(payment_id) = event.stream {
                    replay
                        .payments
                        .entry(payment_id)
                        .or_insert_with(|| Payment::blank(tenant, payment_id, event.occurred_at))
                        .apply(event);
                }
            }
        }
    }
}
