//! Outbound webhook endpoints: a tenant's subscriptions with their sealed secrets and the
//! cursor the dispatcher keeps into the tenant's audit log. Every query takes the tenant.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use payrail_actors::domain::{EndpointId, TenantId};
use payrail_actors::ports::StoreError;
use secrecy::{ExposeSecret, SecretString};

use super::model::ScopedResponse;
use super::rows::{corrupt, from_json, parse_id};
use super::stmt::{from_micros, Bind, Dialect, Stmt};
use super::Db;
use crate::keys::Keys;

/// Endpoints one tenant may have.
pub const ENDPOINTS_PER_TENANT_MAX: usize = 50;
/// Endpoints the dispatcher loads per page when it lists every enabled one.
const ENABLED_PAGE_ENDPOINTS: i64 = 1_000;

/// An outbound webhook endpoint, with its secrets in the clear (sealed at rest).
#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub tenant_id: TenantId,
    pub id: EndpointId,
    pub url: String,
    pub description: String,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub secret: SecretString,
    pub previous_secret: Option<SecretString>,
    pub previous_valid_until: Option<DateTime<Utc>>,
    /// Every event of the tenant's log up to this `sequence` has had its first attempt.
    pub cursor_seq: i64,
    /// Since when every attempt has failed (none since the last success).
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl EndpointRow {
    /// Whether the endpoint subscribes to events of this type.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    /// The secrets a delivery at `now` is signed with: the current one, and the previous one
    /// while its overlap lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&SecretString> {
        let mut secrets = vec![&self.secret];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_valid_until) {
            if now < until {
                secrets.push(previous);
            }
        }
        secrets
    }
}

/// What a `PATCH` changes; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// What an endpoint's secret is sealed for: its own row.
fn secret_context(tenant: TenantId, id: EndpointId) -> String {
    format!("webhook endpoint secret of {tenant}/{id}")
}

pub(crate) fn seal_endpoint_secret(
    keys: &Keys,
    tenant: TenantId,
    id: EndpointId,
    secret: &SecretString,
) -> String {
    keys.seal(
        b"",
        &secret_context(tenant, id),
        secret.expose_secret().as_bytes(),
    )
}

fn open_endpoint_secret(
    keys: &Keys,
    tenant: TenantId,
    id: EndpointId,
    stored: &str,
) -> Result<SecretString, StoreError> {
    let bytes = keys
        .open(b"", &secret_context(tenant, id), stored)
        .map_err(|e| StoreError::Unavailable(format!("endpoint {id}: {e}")))?;
    String::from_utf8(bytes)
        .map(SecretString::from)
        .map_err(|_| corrupt("an endpoint secret is not UTF-8"))
}

pub(crate) fn endpoint_columns(d: Dialect) -> String {
    format!(
        "tenant_id, id, url, description, event_types, status, secret, previous_secret, \
         {} AS previous_valid_until, cursor_seq, {} AS failing_since, {} AS created_at",
        d.ts_out("previous_valid_until"),
        d.ts_out("failing_since"),
        d.ts_out("created_at")
    )
}

#[derive(Debug, QueryableByName)]
pub(crate) struct EndpointSqlRow {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Text)]
    description: String,
    #[diesel(sql_type = Text)]
    event_types: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    pub(crate) secret: String,
    #[diesel(sql_type = Nullable<Text>)]
    previous_secret: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    previous_valid_until: Option<i64>,
    #[diesel(sql_type = BigInt)]
    cursor_seq: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    failing_since: Option<i64>,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
}

impl EndpointSqlRow {
    pub(crate) fn into_row(self, keys: &Keys) -> Result<EndpointRow, StoreError> {
        let tenant_id: TenantId = parse_id(&self.tenant_id)?;
        let id: EndpointId = parse_id(&self.id)?;
        let previous_secret = self
            .previous_secret
            .map(|s| open_endpoint_secret(keys, tenant_id, id, &s))
            .transpose()?;
        Ok(EndpointRow {
            secret: open_endpoint_secret(keys, tenant_id, id, &self.secret)?,
            tenant_id,
            id,
            url: self.url,
            description: self.description,
            event_types: from_json(&self.event_types)?,
            enabled: self.status == "enabled",
            previous_secret,
            previous_valid_until: self.previous_valid_until.map(from_micros),
            cursor_seq: self.cursor_seq,
            failing_since: self.failing_since.map(from_micros),
            created_at: from_micros(self.created_at),
        })
    }
}

fn status(enabled: bool) -> &'static str {
    if enabled {
        "enabled"
    } else {
        "disabled"
    }
}

fn types_json(types: &[String]) -> String {
    serde_json::to_string(types).unwrap_or_else(|_| "[]".into())
}

impl Db {
    /// Stores a new endpoint, with the response to replay if the request carried an
    /// idempotency key. Its cursor starts at the tenant's last committed event: it receives
    /// what commits from now on. False (nothing written) if the tenant has
    /// [`ENDPOINTS_PER_TENANT_MAX`] endpoints already.
    pub async fn create_endpoint(
        &self,
        row: &EndpointRow,
        response: Option<&ScopedResponse>,
    ) -> Result<bool, StoreError> {
        if self.list_endpoints(row.tenant_id).await?.len() >= ENDPOINTS_PER_TENANT_MAX {
            return Ok(false);
        }
        let tenant = row.tenant_id.to_string();
        let mut stmts = self.keep_response(response)?;
        stmts.push(Stmt::new(
            "INSERT INTO webhook_endpoints (tenant_id, id, url, description, event_types, status, \
             secret, previous_secret, previous_valid_until, cursor_seq, failing_since, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, \
             COALESCE((SELECT c.last_seq FROM event_counters c WHERE c.tenant_id = ?), 0), NULL, ?)",
            vec![
                Bind::Text(tenant.clone()),
                Bind::Text(row.id.to_string()),
                Bind::Text(row.url.clone()),
                Bind::Text(row.description.clone()),
                Bind::Text(types_json(&row.event_types)),
                Bind::text(status(row.enabled)),
                Bind::Text(seal_endpoint_secret(
                    &self.keys,
                    row.tenant_id,
                    row.id,
                    &row.secret,
                )),
                Bind::Text(tenant),
                Bind::ts(row.created_at),
            ],
        ));
        self.transact(stmts).await?;
        Ok(true)
    }

    pub async fn get_endpoint(
        &self,
        tenant: TenantId,
        id: EndpointId,
    ) -> Result<Option<EndpointRow>, StoreError> {
        let row: Option<EndpointSqlRow> = self
            .load_one(Stmt::new(
                format!(
                    "SELECT {} FROM webhook_endpoints WHERE tenant_id = ? AND id = ?",
                    endpoint_columns(self.dialect())
                ),
                vec![Bind::Text(tenant.to_string()), Bind::Text(id.to_string())],
            ))
            .await?;
        row.map(|r| r.into_row(&self.keys)).transpose()
    }

    /// The tenant's endpoints, oldest first (at most [`ENDPOINTS_PER_TENANT_MAX`]).
    pub async fn list_endpoints(&self, tenant: TenantId) -> Result<Vec<EndpointRow>, StoreError> {
        let rows: Vec<EndpointSqlRow> = self
            .load(Stmt::new(
                format!(
                    "SELECT {} FROM webhook_endpoints WHERE tenant_id = ? ORDER BY id LIMIT ?",
                    endpoint_columns(self.dialect())
                ),
                vec![
                    Bind::Text(tenant.to_string()),
                    Bind::I64(ENDPOINTS_PER_TENANT_MAX as i64),
                ],
            ))
            .await?;
        rows.into_iter().map(|r| r.into_row(&self.keys)).collect()
    }

    /// Every enabled endpoint of every tenant, for the dispatcher (a scan of a small table).
    pub async fn enabled_endpoints(&self) -> Result<Vec<EndpointRow>, StoreError> {
        let mut all = Vec::new();
        let (mut after_tenant, mut after_id) = (String::new(), String::new());
        loop {
            let rows: Vec<EndpointSqlRow> = self
                .load(Stmt::new(
                    format!(
                        "SELECT {} FROM webhook_endpoints WHERE status = 'enabled' \
                         AND (tenant_id > ? OR (tenant_id = ? AND id > ?)) \
                         ORDER BY tenant_id, id LIMIT ?",
                        endpoint_columns(self.dialect())
                    ),
                    vec![
                        Bind::Text(after_tenant.clone()),
                        Bind::Text(after_tenant.clone()),
                        Bind::Text(after_id.clone()),
                        Bind::I64(ENABLED_PAGE_ENDPOINTS),
                    ],
                ))
                .await?;
            let full = rows.len() as i64 == ENABLED_PAGE_ENDPOINTS;
            for row in rows {
                let row = row.into_row(&self.keys)?;
                after_tenant = row.tenant_id.to_string();
                after_id = row.id.to_string();
                all.push(row);
            }
            if !full {
                return Ok(all);
            }
        }
    }

    /// Applies a `PATCH`; answers the endpoint as it now is (`None`: no such endpoint).
    /// Enabling an endpoint forgets its run of failures, so the 5-day rule starts afresh.
    pub async fn update_endpoint(
        &self,
        tenant: TenantId,
        id: EndpointId,
        patch: &EndpointPatch,
    ) -> Result<Option<EndpointRow>, StoreError> {
        let mut sets = Vec::new();
        let mut binds = Vec::new();
        if let Some(url) = &patch.url {
            sets.push("url = ?");
            binds.push(Bind::Text(url.clone()));
        }
        if let Some(description) = &patch.description {
            sets.push("description = ?");
            binds.push(Bind::Text(description.clone()));
        }
        if let Some(types) = &patch.event_types {
            sets.push("event_types = ?");
            binds.push(Bind::Text(types_json(types)));
        }
        if let Some(enabled) = patch.enabled {
            sets.push("status = ?");
            binds.push(Bind::text(status(enabled)));
            if enabled {
                sets.push("failing_since = NULL");
            }
        }
        if !sets.is_empty() {
            binds.extend([Bind::Text(tenant.to_string()), Bind::Text(id.to_string())]);
            self.transact(vec![Stmt::new(
                format!(
                    "UPDATE webhook_endpoints SET {} WHERE tenant_id = ? AND id = ?",
                    sets.join(", ")
                ),
                binds,
            )])
            .await?;
        }
        self.get_endpoint(tenant, id).await
    }

    /// Deletes the endpoint with its pending retries and attempts log. False if absent.
    pub async fn delete_endpoint(
        &self,
        tenant: TenantId,
        id: EndpointId,
    ) -> Result<bool, StoreError> {
        let binds = || vec![Bind::Text(tenant.to_string()), Bind::Text(id.to_string())];
        let counts = self
            .transact(vec![
                Stmt::new(
                    "DELETE FROM webhook_deliveries WHERE tenant_id = ? AND endpoint_id = ?",
                    binds(),
                ),
                Stmt::new(
                    "DELETE FROM webhook_attempts WHERE tenant_id = ? AND endpoint_id = ?",
                    binds(),
                ),
                Stmt::new(
                    "DELETE FROM webhook_endpoints WHERE tenant_id = ? AND id = ?",
                    binds(),
                ),
            ])
            .await?;
        Ok(counts.last().copied().unwrap_or(0) > 0)
    }

    /// Makes `secret` current; the old one keeps signing until `previous_valid_until`. False
    /// (nothing written) if there is no such endpoint.
    pub async fn rotate_endpoint_secret(
        &self,
        tenant: TenantId,
        id: EndpointId,
        secret: &SecretString,
        previous_valid_until: DateTime<Utc>,
        response: Option<&ScopedResponse>,
    ) -> Result<bool, StoreError> {
        if self.get_endpoint(tenant, id).await?.is_none() {
            return Ok(false);
        }
        let mut stmts = self.keep_response(response)?;
        stmts.push(Stmt::new(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_valid_until = ?, \
             secret = ? WHERE tenant_id = ? AND id = ?",
            vec![
                Bind::ts(previous_valid_until),
                Bind::Text(seal_endpoint_secret(&self.keys, tenant, id, secret)),
                Bind::Text(tenant.to_string()),
                Bind::Text(id.to_string()),
            ],
        ));
        let counts = self.transact(stmts).await?;
        Ok(counts.last().copied().unwrap_or(0) > 0)
    }
}

/// Endpoints re-sealed per round trip.
const RESEAL_PAGE_ENDPOINTS: i64 = 500;

impl Db {
    /// Re-seals every endpoint secret not sealed under the current master key (part of
    /// [`Db::reseal_secrets`]); answers how many endpoints changed.
    pub(crate) async fn reseal_endpoint_secrets(&self) -> Result<u64, StoreError> {
        let current = format!("pr1.{}.%", self.keys.current_id());
        let mut resealed = 0;
        let (mut after_tenant, mut after_id) = (String::new(), String::new());
        loop {
            let rows: Vec<EndpointSqlRow> = self
                .load(Stmt::new(
                    format!(
                        "SELECT {} FROM webhook_endpoints \
                         WHERE (tenant_id > ? OR (tenant_id = ? AND id > ?)) \
                         AND (secret NOT LIKE ? OR previous_secret NOT LIKE ?) \
                         ORDER BY tenant_id, id LIMIT ?",
                        endpoint_columns(self.dialect())
                    ),
                    vec![
                        Bind::Text(after_tenant.clone()),
                        Bind::Text(after_tenant.clone()),
                        Bind::Text(after_id.clone()),
                        Bind::Text(current.clone()),
                        Bind::Text(current.clone()),
                        Bind::I64(RESEAL_PAGE_ENDPOINTS),
                    ],
                ))
                .await?;
            if rows.is_empty() {
                return Ok(resealed);
            }
            let mut updates = Vec::with_capacity(rows.len());
            for row in rows {
                let stored = row.secret.clone();
                let endpoint = row.into_row(&self.keys)?;
                let (tenant, id) = (endpoint.tenant_id, endpoint.id);
                after_tenant = tenant.to_string();
                after_id = id.to_string();
                let previous = endpoint
                    .previous_secret
                    .as_ref()
                    .map(|s| seal_endpoint_secret(&self.keys, tenant, id, s));
                updates.push(Stmt::new(
                    "UPDATE webhook_endpoints SET secret = ?, previous_secret = ? \
                     WHERE tenant_id = ? AND id = ? AND secret = ?",
                    vec![
                        Bind::Text(seal_endpoint_secret(
                            &self.keys,
                            tenant,
                            id,
                            &endpoint.secret,
                        )),
                        Bind::OptText(previous),
                        Bind::Text(tenant.to_string()),
                        Bind::Text(id.to_string()),
                        Bind::Text(stored),
                    ],
                ));
            }
            let counts = self.transact(updates).await?;
            resealed += counts.iter().filter(|&&n| n > 0).count() as u64;
        }
    }
}
