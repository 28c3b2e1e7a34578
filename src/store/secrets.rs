//! Secrets at rest: every tenant's webhook secrets re-sealed under the current master key. Runs
//! at start (sealing values an older version stored in the clear) and from
//! `payrail rotate-master-key`, after which the previous key can be retired.

use payrail_actors::ports::StoreError;

use super::rows::{seal_webhook_secret, tenant_columns, CountRow, TenantSqlRow};
use super::stmt::{Bind, Stmt};
use super::Db;

/// Tenants re-sealed per round trip.
const RESEAL_PAGE_TENANTS: i64 = 500;

impl Db {
    /// Re-seals every webhook secret (tenants' and outbound endpoints') not sealed under the
    /// current master key; answers how many rows changed. A row another node changed meanwhile is left to that node's value.
    pub async fn reseal_secrets(&self) -> Result<u64, StoreError> {
        let current = format!("pr1.{}.%", self.keys.current_id());
        let mut resealed = self.reseal_endpoint_secrets().await?;
        let mut after = String::new();
        loop {
            let rows: Vec<TenantSqlRow> = self
                .load(Stmt::new(
                    format!(
                        "SELECT {} FROM tenants WHERE id > ? AND (webhook_secret NOT LIKE ? \
                         OR previous_webhook_secret NOT LIKE ?) ORDER BY id LIMIT ?",
                        tenant_columns(self.dialect())
                    ),
                    vec![
                        Bind::Text(after.clone()),
                        Bind::Text(current.clone()),
                        Bind::Text(current.clone()),
                        Bind::I64(RESEAL_PAGE_TENANTS),
                    ],
                ))
                .await?;
            let Some(last) = rows.last() else {
                return Ok(resealed);
            };
            after = last.id().to_owned();
            let mut updates = Vec::with_capacity(rows.len());
            for row in rows {
                let stored = row.stored_secret().to_owned();
                let tenant = row.into_row(&self.keys)?;
                let previous = tenant
                    .previous_webhook_secret
                    .as_ref()
                    .map(|s| seal_webhook_secret(&self.keys, tenant.id, s));
                updates.push(Stmt::new(
                    "UPDATE tenants SET webhook_secret = ?, previous_webhook_secret = ? \
                     WHERE id = ? AND webhook_secret = ?",
                    vec![
                        Bind::Text(seal_webhook_secret(
                            &self.keys,
                            tenant.id,
                            &tenant.webhook_secret,
                        )),
                        Bind::OptText(previous),
                        Bind::Text(tenant.id.to_string()),
                        Bind::Text(stored),
                    ],
                ));
            }
            let counts = self.transact(updates).await?;
            resealed += counts.iter().filter(|&&n| n > 0).count() as u64;
        }
    }

    /// Stored replays of secret-bearing answers sealed under another key than the current one.
    /// Their keys also derive from the client's `Idempotency-Key`, which is never stored, so
    /// they cannot be re-sealed: the previous master key stays configured until they expire.
    pub async fn replays_under_other_keys(&self) -> Result<u64, StoreError> {
        let rows: Vec<CountRow> = self
            .load(Stmt::new(
                "SELECT count(*) AS n FROM idempotency_keys WHERE body LIKE 'pr1.%' \
                 AND body NOT LIKE ?",
                vec![Bind::Text(format!("pr1.{}.%", self.keys.current_id()))],
            ))
            .await?;
        Ok(rows.first().map_or(0, |r| r.n.max(0) as u64))
    }
}
