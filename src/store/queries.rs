//! The HTTP layer's queries: tenants, API keys, invoice/payment reads, timelines and the audit
//! log. Every query about a tenant's data takes the tenant first.

use chrono::{DateTime, Utc};
use payrail_actors::domain::{
    ApiKeyId, Event, Invoice, InvoiceId, Payment, PaymentId, PaymentStatus, RefundId, StreamId,
    TenantId,
};
use payrail_actors::ports::{IdempotencyRecord, StoreError};
use secrecy::SecretString;

use super::model::{
    ApiKeyRow, ScopedResponse, StoredEvent, TenantRow, LIST_LIMIT_MAX, PAGE_SIZE_MAX,
};
use super::notify::revocation_notice;
use super::rows::{
    api_key_columns, event_columns, idempotency_columns, into_stored, parse_id,
    seal_webhook_secret, snapshot_columns, tenant_columns, ApiKeySqlRow, CountRow, DataRow,
    EventRow, IdempotencySqlRow, PairRow, TenantSqlRow, TextRow,
};
use super::stmt::{Bind, Dialect, Stmt};
use super::write::{event_row, idempotency_row, insert_events, insert_rows, IDEMPOTENCY};
use super::Db;

pub(crate) fn page_bounds(page: u32, page_size: u32) -> (i64, i64) {
    let size = page_size.clamp(1, PAGE_SIZE_MAX);
    let offset = u64::from(page.max(1) - 1) * u64::from(size);
    (i64::from(size), i64::try_from(offset).unwrap_or(i64::MAX))
}

fn count(rows: Vec<CountRow>) -> u64 {
    rows.first().map(|r| r.n.max(0) as u64).unwrap_or(0)
}

/// The insert of one event (outside a batch: API key lifecycle).
fn insert_event(db: &Db, event: &Event) -> Result<Vec<Stmt>, StoreError> {
    insert_events(db.dialect(), vec![event_row(event)?])
}

impl Db {
    // ----- tenants -----

    /// Stores the tenant with its first API key (and that key's `apikey.created` event) in one
    /// transaction, with the response to replay if the request carried an idempotency key.
    pub async fn create_tenant(
        &self,
        tenant: &TenantRow,
        first_key: &ApiKeyRow,
        key_event: &Event,
        response: Option<&ScopedResponse>,
    ) -> Result<(), StoreError> {
        let insert = Stmt::new(
            "INSERT INTO tenants (id, name, webhook_secret, previous_webhook_secret, \
             previous_valid_until, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                Bind::Text(tenant.id.to_string()),
                Bind::Text(tenant.name.clone()),
                Bind::Text(seal_webhook_secret(
                    &self.keys,
                    tenant.id,
                    &tenant.webhook_secret,
                )),
                Bind::OptText(
                    tenant
                        .previous_webhook_secret
                        .as_ref()
                        .map(|s| seal_webhook_secret(&self.keys, tenant.id, s)),
                ),
                Bind::opt_ts(tenant.previous_valid_until),
                Bind::ts(tenant.created_at),
            ],
        );
        let mut stmts = self.keep_response(response)?;
        stmts.push(insert);
        stmts.extend(self.insert_api_key(first_key, key_event)?);
        self.transact(stmts).await.map(drop)
    }

    /// The response stored under an idempotency key (`key` as the API layer stores it).
    pub async fn stored_response(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row: Option<IdempotencySqlRow> = self
            .load_one(Stmt::new(
                format!(
                    "SELECT {} FROM idempotency_keys WHERE tenant_id = ? AND key = ?",
                    idempotency_columns(self.dialect())
                ),
                vec![Bind::text(scope), Bind::text(key)],
            ))
            .await?;
        row.map(IdempotencySqlRow::into_record).transpose()
    }

    /// The insert keeping `response`, placed first in its transaction so that a key another
    /// request already stored fails the whole transaction (`IdempotencyKeyTaken`) before any
    /// effect is written.
    pub(crate) fn keep_response(
        &self,
        response: Option<&ScopedResponse>,
    ) -> Result<Vec<Stmt>, StoreError> {
        let rows = response
            .map(|r| idempotency_row(&r.scope, &r.record))
            .into_iter()
            .collect();
        insert_rows(self.dialect(), &IDEMPOTENCY, rows)
    }

    pub async fn get_tenant(&self, id: TenantId) -> Result<Option<TenantRow>, StoreError> {
        let row: Option<TenantSqlRow> = self
            .load_one(Stmt::new(
                format!(
                    "SELECT {} FROM tenants WHERE id = ?",
                    tenant_columns(self.dialect())
                ),
                vec![Bind::Text(id.to_string())],
            ))
            .await?;
        row.map(|r| r.into_row(&self.keys)).transpose()
    }

    /// Oldest first; `page` from 1.
    pub async fn list_tenants(
        &self,
        page: u32,
        page_size: u32,
    ) -> Result<(Vec<TenantRow>, u64), StoreError> {
        let (limit, offset) = page_bounds(page, page_size);
        let rows: Vec<TenantSqlRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT {} FROM tenants ORDER BY created_at, id LIMIT ? OFFSET ?",
                    tenant_columns(self.dialect())
                ),
                vec![Bind::I64(limit), Bind::I64(offset)],
            ))
            .await?;
        let total = count(
            self.load(Stmt::new("SELECT count(*) AS n FROM tenants", vec![]))
                .await?,
        );
        let rows = rows
            .into_iter()
            .map(|r| r.into_row(&self.keys))
            .collect::<Result<_, _>>()?;
        Ok((rows, total))
    }

    /// Makes `new_secret` current; the old one keeps verifying until `previous_valid_until`.
    /// False (and nothing written) if the tenant doesn't exist.
    pub async fn rotate_webhook_secret(
        &self,
        id: TenantId,
        new_secret: &SecretString,
        previous_valid_until: DateTime<Utc>,
        response: Option<&ScopedResponse>,
    ) -> Result<bool, StoreError> {
        if self.get_tenant(id).await?.is_none() {
            return Ok(false);
        }
        let mut stmts = self.keep_response(response)?;
        stmts.push(Stmt::new(
            "UPDATE tenants SET previous_webhook_secret = webhook_secret, \
             previous_valid_until = ?, webhook_secret = ? WHERE id = ?",
            vec![
                Bind::ts(previous_valid_until),
                Bind::Text(seal_webhook_secret(&self.keys, id, new_secret)),
                Bind::Text(id.to_string()),
            ],
        ));
        let counts = self.transact(stmts).await?;
        Ok(counts.last().copied().unwrap_or(0) > 0)
    }

    /// The current secret and, if any, the previous one with the end of its validity.
    #[allow(clippy::type_complexity)]
    pub async fn webhook_secrets(
        &self,
        id: TenantId,
    ) -> Result<Option<(SecretString, Option<(SecretString, DateTime<Utc>)>)>, StoreError> {
        Ok(self.get_tenant(id).await?.map(|t| {
            let previous = t.previous_webhook_secret.zip(t.previous_valid_until);
            (t.webhook_secret, previous)
        }))
    }

    // ----- API keys -----

    /// Stores the key and its `apikey.created` event in one transaction, with the response to
    /// replay if the request carried an idempotency key.
    pub async fn create_api_key(
        &self,
        key: &ApiKeyRow,
        event: &Event,
        response: Option<&ScopedResponse>,
    ) -> Result<(), StoreError> {
        let mut stmts = self.keep_response(response)?;
        stmts.extend(self.insert_api_key(key, event)?);
        self.transact(stmts).await?;
        self.announce(vec![key.tenant_id]);
        Ok(())
    }

    fn insert_api_key(&self, key: &ApiKeyRow, event: &Event) -> Result<Vec<Stmt>, StoreError> {
        let insert = Stmt::new(
            "INSERT INTO api_keys (tenant_id, id, name, role, secret_hash, created_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            vec![
                Bind::Text(key.tenant_id.to_string()),
                Bind::Text(key.id.to_string()),
                Bind::Text(key.name.clone()),
                Bind::Text(key.role.clone()),
                Bind::Text(key.secret_hash.clone()),
                Bind::ts(key.created_at),
                Bind::opt_ts(key.revoked_at),
            ],
        );
        let mut stmts = vec![insert];
        stmts.extend(insert_event(self, event)?);
        Ok(stmts)
    }

    /// For authentication: the key whatever its tenant (the caller then scopes to its tenant).
    pub async fn find_api_key(&self, key_id: ApiKeyId) -> Result<Option<ApiKeyRow>, StoreError> {
        if let Some(row) = self.key_cache.get(&key_id) {
            return Ok(Some(row));
        }
        let epoch = self.key_cache.epoch();
        let row: Option<ApiKeySqlRow> = self
            .load_one(Stmt::new(
                format!(
                    "SELECT {} FROM api_keys WHERE id = ?",
                    api_key_columns(self.dialect())
                ),
                vec![Bind::Text(key_id.to_string())],
            ))
            .await?;
        let row = row.map(ApiKeySqlRow::into_row).transpose()?;
        if let Some(row) = &row {
            self.key_cache.put(row, epoch);
        }
        Ok(row)
    }

    pub async fn list_api_keys(&self, tenant: TenantId) -> Result<Vec<ApiKeyRow>, StoreError> {
        let rows: Vec<ApiKeySqlRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT {} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id",
                    api_key_columns(self.dialect())
                ),
                vec![Bind::Text(tenant.to_string())],
            ))
            .await?;
        rows.into_iter().map(ApiKeySqlRow::into_row).collect()
    }

    /// Revokes the key and appends its `apikey.revoked` event in one transaction. False if
    /// the tenant has no such key; revoking a revoked key changes nothing and answers true.
    pub async fn revoke_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        event: &Event,
    ) -> Result<bool, StoreError> {
        let Some(key) = self
            .list_api_keys(tenant)
            .await?
            .into_iter()
            .find(|k| k.id == id)
        else {
            return Ok(false);
        };
        if key.revoked_at.is_some() {
            return Ok(true);
        }
        let update = Stmt::new(
            "UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
            vec![
                Bind::ts(event.occurred_at),
                Bind::Text(tenant.to_string()),
                Bind::Text(id.to_string()),
            ],
        );
        let mut stmts = vec![update];
        stmts.extend(insert_event(self, event)?);
        if self.dialect() == Dialect::Postgres {
            // Other nodes drop the key from their caches when this commits.
            stmts.push(revocation_notice(id));
        }
        let committed = self.transact(stmts).await;
        // Even if the outcome is unknown: the key must be read again.
        self.key_cache.revoked(&id);
        committed?;
        self.announce(vec![tenant]);
        Ok(true)
    }

    // ----- invoices and payments -----

    pub async fn get_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Invoice>, StoreError> {
        self.projection("invoices", tenant, id.to_string())
            .await?
            .map(|r| r.invoice())
            .transpose()
    }

    pub async fn get_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        self.projection("payments", tenant, id.to_string())
            .await?
            .map(|r| r.payment())
            .transpose()
    }

    async fn projection(
        &self,
        table: &str,
        tenant: TenantId,
        id: String,
    ) -> Result<Option<DataRow>, StoreError> {
        self.load_one(Stmt::new(
            format!(
                "SELECT {} FROM {table} WHERE tenant_id = ? AND id = ?",
                snapshot_columns(self.dialect(), table, "")
            ),
            vec![Bind::Text(tenant.to_string()), Bind::Text(id)],
        ))
        .await
    }

    /// Oldest first; optional filters by invoice and status.
    pub async fn list_payments(
        &self,
        tenant: TenantId,
        invoice_id: Option<InvoiceId>,
        status: Option<PaymentStatus>,
        page: u32,
        page_size: u32,
    ) -> Result<(Vec<Payment>, u64), StoreError> {
        let mut filter = String::from("tenant_id = ?");
        let mut binds = vec![Bind::Text(tenant.to_string())];
        if let Some(invoice) = invoice_id {
            filter.push_str(" AND invoice_id = ?");
            binds.push(Bind::Text(invoice.to_string()));
        }
        if let Some(status) = status {
            filter.push_str(" AND status = ?");
            binds.push(Bind::text(status.as_str()));
        }
        let (limit, offset) = page_bounds(page, page_size);
        let total = count(
            self.load(Stmt::new(
                format!("SELECT count(*) AS n FROM payments WHERE {filter}"),
                binds.clone(),
            ))
            .await?,
        );
        binds.extend([Bind::I64(limit), Bind::I64(offset)]);
        let rows: Vec<DataRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT {} FROM payments WHERE {filter} \
                     ORDER BY created_at, id LIMIT ? OFFSET ?",
                    snapshot_columns(self.dialect(), "payments", "")
                ),
                binds,
            ))
            .await?;
        let payments = rows
            .iter()
            .map(DataRow::payment)
            .collect::<Result<_, _>>()?;
        Ok((payments, total))
    }

    // ----- timelines and the audit log -----

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
        let found: Vec<PairRow> = self
            .load(Stmt::new(
                PG_INVOICE_STREAMS,
                vec![
                    Bind::text(tenant.to_string()),
                    Bind::text(tenant.to_string()),
                    Bind::text(invoice_id.to_string()),
                ],
            ))
            .await?;
        let mut last_seq = 0;
        let mut streams = vec![invoice_id.uuid()];
        for row in found {
            match row.a.as_str() {
                "seq" => {
                    last_seq = row
                        .b
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("a sequence of {:?}", row.b)))?
                }
                _ => streams.push(parse_id::<PaymentId>(&row.b)?.uuid()),
            }
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

/// An invoice's payments and the tenant's last sequence, as `(kind, value)` pairs: `seq` and
/// the number, `payment` and an id (binds: the tenant, twice, and the invoice).
pub(crate) const PG_INVOICE_STREAMS: &str = "SELECT 'seq'::text AS a, \
       COALESCE((SELECT c.last_seq FROM event_counters c WHERE c.tenant_id = ?), 0)::text AS b \
     UNION ALL SELECT 'payment', p.id FROM payments p WHERE p.tenant_id = ? AND p.invoice_id = ?";

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
