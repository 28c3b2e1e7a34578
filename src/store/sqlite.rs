//! SQLite: one writer connection (SQLite has one writer anyway) that runs each batch as ONE
//! blocking job with sync diesel inside (`BEGIN IMMEDIATE` … `COMMIT`), plus a few reader
//! connections that WAL lets read while the writer writes.
//!
//! Jobs run through `tokio::task::spawn_blocking` on connections behind a mutex rather than
//! through diesel-async's `SyncConnectionWrapper`: dropping an in-flight wrapper future, even
//! one from its `spawn_blocking`, panics on a single-threaded runtime (its cancel guard calls
//! `block_in_place`; `sqlite_survives_dropped_in_flight_futures` reproduced it). Dropping a tokio `JoinHandle` only detaches the job, which runs to completion.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::result::{Error as DieselError, QueryResult};
use diesel::sqlite::Sqlite as SqliteBackend;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use payrail_actors::ports::{BatchFence, StoreError, Unit};

use super::committed::Committed;
use super::plan;
use super::rows::KeyRow;
use super::stmt::{check_rows, Dialect, Stmt};
use super::tx::{batch_error, is_refused, outcome_error, unit_rejected, TxError};

pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Reader connections at most, whatever pool size is asked (2 cores here; WAL readers are cheap).
const SQLITE_READERS_MAX: usize = 4;
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;
/// Page cache of the writer (negative: KiB). The default 2 MiB makes every batch re-read
/// the index pages it touches through `pread`. Larger is not better: after a b-tree rebalance
/// SQLite's commit walks the cache's whole hash table, and at 128 MiB batches took nearly
/// twice as long (docs/benchmarks-history.md, "SQLite batched: what a unit costs the
/// writer").
const SQLITE_WRITER_CACHE_KIB: u32 = 16 * 1024;
const SQLITE_READER_CACHE_KIB: u32 = 16 * 1024;
/// The WAL is copied back into the database by a checkpointer thread of its own this often,
/// rather than by whichever commit crosses SQLite's 1,000-page mark while the writer waits.
/// Often, because the writer still checkpoints: SQLite starts the WAL over only when a write
/// transaction begins with every frame copied back, which a busy writer never sees, so past
/// `WAL_AUTOCHECKPOINT_PAGES` a commit checkpoints and waits for the database file's `fsync`.
/// What that commit copies and syncs is only what the checkpointer has not copied yet: at
/// 250 ms a commit waited 27–44 ms two or three times a second under load; at 20 ms p99 at
/// 11,000 webhooks/s fell from ~48 ms to ~22 ms (docs/benchmarks-history.md, "SQLite: the
/// checkpointer every 20 ms").
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(20);
/// Past this many WAL pages (4 KiB each) a commit checkpoints on the writer itself, which is
/// what lets the WAL start over and keeps it bounded.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// A connection shared with blocking jobs; it remembers how to reopen itself.
struct Shared {
    conn: Arc<Mutex<SqliteConnection>>,
    path: Arc<str>,
    writer: bool,
}

pub(crate) struct Sqlite {
    writer: Shared,
    readers: Vec<Shared>,
    next_reader: AtomicUsize,
    /// Tells the checkpointer thread to stop when the store goes away.
    closed: Arc<AtomicBool>,
    /// Stream versions the writer has committed (used only inside its blocking jobs).
    committed: Arc<Mutex<Committed>>,
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// Runs PASSIVE checkpoints on a connection of its own: they copy committed WAL frames into
/// the database without blocking the writer or readers, so commits only append to the WAL.
fn start_checkpointer(path: &str, closed: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut conn = open(path, true)?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while !closed.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::warn!(error = %e, "SQLite checkpoint failed");
                }
            }
        })
        .context("starting the SQLite checkpointer")?;
    Ok(())
}

fn open(path: &str, writer: bool) -> anyhow::Result<SqliteConnection> {
    let mut conn =
        SqliteConnection::establish(path).with_context(|| format!("opening SQLite at {path}"))?;
    // Statement journals (multi-row writes) and sorts stay in memory rather than temp files.
    let pragmas = if writer {
        format!(
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}; \
             PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; \
             PRAGMA cache_size=-{SQLITE_WRITER_CACHE_KIB}; \
             PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES};"
        )
    } else {
        format!(
            "PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}; PRAGMA query_only=ON; \
             PRAGMA temp_store=MEMORY; PRAGMA cache_size=-{SQLITE_READER_CACHE_KIB};"
        )
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
        let job_path = path.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let checkpointer_closed = closed.clone();
        let (writer, readers) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let path = job_path;
            let mut writer = open(&path, true)?;
            writer
                .run_pending_migrations(MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("running SQLite migrations: {e}"))?;
            let readers = (0..readers)
                .map(|_| open(&path, false))
                .collect::<anyhow::Result<Vec<_>>>()?;
            start_checkpointer(&path, checkpointer_closed)?;
            Ok((writer, readers))
        })
        .await
        .context("SQLite open task")??;
        let path: Arc<str> = path.into();
        let shared = |conn, writer| Shared {
            conn: Arc::new(Mutex::new(conn)),
            path: path.clone(),
            writer,
        };
        Ok(Self {
            writer: shared(writer, true),
            readers: readers.into_iter().map(|c| shared(c, false)).collect(),
            next_reader: AtomicUsize::new(0),
            closed,
            committed: Arc::default(),
        })
    }

    /// Runs `job` on a blocking thread with the connection locked. A connection whose lock was
    /// poisoned (a job panicked, maybe inside a transaction) is replaced by a fresh one.
    async fn run<R, F>(shared: &Shared, job: F) -> QueryResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> QueryResult<R> + Send + 'static,
    {
        let conn = shared.conn.clone();
        let (path, writer) = (shared.path.clone(), shared.writer);
        let handle = tokio::task::spawn_blocking(move || {
            let mut guard = match conn.lock() {
                Ok(guard) => guard,
                Err(poisoned) => {
                    let mut guard = poisoned.into_inner();
                    *guard = open(&path, writer)
                        .map_err(|e| DieselError::QueryBuilderError(e.into()))?;
                    conn.clear_poison();
                    guard
                }
            };
            job(&mut guard)
        });
        handle
            .await
            .unwrap_or_else(|e| Err(DieselError::QueryBuilderError(Box::new(e))))
    }

    fn reader(&self) -> &Shared {
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
        let committed = self.committed.clone();
        let job = move |c: &mut SqliteConnection| {
            let mut committed = committed.lock().unwrap_or_else(|p| p.into_inner());
            Ok(append_job(c, &units, &mut committed))
        };
        let failed = |err: StoreError| (0..count).map(|_| Err(err.clone())).collect();
        match Self::run(&self.writer, job).await {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => failed(batch_error(e, false)),
            Err(e) => failed(StoreError::Unavailable(e.to_string())),
        }
    }
}

/// The whole batch transaction, on the writer's blocking thread. It is first written trusting
/// what the writer itself committed (`Committed`) and leaving gateway event and idempotency
/// keys to the unique indexes; if SQLite rejects it (a constraint the shortcut or the pre-check
/// doesn't know about, or a stored row an update must find is gone), it is re-run fully
/// checked with one savepoint per unit, so only the offending unit fails.
fn append_job(
    c: &mut SqliteConnection,
    units: &[Unit],
    committed: &mut Committed,
) -> Result<Vec<Result<(), StoreError>>, TxError> {
    let first = c.immediate_transaction(|c| write_units(c, units, Some(committed)));
    if let Ok(results) = &first {
        committed.record(units, results);
        return first;
    }
    committed.clear();
    match first {
        Err(e) if is_refused(&e) => {
            tracing::debug!(error = ?e, "batch rejected, retrying unit by unit");
            c.immediate_transaction(|c| {
                let mut results = Vec::with_capacity(units.len());
                let mut fence = BatchFence::default();
                for unit in units {
                    if let Err(e) = fence.check(unit) {
                        results.push(Err(e));
                        continue;
                    }
                    let one = std::slice::from_ref(unit);
                    let result = match c.transaction(|c| write_units(c, one, None)) {
                        Ok(result) => result.into_iter().next().unwrap_or(Ok(())),
                        Err(e) if is_refused(&e) => Err(unit_rejected(e)),
                        Err(e) => return Err(e),
                    };
                    if result.is_err() {
                        fence.record_failure(unit);
                    }
                    results.push(result);
                }
                Ok(results)
            })
        }
        other => other,
    }
}

/// Pre-check, plan and write `units` inside the caller's transaction. With `committed`, the
/// streams it vouches for are not read, nor are gateway event and idempotency keys (their
/// unique indexes refuse a taken one, and the caller re-runs the batch checked in full).
fn write_units(
    c: &mut SqliteConnection,
    units: &[Unit],
    committed: Option<&Committed>,
) -> Result<Vec<Result<(), StoreError>>, TxError> {
    let (keys, vouched) = match committed {
        Some(committed) => committed.trusting_keys(units),
        None => (plan::keys(units), plan::Vouched::default()),
    };
    let mut found = Vec::new();
    for stmt in plan::precheck(Dialect::Sqlite, &keys) {
        found.extend(stmt.load::<KeyRow>(c)?);
    }
    let existing = plan::Existing::new(found, &keys, vouched)?;
    let planned = plan::plan(Dialect::Sqlite, units, existing, chrono::Utc::now())?;
    for stmt in planned.statements {
        let expected = stmt.expected_rows();
        check_rows(expected, stmt.execute(c)?)?;
    }
    Ok(planned.results)
}
