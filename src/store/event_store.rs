//! The `EventStore` port on SQL: same semantics as `payrail_actors::memory::MemoryStore`.

use async_trait::async_trait;
use payrail_actors::domain::invoice::parse_number;
use payrail_actors::domain::{
    Event, IdMap, Invoice, InvoiceId, Payment, PaymentId, RefundId, StreamId, TenantId,
};
use payrail_actors::ports::{EventStore, IdempotencyRecord, Loaded, StoreError, Unit};

use super::rows::{
    event_columns, into_events, parse_id, snapshot_columns, DataRow, EventRow, PairRow,
    ReservationRow, TextRow, TripleRow,
};
use super::stmt::{Bind, Stmt};
use super::unit_rows::UnitRows;
use super::Db;

/// A page of the payments awaiting a charge, every tenant's, oldest first (TypeIDs sort like
/// their time-ordered UUIDs, so `id` order is age order). Read through the partial index on
/// `id` of the payments awaiting a charge, which holds only those.
pub(crate) const AWAITING_CHARGE_PAGE: &str = "SELECT tenant_id AS a, id AS b FROM payments \
     WHERE awaiting_charge AND id > ? ORDER BY id LIMIT ?";

/// A page of the refunds still pending, every tenant's, oldest first; through the partial index
/// on `id` of the pending refunds.
pub(crate) const PENDING_REFUNDS_PAGE: &str =
    "SELECT tenant_id AS a, payment_id AS b, id AS c FROM refunds \
     WHERE status = 'pending' AND id > ? ORDER BY id LIMIT ?";

/// A stream's events after a version (binds: tenant, stream, version), through the
/// stream/version index.
pub(crate) const STREAM_EVENTS_AFTER: &str =
    "e.tenant_id = ? AND e.stream_id = ? AND e.version > ? ORDER BY e.version";

impl Db {
    /// The projection row's snapshot plus the trailing events of its own stream.
    async fn load_entity(
        &self,
        table: &str,
        tenant: TenantId,
        stream: StreamId,
    ) -> Result<Option<(DataRow, Vec<Event>)>, StoreError> {
        let d = self.dialect();
        let row: Option<DataRow> = self
            .load_one(Stmt::new(
                format!(
                    "SELECT {} FROM {table} WHERE tenant_id = ? AND id = ?",
                    snapshot_columns(d, table, "")
                ),
                vec![
                    Bind::Text(tenant.to_string()),
                    Bind::Text(stream.to_string()),
                ],
            ))
            .await?;
        let Some(row) = row else { return Ok(None) };
        let trailing = self.stream_events(tenant, stream, row.version).await?;
        Ok(Some((row, trailing)))
    }

    /// The money an invoice's payments in flight hold. Kept out of the invoice's snapshot,
    /// where it would grow with every payment and be rewritten by every one of its changes: the
    /// payment rows, written in the same transactions, already say it.
    async fn reservations(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
    ) -> Result<IdMap<PaymentId, i64>, StoreError> {
        let rows: Vec<ReservationRow> = self
            .load(Stmt::new(
                "SELECT id, amount FROM payments \
                 WHERE tenant_id = ? AND invoice_id = ? AND status = 'processing'",
                vec![
                    Bind::Text(tenant.to_string()),
                    Bind::Text(invoice.to_string()),
                ],
            ))
            .await?;
        rows.into_iter()
            .map(|r| Ok((parse_id(&r.id)?, r.amount)))
            .collect()
    }

    pub(crate) async fn stream_events(
        &self,
        tenant: TenantId,
        stream: StreamId,
        after_version: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<EventRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT {} FROM events e WHERE {STREAM_EVENTS_AFTER}",
                    event_columns(self.dialect())
                ),
                vec![
                    Bind::key(tenant),
                    Bind::key(stream),
                    Bind::I64(after_version),
                ],
            ))
            .await?;
        into_events(rows)
    }
}

#[async_trait]
impl EventStore for Db {
    fn prepare(&self, unit: &Unit) {
        UnitRows::prepare(unit);
    }

    async fn append_batch(&self, units: Vec<Unit>) -> Vec<Result<(), StoreError>> {
        if units.is_empty() {
            return Vec::new();
        }
        self.append_and_announce(units).await
    }

    async fn load_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Loaded<Invoice>>, StoreError> {
        let Some((row, trailing)) = self
            .load_entity("invoices", tenant, StreamId::Invoice(id))
            .await?
        else {
            return Ok(None);
        };
        let mut snapshot = row.invoice()?;
        snapshot.reservations = self.reservations(tenant, id).await?;
        Ok(Some(Loaded { snapshot, trailing }))
    }

    async fn load_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Loaded<Payment>>, StoreError> {
        let Some((row, trailing)) = self
            .load_entity("payments", tenant, StreamId::Payment(id))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Loaded {
            snapshot: row.payment()?,
            trailing,
        }))
    }

    async fn load_stream(
        &self,
        tenant: TenantId,
        stream: StreamId,
    ) -> Result<Vec<Event>, StoreError> {
        self.stream_events(tenant, stream, 0).await
    }

    async fn payment_gateway_events(
        &self,
        tenant: TenantId,
        payment: PaymentId,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<TextRow> = self
            .load(Stmt::new(
                "SELECT gateway_event_id AS value FROM webhook_dedup \
                 WHERE tenant_id = ? AND payment_id = ? \
                 UNION SELECT gateway_event_id AS value FROM events \
                 WHERE tenant_id = ? AND stream_id = ? AND gateway_event_id IS NOT NULL \
                 ORDER BY value",
                vec![
                    Bind::Text(tenant.to_string()),
                    Bind::Text(payment.to_string()),
                    Bind::key(tenant),
                    Bind::key(payment),
                ],
            ))
            .await?;
        Ok(rows.into_iter().map(|r| r.value).collect())
    }

    async fn idempotency_record(
        &self,
        tenant: TenantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.stored_response(&tenant.to_string(), key).await
    }

    async fn last_invoice_number(&self, tenant: TenantId) -> Result<u64, StoreError> {
        // Numbers are zero-padded: the longest, then the greatest, is the highest.
        let row: Option<TextRow> = self
            .load_one(Stmt::new(
                "SELECT number AS value FROM invoices WHERE tenant_id = ? \
                 ORDER BY length(number) DESC, number DESC LIMIT 1",
                vec![Bind::Text(tenant.to_string())],
            ))
            .await?;
        Ok(row.and_then(|r| parse_number(&r.value)).unwrap_or(0))
    }

    async fn payments_awaiting_charge(
        &self,
        after: Option<PaymentId>,
        limit: usize,
    ) -> Result<Vec<(TenantId, PaymentId)>, StoreError> {
        let after = after.map_or_else(String::new, |id| id.to_string());
        let rows: Vec<PairRow> = self
            .load_through_index(Stmt::new(
                AWAITING_CHARGE_PAGE,
                vec![
                    Bind::Text(after),
                    Bind::I64(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            ))
            .await?;
        rows.into_iter()
            .map(|r| Ok((parse_id(&r.a)?, parse_id(&r.b)?)))
            .collect()
    }

    async fn refunds_awaiting_outcome(
        &self,
        after: Option<RefundId>,
        limit: usize,
    ) -> Result<Vec<(TenantId, PaymentId, RefundId)>, StoreError> {
        let after = after.map_or_else(String::new, |id| id.to_string());
        let rows: Vec<TripleRow> = self
            .load_through_index(Stmt::new(
                PENDING_REFUNDS_PAGE,
                vec![
                    Bind::Text(after),
                    Bind::I64(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            ))
            .await?;
        rows.into_iter()
            .map(|r| Ok((parse_id(&r.a)?, parse_id(&r.b)?, parse_id(&r.c)?)))
            .collect()
    }
}
