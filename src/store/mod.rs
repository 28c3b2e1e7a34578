//! Durable storage: the `EventStore` port and the read/admin queries of the HTTP layer, on
//! PostgreSQL (production) or SQLite (embedded default). Backend differences live in
//! `postgres.rs` / `sqlite.rs` (connections, transactions) and `stmt::Dialect` (a few SQL
//! expressions); planning batches and building queries is shared.
//!
//! Conventions: ids are stored as TypeID text; timestamps as `timestamptz` (PostgreSQL) or
//! integer microseconds (SQLite), so both keep microseconds: a clock that hands out
//! nanoseconds gets events back that differ from what it appended (truncate with
//! `trunc_subsecs(6)`). Errors are the port's `StoreError` (`Unavailable` → 503).

mod coalesce;
mod committed;
mod deliveries;
mod endpoints;
mod event_store;
pub mod feed;

mod invoice_list;
mod key_cache;
mod leases;
mod model;
mod notify;
mod ops;
mod pg_array;
mod plan;
mod postgres;
mod queries;
mod rounds;
mod rows;
mod secrets;
mod split_json;
mod sqlite;
mod stmt;
mod summary;
mod tables;
#[doc(hidden)]
pub mod testing;
mod timelines;
mod tx;
mod unit_rows;
mod write;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::keys::Keys;

use diesel::pg::Pg;
use diesel::sqlite::Sqlite as SqliteBackend;
use diesel::QueryableByName;
use payrail_actors::ports::{IdempotencyRecord, StoreError, Unit};

pub use deliveries::{
    AttemptRow, AttemptStatus, DueDelivery, RoundEffects, REPLAY_EVENTS_MAX,
    RESPONSE_BODY_KEPT_BYTES,
};
pub use endpoints::{EndpointPatch, EndpointRow, ENDPOINTS_PER_TENANT_MAX};
pub use leases::Lease;
pub use model::{
    ApiKeyRow, InvoicePage, InvoiceQuery, InvoiceSort, Paging, ScopedResponse, StoredEvent,
    TenantRow, LIST_LIMIT_MAX, PAGE_SIZE_MAX, PLATFORM_SCOPE,
};
pub use postgres::QUERY_DEADLINE;
pub use summary::TenantVolumes;

use stmt::{Dialect, Stmt};

/// Run first in the transaction of a statement that runs on a timer over a whole table (a
/// recovery sweep, a retention purge) on PostgreSQL. Each reads a page of the few rows it is
/// after, with a `LIMIT`, through an index that holds just those in the page's order (a partial
/// index) or finds them without reading the rest (a BRIN on the age column). When the
/// statistics say many rows match (taken during a burst of creations, or none taken yet), the
/// planner expects that page in the first blocks of a sequential scan, or collects and sorts
/// every match to cut one page; while few rows match, that is the whole table read on every
/// sweep. The right plan does not depend on the statistics, so the planner is told.
pub(crate) const PREFER_INDEXES: &str =
    "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true)";

/// Where data lives when no `DATABASE_URL` is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/payrail.db";
/// PostgreSQL connections in the pool unless configured otherwise.
pub const DEFAULT_POOL_SIZE: usize = 8;

enum Backend {
    Postgres(postgres::Postgres),
    Sqlite(sqlite::Sqlite),
}

/// The store: cheap to clone (one shared backend).
#[derive(Clone)]
pub struct Db {
    backend: Arc<Backend>,
    feed: feed::Feed,
    /// Seals secrets on their way in, opens them on the way out.
    keys: Arc<Keys>,
    /// API keys as authentication reads them (`find_api_key`).
    key_cache: Arc<key_cache::KeyCache>,
    /// PostgreSQL: the listener for other nodes' notices (`notify.rs`), once started.
    listener: Arc<std::sync::OnceLock<notify::Listener>>,
    /// PostgreSQL: lookups of stored responses, by (scope, key digest), read together.
    response_lookups: Arc<coalesce::Coalesced<(String, String), IdempotencyRecord>>,
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`); anything else
/// that connects is SQLite.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dialect", &self.dialect())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Connects and applies pending migrations: PostgreSQL for `postgres://`/`postgresql://`
    /// URLs (a pool of `pool_size`), SQLite for `sqlite://path` (the folder is created).
    pub async fn connect(url: &str, pool_size: usize, keys: Arc<Keys>) -> anyhow::Result<Db> {
        Self::connect_with_deadline(url, pool_size, keys, postgres::QUERY_DEADLINE).await
    }

    /// `connect`, giving up on a PostgreSQL query that gets no answer within `deadline`.
    pub async fn connect_with_deadline(
        url: &str,
        pool_size: usize,
        keys: Arc<Keys>,
        deadline: std::time::Duration,
    ) -> anyhow::Result<Db> {
        let backend = if is_postgres_url(url) {
            Backend::Postgres(postgres::Postgres::connect(url, pool_size, deadline).await?)
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                anyhow::bail!("sqlite URL without a path: {url}");
            }
            Backend::Sqlite(sqlite::Sqlite::connect(path, pool_size).await?)
        } else {
            anyhow::bail!("unsupported database URL (expected postgres:// or sqlite://)");
        };
        // SQLite: this process is the only writer, so it hears every revocation.
        let sqlite = matches!(backend, Backend::Sqlite(_));
        Ok(Db {
            backend: Arc::new(backend),
            feed: feed::Feed::default(),
            keys,
            key_cache: Arc::new(key_cache::KeyCache::new(sqlite)),
            listener: Arc::default(),
            response_lookups: Arc::default(),
        })
    }

    /// Hears what other nodes on the same PostgreSQL database change (`notify.rs`): key
    /// revocations, and commits to tenants' logs. Serves API keys from memory from then on.
    /// The listener takes a connection of its own, started here on the caller's runtime (which
    /// must outlive the store's use); until it is connected, and whenever it is not, every key
    /// lookup reads the database. SQLite has no other nodes: keys are always cached.
    pub fn listen_to_other_nodes(&self) {
        if let Backend::Postgres(pg) = &*self.backend {
            self.listener.get_or_init(|| {
                let hearers = notify::Hearers {
                    node: pg.node().to_owned(),
                    keys: self.key_cache.clone(),
                    feed: self.feed.clone(),
                };
                notify::Listener::start(pg.url().to_owned(), hearers, self.backend.clone())
            });
        }
    }

    /// Wakes this node's readers of the tenants' logs, and tells the other nodes (`notify.rs`)
    /// once this one listens to them.
    pub(crate) fn announce(&self, tenants: Vec<payrail_actors::domain::TenantId>) {
        if let Some(listener) = self.listener.get() {
            listener.announce(&tenants);
        }
        self.feed.poke(tenants);
    }

    /// Whether another node on the same PostgreSQL database was heard lately: only then does
    /// this one tell the others of its commits (`notify.rs`).
    pub fn hears_other_nodes(&self) -> bool {
        self.listener
            .get()
            .is_some_and(notify::Listener::hears_other_nodes)
    }

    /// Whether API keys are being served from memory (see `listen_to_other_nodes`).
    pub fn api_keys_cached(&self) -> bool {
        self.key_cache.is_complete()
    }

    /// `"postgres"` or `"sqlite"`.
    /// `(size, available)` of the PostgreSQL connection pool, for metrics (SQLite: `None`, its
    /// one writer and few readers are fixed).
    pub fn pool_status(&self) -> Option<(usize, usize)> {
        match &*self.backend {
            Backend::Postgres(pg) => Some(pg.pool_status()),
            Backend::Sqlite(_) => None,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.dialect() {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match &*self.backend {
            Backend::Postgres(_) => Dialect::Postgres,
            Backend::Sqlite(_) => Dialect::Sqlite,
        }
    }

    pub(crate) async fn load<R>(&self, stmt: Stmt) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Pg> + QueryableByName<SqliteBackend> + Send + 'static,
    {
        match &*self.backend {
            Backend::Postgres(pg) => pg.load(stmt).await,
            Backend::Sqlite(lite) => lite.load(stmt).await,
        }
    }

    /// `load` for the statements that run on a timer over whole tables (the recovery sweeps):
    /// on PostgreSQL with sequential scans and sorts off for its transaction (`PREFER_INDEXES`).
    pub(crate) async fn load_through_index<R>(&self, stmt: Stmt) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Pg> + QueryableByName<SqliteBackend> + Send + 'static,
    {
        match &*self.backend {
            Backend::Postgres(pg) => pg.load_after(PREFER_INDEXES, stmt).await,
            Backend::Sqlite(lite) => lite.load(stmt).await,
        }
    }

    pub(crate) async fn load_one<R>(&self, stmt: Stmt) -> Result<Option<R>, StoreError>
    where
        R: QueryableByName<Pg> + QueryableByName<SqliteBackend> + Send + 'static,
    {
        Ok(self.load(stmt).await?.into_iter().next())
    }

    /// Executes the statements in one transaction; answers each one's affected row count.
    pub(crate) async fn transact(&self, stmts: Vec<Stmt>) -> Result<Vec<usize>, StoreError> {
        match &*self.backend {
            Backend::Postgres(pg) => pg.transact(stmts).await,
            Backend::Sqlite(lite) => lite.transact(stmts).await,
        }
    }

    pub(crate) async fn append(&self, units: Vec<Unit>) -> Vec<Result<(), StoreError>> {
        match &*self.backend {
            Backend::Postgres(pg) => pg.append(&units).await,
            Backend::Sqlite(lite) => lite.append(units).await,
        }
    }
}
