//! The HTTP layer's queries: tenants, API keys, invoice/payment reads (timelines and the audit
//! log are in `timelines.rs`). Every query about a tenant's data takes the tenant first.

use chrono::{DateTime, Utc};
use payrail_actors::domain::{
    ApiKeyId, Event, Invoice, InvoiceId, Payment, PaymentId, PaymentStatus, TenantId,
};
use payrail_actors::ports::{IdempotencyRecord, StoreError};
use secrecy::SecretString;

use super::model::{ApiKeyRow, ScopedResponse, TenantRow, PAGE_SIZE_MAX};
use super::notify::revocation_notice;
use super::rows::{
    api_key_columns, corrupt, idempotency_columns, seal_webhook_secret, snapshot_columns,
    tenant_columns, ApiKeySqlRow, CountRow, DataRow, IdempotencySqlRow, PlacedIdempotencySqlRow,
    TenantSqlRow,
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

    /// The response stored under an idempotency key (`key` as the API layer stores it). On
    /// PostgreSQL the lookups of concurrent requests go out together, one statement for all.
    pub async fn stored_response(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        if self.dialect() == Dialect::Sqlite {
            let row: Option<IdempotencySqlRow> = self
                .load_one(Stmt::new(
                    format!(
                        "SELECT {} FROM idempotency_keys WHERE tenant_id = ? AND key = ?",
                        idempotency_columns(Dialect::Sqlite)
                    ),
                    vec![Bind::text(scope), Bind::text(key)],
                ))
                .await?;
            return row.map(IdempotencySqlRow::into_record).transpose();
        }
        let db = self.clone();
        let read = move |keys| {
            let db = db.clone();
            async move { db.stored_responses(keys).await }
        };
        self.response_lookups
            .get((scope.to_owned(), key.to_owned()), read)
            .await
    }

    /// PostgreSQL: the responses stored under (scope, key) pairs, by their position among
    /// them; each pair probed through the primary key (the `LIMIT` keeps the planner from
    /// joining the table as a whole).
    async fn stored_responses(
        &self,
        keys: Vec<(String, String)>,
    ) -> Result<Vec<(usize, IdempotencyRecord)>, StoreError> {
        let (scopes, keys): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let rows: Vec<PlacedIdempotencySqlRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT k.i - 1 AS position, r.* FROM unnest(?, ?) WITH ORDINALITY AS k(t, g, i) \
                     CROSS JOIN LATERAL (SELECT {} FROM idempotency_keys x \
                     WHERE x.tenant_id = k.t AND x.key = k.g LIMIT 1) r",
                    idempotency_columns(Dialect::Postgres)
                ),
                vec![Bind::TextArr(scopes), Bind::TextArr(keys)],
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    usize::try_from(r.position).map_err(corrupt)?,
                    r.row.into_record()?,
                ))
            })
            .collect()
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
}
