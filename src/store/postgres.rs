//! PostgreSQL: a deadpool of `AsyncPgConnection`s (fast recycling: no check query per checkout)
//! and a connection of its own for each batch writer,
//! migrations through a short-lived sync connection, and the batch transaction.

use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Duration;

use anyhow::Context;
use diesel::pg::Pg;
use diesel::{Connection, PgConnection, QueryableByName};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures::TryFutureExt;
use payrail_actors::ports::{BatchFence, StoreError, Unit};

use super::committed::Committed;
use super::plan;
use super::rows::KeyRow;
use super::stmt::{check_rows, Dialect, Stmt};
use super::tx::{
    batch_error, is_refused, is_unique_violation, outcome_error, unit_rejected, TxError,
};

pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A batch that lost a race on a unique key (another node wrote the same stream, dedup or
/// idempotency key between our pre-check and insert) is re-planned this many times at most:
/// the pre-check then sees the committed winner and fails only the affected unit.
const APPEND_ATTEMPTS_MAX: usize = 3;

/// A checkout waits this long for a free connection, a new connection this long to open: a
/// frozen database turns into `Unavailable` (503) instead of requests that hang.
const POOL_WAIT_MS: u64 = 5_000;
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// The server cancels any statement running longer (set on every pooled connection).
const STATEMENT_TIMEOUT_MS: u64 = 10_000;
/// How long a query or transaction may go without an answer before the engine gives up on
/// it: past the statement timeout, so it only bites when the server itself stopped answering
/// (frozen, or the network to it). The connection is then closed, never handed out again.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(15);

pub(crate) struct Postgres {
    pool: Pool<AsyncPgConnection>,
    deadline: Duration,
    url: String,
    /// This process among the nodes sharing the database (its commit notices name it).
    node: String,
    /// Stream versions this process committed: a batch whose streams are all vouched for, and
    /// that creates no invoice, is written without the pre-check's round trip.
    committed: Mutex<Committed>,
    /// Each batch writer's own connection, by its thread (`writer_conn`).
    writers: Mutex<Vec<(ThreadId, AsyncPgConnection)>>,
}

impl Postgres {
    pub(crate) async fn connect(
        url: &str,
        pool_size: usize,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let migration_url = url.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut conn = PgConnection::establish(&migration_url)
                .context("connecting to PostgreSQL for migrations")?;
            conn.run_pending_migrations(MIGRATIONS)
                .map_err(|e| anyhow::anyhow!("running PostgreSQL migrations: {e}"))?;
            Ok(())
        })
        .await
        .context("migration task")??;
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(|url| Box::pin(establish(url)));
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_millis(POOL_WAIT_MS)))
            .create_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
            .build()
            .context("building the PostgreSQL pool")?;
        Ok(Self {
            pool,
            deadline,
            url: url.to_owned(),
            node: uuid::Uuid::now_v7().simple().to_string(),
            committed: Mutex::default(),
            writers: Mutex::default(),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn pool_status(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.available)
    }

    async fn conn(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    pub(crate) async fn load<R>(&self, stmt: Stmt) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Pg> + Send + 'static,
    {
        let mut conn = self.conn().await?;
        match tokio::time::timeout(self.deadline, stmt.load::<R>(&mut *conn)).await {
            Ok(rows) => rows.map_err(|e| StoreError::Unavailable(e.to_string())),
            Err(_) => Err(self.abandon(conn, false)),
        }
    }

    /// `load` in a transaction that first runs `prelude` (settings local to the transaction).
    pub(crate) async fn load_after<R>(
        &self,
        prelude: &'static str,
        stmt: Stmt,
    ) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Pg> + Send + 'static,
    {
        let mut conn = self.conn().await?;
        let read = conn.transaction(async |c| {
            let mut shared: &AsyncPgConnection = c;
            Stmt::new(prelude, vec![]).execute(&mut shared).await?;
            stmt.load::<R>(c).await
        });
        match tokio::time::timeout(self.deadline, read).await {
            Ok(rows) => {
                rows.map_err(|e: diesel::result::Error| StoreError::Unavailable(e.to_string()))
            }
            Err(_) => Err(self.abandon(conn, false)),
        }
    }

    /// Closes a connection whose query got no answer within the deadline (it is mid-protocol,
    /// so never back to the pool). Ambiguous once a commit may have been sent.
    fn abandon(&self, conn: Object<AsyncPgConnection>, commit_sent: bool) -> StoreError {
        drop(Object::take(conn));
        self.no_answer(commit_sent)
    }

    /// The error for a query that got no answer within the deadline.
    fn no_answer(&self, commit_sent: bool) -> StoreError {
        let what = format!(
            "PostgreSQL gave no answer within {} ms",
            self.deadline.as_millis()
        );
        tracing::warn!(commit_sent, "{what}; connection closed");
        if commit_sent {
            StoreError::Ambiguous(what)
        } else {
            StoreError::Unavailable(what)
        }
    }

    pub(crate) async fn transact(&self, stmts: Vec<Stmt>) -> Result<Vec<usize>, StoreError> {
        let mut conn = self.conn().await?;
        let mut body_done = false;
        let result = tokio::time::timeout(
            self.deadline,
            conn.transaction(async |c| {
                let counts = execute_pipelined(c, stmts).await?;
                body_done = true;
                Ok::<_, TxError>(counts)
            }),
        )
        .await;
        match result {
            Ok(result) => result.map_err(|e| outcome_error(e, body_done)),
            Err(_) => Err(self.abandon(conn, body_done)),
        }
    }

    /// The calling thread's own connection for batches, opened on first use. A batch writer
    /// runs on a thread of its own, so the task driving its connection runs there too: a
    /// pooled connection's task runs on whichever thread opened it, and every round trip of a
    /// batch then woke that thread and was woken back.
    async fn writer_conn(&self) -> Result<AsyncPgConnection, StoreError> {
        let thread = std::thread::current().id();
        let held = {
            let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
            // Also forgets the connection of a thread that is gone (its task went with it).
            writers.retain_mut(|(_, conn)| !conn.is_broken());
            let at = writers.iter().position(|(t, _)| *t == thread);
            at.map(|at| writers.swap_remove(at).1)
        };
        let conn = match held {
            Some(conn) => conn,
            None => tokio::time::timeout(
                Duration::from_millis(CONNECT_TIMEOUT_MS),
                establish(&self.url),
            )
            .await
            .map_err(|_| StoreError::Unavailable("connecting to PostgreSQL timed out".into()))?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        };
        Ok(conn)
    }

    /// Puts the calling thread's connection back for its next batch, unless it is broken.
    fn give_back(&self, mut conn: AsyncPgConnection) {
        if conn.is_broken() {
            return;
        }
        let thread = std::thread::current().id();
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        writers.push((thread, conn));
    }

    fn committed(&self) -> std::sync::MutexGuard<'_, Committed> {
        self.committed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Group commit with two fallbacks: a batch that lost a unique-key race is re-planned (its
    /// pre-check then sees the winner); a batch the server still rejects is re-run with one
    /// savepoint per unit, so only the offending unit fails. The first attempt trusts the
    /// versions this process committed and leaves gateway event and idempotency keys to their
    /// unique indexes (`Committed`); any later attempt checks everything.
    pub(crate) async fn append(&self, units: &[Unit]) -> Vec<Result<(), StoreError>> {
        let results = self.append_attempts(units).await;
        let mut committed = self.committed();
        let unknown = |r: &Result<(), StoreError>| {
            matches!(
                r,
                Err(StoreError::Ambiguous(_) | StoreError::Unavailable(_))
            )
        };
        if results.iter().any(unknown) {
            // The batch may or may not have been written: its streams' versions are not known.
            committed.clear();
        }
        committed.record(units, &results);
        results
    }

    async fn append_attempts(&self, units: &[Unit]) -> Vec<Result<(), StoreError>> {
        for attempt in 1..=APPEND_ATTEMPTS_MAX {
            let (keys, vouched) = if attempt == 1 {
                self.committed().trusting_keys(units)
            } else {
                (plan::keys(units), plan::Vouched::default())
            };
            let mode = Check::Batch(keys, vouched);
            match self.append_once(units, mode).await {
                Ok(results) => return results,
                Err((e, _)) if attempt < APPEND_ATTEMPTS_MAX && is_unique_violation(&e) => {
                    // Something trusted was taken after all (another node's write, or a key
                    // already recorded): the next attempt checks everything.
                    self.committed().clear();
                    tracing::debug!(attempt, error = ?e, "batch lost a unique-key race, re-planning");
                }
                Err((e, _)) if is_refused(&e) => {
                    tracing::warn!(error = ?e, "batch rejected, retrying unit by unit");
                    break;
                }
                Err((e, body_done)) => return fail_all(units, batch_error(e, body_done)),
            }
        }
        match self.append_once(units, Check::Isolated).await {
            Ok(results) => results,
            Err((e, body_done)) => fail_all(units, batch_error(e, body_done)),
        }
    }

    async fn append_once(
        &self,
        units: &[Unit],
        mode: Check,
    ) -> Result<Vec<Result<(), StoreError>>, (TxError, bool)> {
        let mut conn = self
            .writer_conn()
            .await
            .map_err(|e| (TxError::Store(e), false))?;
        let mut body_done = false;
        let result = match mode {
            Check::Batch(keys, vouched) => {
                let batch = batch_transaction(&conn, units, keys, vouched, &mut body_done);
                tokio::time::timeout(self.deadline, batch).await
            }
            Check::Isolated => {
                let isolated = conn.transaction(async |c| {
                    let results = write_isolated(c, units).await?;
                    body_done = true;
                    Ok::<_, TxError>(results)
                });
                tokio::time::timeout(self.deadline, isolated)
                    .await
                    .map(|result| result.map_err(Ended::Idle))
            }
        };
        match result {
            Ok(Ok(results)) => {
                self.give_back(conn);
                Ok(results)
            }
            Ok(Err(Ended::Idle(e))) => {
                self.give_back(conn);
                Err((e, body_done))
            }
            // Its state is unknown: closed, and the thread's next batch opens another.
            Ok(Err(Ended::Unknown(e))) => Err((e, body_done)),
            // Mid-protocol: closed, and the thread's next batch opens another.
            Err(_) => Err((TxError::Store(self.no_answer(body_done)), body_done)),
        }
    }
}

/// How a failed batch left its connection.
enum Ended {
    /// Outside any transaction, ready for the next batch.
    Idle(TxError),
    /// Perhaps still inside the transaction: never used again.
    Unknown(TxError),
}

/// A batch in one transaction, its `BEGIN` sent in the same round trip as its first
/// statements (the pre-check, or the writes when there is nothing to pre-check): a batch takes
/// the round trips of its statements plus the `COMMIT`'s. `body_done` is set once the `COMMIT`
/// may be sent.
async fn batch_transaction(
    conn: &AsyncPgConnection,
    units: &[Unit],
    keys: plan::Keys,
    vouched: plan::Vouched,
    body_done: &mut bool,
) -> Result<Vec<Result<(), StoreError>>, Ended> {
    let mut shared = conn;
    match write_units(conn, units, keys, vouched, Begin::InPipeline).await {
        Ok(results) => {
            *body_done = true;
            match shared.batch_execute("COMMIT").await {
                Ok(()) => Ok(results),
                // The server refused the COMMIT and ended the transaction.
                Err(e @ diesel::result::Error::DatabaseError(..)) => Err(Ended::Idle(e.into())),
                Err(e) => Err(Ended::Unknown(e.into())),
            }
        }
        // Whether the writes ran inside a transaction is not known: they may have been
        // committed one by one. Ambiguous, so no caller is told they failed or succeeded.
        Err(e @ TxError::Store(StoreError::Ambiguous(_))) => Err(Ended::Unknown(e)),
        Err(e) => match shared.batch_execute("ROLLBACK").await {
            Ok(()) => Err(Ended::Idle(e)),
            Err(_) => Err(Ended::Unknown(e)),
        },
    }
}

/// A connection under the statement timeout every session of ours runs under.
async fn establish(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(&format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

fn fail_all(units: &[Unit], err: StoreError) -> Vec<Result<(), StoreError>> {
    units.iter().map(|_| Err(err.clone())).collect()
}

/// How a batch attempt checks what is stored before writing.
enum Check {
    /// The whole batch at once, pre-checking these keys and taking these versions as stored
    /// (every key and nothing, or `Committed::trusting_keys`).
    Batch(plan::Keys, plan::Vouched),
    /// Every key of each unit, each unit in a savepoint of its own.
    Isolated,
}

/// Whether `write_units` opens the transaction it writes in.
#[derive(Clone, Copy)]
enum Begin {
    /// The caller did.
    Already,
    /// `BEGIN` goes first in the first round trip.
    InPipeline,
}

/// Pre-check `keys`, plan and write `units` inside a transaction: two round trips, or one
/// when there is nothing to pre-check.
async fn write_units(
    c: &AsyncPgConnection,
    units: &[Unit],
    keys: plan::Keys,
    vouched: plan::Vouched,
    mut begin: Begin,
) -> Result<Vec<Result<(), StoreError>>, TxError> {
    let mut found = Vec::new();
    for stmt in plan::precheck(Dialect::Postgres, &keys) {
        let mut shared = c;
        found.extend(after_begin(c, begin, stmt.load::<KeyRow>(&mut shared)).await?);
        begin = Begin::Already;
    }
    let existing = plan::Existing::new(found, &keys, vouched)?;
    let planned = plan::plan(Dialect::Postgres, units, existing, chrono::Utc::now())?;
    let expected: Vec<Option<usize>> = planned.statements.iter().map(Stmt::expected_rows).collect();
    let affected = after_begin(c, begin, execute_pipelined(c, planned.statements)).await?;
    for (expected, affected) in expected.into_iter().zip(affected) {
        check_rows(expected, affected)?;
    }
    Ok(planned.results)
}

/// Runs `statements` (a round trip's worth, not yet polled), behind a `BEGIN` in the same round
/// trip if `begin` asks for one. The `BEGIN` is sent before them: its future is polled first,
/// and a simple query goes out on its first poll. Should it fail, the statements after it may
/// have run outside a transaction: ambiguous.
async fn after_begin<T>(
    c: &AsyncPgConnection,
    begin: Begin,
    statements: impl std::future::Future<Output = Result<T, diesel::result::Error>>,
) -> Result<T, TxError> {
    let begun = async {
        if let Begin::InPipeline = begin {
            let mut shared = c;
            shared
                .batch_execute("BEGIN")
                .await
                .map_err(|e| TxError::Store(StoreError::Ambiguous(format!("BEGIN failed: {e}"))))?;
        }
        Ok(())
    };
    let (_, answer) = futures::try_join!(begun, statements.map_err(TxError::from))?;
    Ok(answer)
}

/// Each unit in its own savepoint: a unit the server rejects fails alone (`Unavailable`).
async fn write_isolated(
    c: &mut AsyncPgConnection,
    units: &[Unit],
) -> Result<Vec<Result<(), StoreError>>, TxError> {
    let mut results = Vec::with_capacity(units.len());
    let mut fence = BatchFence::default();
    for unit in units {
        if let Err(e) = fence.check(unit) {
            results.push(Err(e));
            continue;
        }
        let one = std::slice::from_ref(unit);
        let checked = async |c: &mut AsyncPgConnection| {
            write_units(
                c,
                one,
                plan::keys(one),
                plan::Vouched::default(),
                Begin::Already,
            )
            .await
        };
        let result = match c.transaction(checked).await {
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
}

/// Sends every statement before awaiting any answer: one round trip for the whole batch's
/// writes (the server still runs them in order, inside the caller's transaction).
async fn execute_pipelined(
    conn: &AsyncPgConnection,
    stmts: Vec<Stmt>,
) -> Result<Vec<usize>, diesel::result::Error> {
    let writes = stmts.into_iter().map(|stmt| {
        let mut shared = conn;
        async move { stmt.execute(&mut shared).await }
    });
    futures::future::try_join_all(writes).await
}
