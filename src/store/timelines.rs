//! Timelines and the audit log: an invoice's and a payment's events, and the tenant's log,
//! paged and filtered by type or subject. Every read goes through the stream/version index or
//! the tenant's sequence; none walks a tenant's whole log for one entity.

use payrail_actors::domain::{InvoiceId, PaymentId, RefundId, StreamId, TenantId};
use payrail_actors::ports::StoreError;

use super::model::{StoredEvent, LIST_LIMIT_MAX};
use super::rows::{event_columns, into_stored, parse_id, EventRow, SeqIdRow, TextRow};
use super::stmt::{Bind, Dialect, Stmt};
use super::Db;

impl Db {
    /// Every event of the invoice and of its payments and refunds, oldest first.
    pub async fn invoice_timeline(
        &self,
        tenant: TenantId,
        invoice_id: InvoiceId,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match self.dialect() {
            Dialect::Postgres => self.pg_invoice_timeline(tenant, invoice_id).await,
            Dialect::Sqlite => {
                let binds = vec![
                    Bind::key(tenant),
                    Bind::key(invoice_id),
                    Bind::key(tenant),
                    Bind::key(invoice_id),
                ];
                self.events_where(SQLITE_INVOICE_EVENTS, binds).await
            }
        }
    }

    /// An invoice's timeline on PostgreSQL, where the log's stream keys are UUIDs and the
    /// payments' ids TypeID text: the payments' ids and the tenant's last sequence are read in
    /// one statement (one snapshot), then the streams' events up to that sequence. A payment
    /// created in between has only later events (each tenant's sequence is taken in commit
    /// order, under its counter row's lock), so the timeline is that snapshot's.
    async fn pg_invoice_timeline(
        &self,
        tenant: TenantId,
        invoice_id: InvoiceId,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let found: Vec<SeqIdRow> = self
            .load(Stmt::new(
                PG_INVOICE_STREAMS,
                vec![
                    Bind::text(tenant.to_string()),
                    Bind::text(tenant.to_string()),
                    Bind::text(invoice_id.to_string()),
                ],
            ))
            .await?;
        let last_seq = found.first().map_or(0, |row| row.seq);
        let mut streams = vec![invoice_id.uuid()];
        for id in found.iter().filter_map(|row| row.id.as_deref()) {
            streams.push(parse_id::<PaymentId>(id)?.uuid());
        }
        self.events_where(
            PG_INVOICE_EVENTS,
            vec![
                Bind::key(tenant),
                Bind::KeyArr(streams),
                Bind::I64(last_seq),
            ],
        )
        .await
    }

    /// The payment's stream (its refunds included), in order.
    pub async fn payment_timeline(
        &self,
        tenant: TenantId,
        payment_id: PaymentId,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_where(
            STREAM_EVENTS,
            vec![Bind::key(tenant), Bind::key(payment_id)],
        )
        .await
    }

    /// The tenant's audit log in sequence order, after `starting_after_seq`.
    pub async fn list_events(
        &self,
        tenant: TenantId,
        event_type: Option<&str>,
        subject_id: Option<&str>,
        limit: u32,
        starting_after_seq: Option<i64>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let subject = match subject_id {
            Some(s) => match self.subject_filter(s, tenant).await? {
                Some(subject) => Some(subject),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let filter = log_filter(event_type.is_some(), subject.as_ref().map(|s| s.sql));
        let mut binds = vec![
            Bind::key(tenant),
            Bind::I64(starting_after_seq.unwrap_or(0)),
        ];
        if let Some(t) = event_type {
            binds.push(Bind::text(t));
        }
        if let Some(subject) = subject {
            binds.extend(subject.binds);
        }
        // One row past the largest page, so a caller can tell whether another page exists.
        binds.push(Bind::I64(i64::from(limit.clamp(1, LIST_LIMIT_MAX + 1))));
        self.events_where(&filter, binds).await
    }

    pub(crate) async fn events_where(
        &self,
        filter: &str,
        binds: Vec<Bind>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<EventRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT {} FROM events e WHERE {filter}",
                    event_columns(self.dialect())
                ),
                binds,
            ))
            .await?;
        into_stored(rows)
    }
}

/// The tenant's last sequence and an invoice's payments, a payment per row (one row with no
/// payment when it has none; binds: the tenant, twice, and the invoice).
pub(crate) const PG_INVOICE_STREAMS: &str = "SELECT c.seq, p.id FROM (SELECT COALESCE( \
       (SELECT n.last_seq FROM event_counters n WHERE n.tenant_id = ?), 0) AS seq) c \
     LEFT JOIN payments p ON p.tenant_id = ? AND p.invoice_id = ?";

/// An invoice's timeline on PostgreSQL (binds: the tenant's UUID, the streams' UUIDs, the last
/// sequence), each stream through the stream/version index, sorted by sequence afterwards
/// (`+` hides `seq` from the planner, as in `log_filter`).
pub(crate) const PG_INVOICE_EVENTS: &str =
    "e.tenant_id = ? AND e.stream_id = ANY(?) AND +e.seq <= ? ORDER BY +e.seq";

/// An invoice's timeline on SQLite (binds: tenant, invoice, tenant, invoice): the events of
/// the invoice's stream and of its payments' streams (a refund's events are in its payment's),
/// each stream read through the stream/version index, the payments found through their
/// invoice index. The events are sorted by `seq` afterwards: `+e.seq` keeps the planner from
/// walking the tenant's whole log in `seq` order to spare that sort.
pub(crate) const SQLITE_INVOICE_EVENTS: &str = "e.tenant_id = ? AND e.stream_id IN \
     (SELECT ? UNION ALL SELECT p.id FROM payments p WHERE p.tenant_id = ? AND p.invoice_id = ?) \
     ORDER BY +e.seq";

/// A stream's events (binds: tenant, stream), through the stream/version index.
pub(crate) const STREAM_EVENTS: &str = "e.tenant_id = ? AND e.stream_id = ? ORDER BY e.version";

/// A page of the tenant's log (binds: tenant, cursor, then the type if `by_type`, then the
/// subject filter's, then the page size). A subject's page reads the subject's stream and
/// sorts it: `+` hides `seq` from the planners, which would otherwise walk the tenant's whole
/// log from the cursor in `seq` order to spare that sort (SQLite's, without statistics, did).
pub(crate) fn log_filter(by_type: bool, subject: Option<&str>) -> String {
    let seq = if subject.is_some() { "+e.seq" } else { "e.seq" };
    let mut filter = format!("e.tenant_id = ? AND {seq} > ?");
    if by_type {
        filter.push_str(" AND e.event_type = ?");
    }
    filter.push_str(subject.unwrap_or_default());
    filter.push_str(&format!(" ORDER BY {seq} LIMIT ?"));
    filter
}

/// A refund's events (binds: its payment, the refund).
pub(crate) const SUBJECT_REFUND: &str = " AND e.stream_id = ? AND e.subject_id = ?";

/// A stream's own events (an invoice's, or a payment's without its refunds'; binds: the
/// stream).
pub(crate) const SUBJECT_STREAM: &str = " AND e.stream_id = ? AND e.subject_id IS NULL";

/// A filter on an event's subject: SQL to append and its binds.
struct SubjectFilter {
    sql: &'static str,
    binds: Vec<Bind>,
}

impl Db {
    /// The filter on an event's subject, through an index: a subject is its event's stream,
    /// except that a refund's events are in its payment's stream, the refund in `subject_id`
    /// (which is NULL where the subject is the stream; no index reads it). Either way the
    /// stream/version index finds them. `None`: no event can have this subject (not an id, or
    /// a refund the tenant does not have).
    async fn subject_filter(
        &self,
        subject: &str,
        tenant: TenantId,
    ) -> Result<Option<SubjectFilter>, StoreError> {
        if let Ok(refund) = subject.parse::<RefundId>() {
            let payment: Option<TextRow> = self
                .load_one(Stmt::new(
                    "SELECT payment_id AS value FROM refunds WHERE tenant_id = ? AND id = ?",
                    vec![Bind::Text(tenant.to_string()), Bind::text(subject)],
                ))
                .await?;
            let Some(payment) = payment else {
                return Ok(None);
            };
            let payment: PaymentId = parse_id(&payment.value)?;
            return Ok(Some(SubjectFilter {
                sql: SUBJECT_REFUND,
                binds: vec![Bind::key(payment), Bind::key(refund)],
            }));
        }
        let Ok(stream) = subject.parse::<StreamId>() else {
            return Ok(None);
        };
        Ok(Some(SubjectFilter {
            sql: SUBJECT_STREAM,
            binds: vec![Bind::key(stream)],
        }))
    }
}
