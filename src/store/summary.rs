//! Read-only summaries of one tenant's data for operators: where its audit log ends (a live
//! stream without a resume position starts there) and how much it holds (the console's
//! platform view). Counts scan the tenant's rows through indexes that start with `tenant_id`.

use diesel::sql_types::{BigInt, Nullable};
use diesel::QueryableByName;
use payrail_actors::domain::TenantId;
use payrail_actors::ports::StoreError;

use super::stmt::{Bind, Stmt};
use super::Db;

/// How much one tenant holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct TenantVolumes {
    #[diesel(sql_type = BigInt)]
    pub invoices: i64,
    #[diesel(sql_type = BigInt)]
    pub payments: i64,
    #[diesel(sql_type = BigInt)]
    pub refunds: i64,
    #[diesel(sql_type = BigInt)]
    pub events: i64,
}

#[derive(QueryableByName)]
struct HeadRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    head: Option<i64>,
}

impl Db {
    /// The `sequence` of the tenant's latest event (0 when it has none).
    pub async fn last_sequence(&self, tenant: TenantId) -> Result<i64, StoreError> {
        let row: Option<HeadRow> = self
            .load_one(Stmt::new(
                "SELECT max(seq) AS head FROM events WHERE tenant_id = ?",
                vec![Bind::key(tenant)],
            ))
            .await?;
        Ok(row.and_then(|r| r.head).unwrap_or(0))
    }

    /// How many invoices, payments, refunds and audit events the tenant has.
    pub async fn tenant_volumes(&self, tenant: TenantId) -> Result<TenantVolumes, StoreError> {
        let id = tenant.to_string();
        let row: Option<TenantVolumes> = self
            .load_one(Stmt::new(
                "SELECT (SELECT count(*) FROM invoices WHERE tenant_id = ?) AS invoices, \
                 (SELECT count(*) FROM payments WHERE tenant_id = ?) AS payments, \
                 (SELECT count(*) FROM refunds WHERE tenant_id = ?) AS refunds, \
                 (SELECT count(*) FROM events WHERE tenant_id = ?) AS events",
                vec![
                    Bind::Text(id.clone()),
                    Bind::Text(id.clone()),
                    Bind::Text(id),
                    Bind::key(tenant),
                ],
            ))
            .await?;
        row.ok_or_else(|| StoreError::Corrupt("no row from a count".into()))
    }
}
