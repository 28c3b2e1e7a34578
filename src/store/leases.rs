//! Delivery leases on outbound endpoints: one node at a time sends an endpoint's webhooks, so
//! several nodes on one database share the endpoints without sending a first attempt twice.
//! A lease is a row's `lease_owner` (a node id) and `lease_until`, stamped and compared by the
//! database's clock only, so the nodes' clocks (and a dispatcher's injected one) play no part.
//! A node takes the lease when it is free, expired or its own, renews it while it works, and
//! records a round only while it holds it (`record_round` is fenced by it).

use std::time::Duration;

use payrail_actors::domain::{EndpointId, TenantId};
use payrail_actors::ports::StoreError;

use super::stmt::{Bind, Dialect, Stmt};
use super::Db;

/// A node's claim on endpoints: who it is and how long a lease it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The node's id, unique per process.
    pub owner: String,
    pub duration: Duration,
}

impl Lease {
    fn millis(&self) -> i64 {
        i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX / 1_000)
    }
}

/// The database's current time, in the form the backend stores timestamps in.
fn db_now(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "now()",
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
    }
}

/// The database's current time plus a bound number of milliseconds.
fn db_now_plus_ms(d: Dialect) -> String {
    match d {
        Dialect::Postgres => {
            "(now() + CAST(? AS double precision) * INTERVAL '1 millisecond')".into()
        }
        Dialect::Sqlite => format!("({} + ? * 1000)", db_now(d)),
    }
}

/// `EXISTS (…)`: the endpoint's lease is held by a bound owner; binds `(tenant, endpoint,
/// owner)`. Every write of a round carries it: once the round's first statement has found the
/// lease (and locked the row), they all see the same owner.
pub(crate) const LEASED: &str = "EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.tenant_id = ? \
     AND w.id = ? AND w.lease_owner = ?)";

pub(crate) fn leased_binds(tenant: TenantId, endpoint: EndpointId, lease: &Lease) -> [Bind; 3] {
    [
        Bind::Text(tenant.to_string()),
        Bind::Text(endpoint.to_string()),
        Bind::Text(lease.owner.clone()),
    ]
}

/// The `SET` clause that extends the lease, with its bind.
pub(crate) fn extend_lease(d: Dialect, lease: &Lease) -> (String, Bind) {
    (
        format!("lease_until = {}", db_now_plus_ms(d)),
        Bind::I64(lease.millis()),
    )
}

impl Db {
    /// Takes the endpoint's lease if it is free, expired or already this node's, and extends
    /// it by the lease's duration from now; answers whether this node holds it. One
    /// conditional UPDATE: of two nodes asking at once, one gets it.
    pub async fn take_endpoint_lease(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        lease: &Lease,
    ) -> Result<bool, StoreError> {
        let d = self.dialect();
        let (extend, bind) = extend_lease(d, lease);
        let binds = vec![
            Bind::Text(lease.owner.clone()),
            bind,
            Bind::Text(tenant.to_string()),
            Bind::Text(endpoint.to_string()),
            Bind::Text(lease.owner.clone()),
        ];
        let counts = self
            .transact(vec![Stmt::new(
                format!(
                    "UPDATE webhook_endpoints SET lease_owner = ?, {extend} \
                     WHERE tenant_id = ? AND id = ? AND (lease_owner = ? OR lease_owner IS NULL \
                     OR lease_until IS NULL OR lease_until < {})",
                    db_now(d)
                ),
                binds,
            )])
            .await?;
        Ok(counts.first().copied().unwrap_or(0) > 0)
    }

    /// Extends the lease only if this node still holds it (a round that runs long keeps it);
    /// answers whether it does.
    pub async fn renew_endpoint_lease(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        lease: &Lease,
    ) -> Result<bool, StoreError> {
        let (extend, bind) = extend_lease(self.dialect(), lease);
        let mut binds = vec![bind];
        binds.extend(leased_binds(tenant, endpoint, lease));
        let counts = self
            .transact(vec![Stmt::new(
                format!(
                    "UPDATE webhook_endpoints SET {extend} WHERE tenant_id = ? AND id = ? \
                     AND lease_owner = ?"
                ),
                binds,
            )])
            .await?;
        Ok(counts.first().copied().unwrap_or(0) > 0)
    }

    /// Gives up the endpoint's lease if this node holds it, so another node takes it at once.
    pub async fn release_endpoint_lease(
        &self,
        tenant: TenantId,
        endpoint: EndpointId,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        self.transact(vec![Stmt::new(
            "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL \
             WHERE tenant_id = ? AND id = ? AND lease_owner = ?",
            leased_binds(tenant, endpoint, lease).to_vec(),
        )])
        .await
        .map(drop)
    }

    /// Gives up every lease this node holds (on shutdown); answers how many.
    pub async fn release_endpoint_leases(&self, lease: &Lease) -> Result<usize, StoreError> {
        let counts = self
            .transact(vec![Stmt::new(
                "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL \
                 WHERE lease_owner = ?",
                vec![Bind::Text(lease.owner.clone())],
            )])
            .await?;
        Ok(counts.first().copied().unwrap_or(0))
    }
}
