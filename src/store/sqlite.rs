//! SQLite: one writer connection (SQLite has one writer anyway) that runs each batch as ONE
//! blocking job with sync diesel inside (`BEGIN IMMEDIATE` … `COMMIT`), plus a few reader
//! connections that WAL lets read while the writer writes.
//!
//! Only `SyncConnectionWrapper::spawn_blocking` is used, never the wrapper's async query API:
//! its futures can't be cancelled half-way (dropping one detaches the job, which runs to
//! completion), which avoids the wrapper's cancel-guard panic (FIELD-NOTES.md).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::result::QueryResult;
use diesel::sqlite::Sqlite as SqliteBackend;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use payrail_actors::ports::{StoreError, Unit};

use super::plan;
use super::rows::KeyRow;
use super::stmt::{Dialect, Stmt};
use super::tx::{batch_error, outcome_error, TxError};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Reader connections at most, whatever pool size is asked (2 cores here; WAL readers are cheap).
const SQLITE_READERS_MAX: usize = 4;
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

type Wrapped = SyncConnectionWrapper<SqliteConnection>;

pub(crate) struct Sqlite {
    writer: Mutex<Wrapped>,
    readers: Vec<Mutex<Wrapped>>,
    next_reader: AtomicUsize,
}

fn open(path: &str, writer: bool) -> anyhow::Result<SqliteConnection> {
    let mut conn =
        SqliteConnection::establish(path).with_context(|| format!("opening SQLite at {path}"))?;
    let pragmas = if writer {
        format!(
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}; \
             PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
        )
    } else {
        format!("PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS};")
    };
    conn.batch_execute(&pragmas)
        .context("setting SQLite pragmas")?;
    Ok(conn)
}

impl Sqlite {
    /// `path` is a file path; its parent folder is created.
    pub(crate) async fn connect(path: &str, pool_size: usize) -> anyhow::Result<Self> {
        if let Some(parent) = Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        let readers = pool_size.clamp(1, SQLITE_READERS_MAX);
        let path = path.to_owned();
        let (writer, readers) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut writer = open(&path, true)?;
            writer
                .run_pending_migrations(MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("running SQLite migrations: {e}"))?;
            let readers = (0..readers)
                .map(|_| open(&path, false))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((writer, readers))
        })
        .await
        .context("SQLite open task")??;
        Ok(Self {
            writer: Mutex::new(SyncConnectionWrapper::new(writer)),
            readers: readers
                .into_iter()
                .map(|c| Mutex::new(SyncConnectionWrapper::new(c)))
                .collect(),
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs `job` on `conn`'s blocking thread. The lock only hands the job over; the wrapper
    /// serializes jobs on its connection.
    async fn run<R, F>(conn: &Mutex<Wrapped>, job: F) -> QueryResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> QueryResult<R> + Send + 'static,
    {
        let future = {
            let mut wrapper = conn.lock().unwrap_or_else(|p| p.into_inner());
            wrapper.spawn_blocking(job)
        };
        future.await
    }

    fn reader(&self) -> &Mutex<Wrapped> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len().max(1);
        self.readers.get(i).unwrap_or(&self.writer)
    }

    pub(crate) async fn load<R>(&self, stmt: Stmt) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<SqliteBackend> + Send + 'static,
    {
        Self::run(self.reader(), move |c| stmt.load::<R>(c))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    pub(crate) async fn transact(&self, stmts: Vec<Stmt>) -> Result<Vec<usize>, StoreError> {
        let job = move |c: &mut SqliteConnection| {
            Ok(c.immediate_transaction(|c| {
                stmts
                    .into_iter()
                    .map(|s| s.execute(c).map_err(TxError::from))
                    .collect::<Result<Vec<usize>, TxError>>()
            }))
        };
        match Self::run(&self.writer, job).await {
            Ok(Ok(counts)) => Ok(counts),
            Ok(Err(e)) => Err(outcome_error(e, false)),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    pub(crate) async fn append(&self, units: Vec<Unit>) -> Vec<Result<(), StoreError>> {
        let count = units.len();
        let job = move |c: &mut SqliteConnection| Ok(append_job(c, &units));
        let failed = |err: StoreError| (0..count).map(|_| Err(err.clone())).collect();
        match Self::run(&self.writer, job).await {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => failed(batch_error(e, false)),
            Err(e) => failed(StoreError::Unavailable(e.to_string())),
        }
    }
}

/// The whole batch transaction, on the writer's blocking thread.
fn append_job(
    c: &mut SqliteConnection,
    units: &[Unit],
) -> Result<Vec<Result<(), StoreError>>, TxError> {
    c.immediate_transaction(|c| {
        let keys = plan::keys(units);
        let mut found = Vec::new();
        for stmt in plan::precheck(Dialect::Sqlite, &keys) {
            found.extend(stmt.load::<KeyRow>(c)?);
        }
        let existing = plan::Existing::from_rows(found);
        let planned = plan::plan(Dialect::Sqlite, units, existing, chrono::Utc::now())?;
        for stmt in planned.statements {
            stmt.execute(c)?;
        }
        Ok(planned.results)
    })
}
