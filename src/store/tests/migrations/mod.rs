//! Migrations over existing data: rows written in the shape an earlier schema had, migrated
//! up and checked, and (where a migration has a way back) reverted and checked again, on
//! SQLite and on PostgreSQL. `events` holds the audit log's migrations, `projections` those of
//! the invoice and payment snapshots; this module the harness they share.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use crate::store::stmt::Dialect;

mod events;
mod projections;

/// Runs the pending migrations before (`before`) or from (`!before`) the one named `name`.
fn migrate<DB, C>(conn: &mut C, source: impl MigrationSource<DB>, name: &str, before: bool)
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
{
    for migration in conn.pending_migrations(source).unwrap() {
        if before && migration.name().to_string().contains(name) {
            return;
        }
        conn.run_migration(&migration).unwrap();
    }
}

/// Runs the pending migrations up to and including the one named `name`.
fn migrate_through<DB, C>(conn: &mut C, source: impl MigrationSource<DB>, name: &str)
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
{
    for migration in conn.pending_migrations(source).unwrap() {
        conn.run_migration(&migration).unwrap();
        if migration.name().to_string().contains(name) {
            return;
        }
    }
}

/// Reverts the last migration applied, which must be the one named `name`.
fn revert_last<DB, C>(conn: &mut C, source: impl MigrationSource<DB>, name: &str)
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
{
    let migrations = source.migrations().unwrap();
    let named = migrations
        .iter()
        .find(|m| m.name().to_string().contains(name))
        .unwrap();
    let last = conn
        .applied_migrations()
        .unwrap()
        .into_iter()
        .max()
        .unwrap();
    assert_eq!(last, named.name().version());
    conn.revert_migration(&**named).unwrap();
}

/// A database of an earlier schema: its connection, its backend's migrations and SQL.
trait OldDatabase: SimpleConnection + MigrationHarness<Self::Db> {
    type Db: diesel::backend::Backend;
    const DIALECT: Dialect;
    /// An SQL value for a timestamp column (`created_at`, `occurred_at`).
    const NOW: &'static str;
    fn migrations() -> EmbeddedMigrations;
    fn rows<R: QueryableByName<Self::Db> + 'static>(&mut self, sql: &str) -> Vec<R>;
}

impl OldDatabase for SqliteConnection {
    type Db = diesel::sqlite::Sqlite;
    const DIALECT: Dialect = Dialect::Sqlite;
    const NOW: &'static str = "0";
    fn migrations() -> EmbeddedMigrations {
        crate::store::sqlite::MIGRATIONS
    }
    fn rows<R: QueryableByName<Self::Db> + 'static>(&mut self, sql: &str) -> Vec<R> {
        diesel::sql_query(sql).load(self).unwrap()
    }
}

impl OldDatabase for PgConnection {
    type Db = diesel::pg::Pg;
    const DIALECT: Dialect = Dialect::Postgres;
    const NOW: &'static str = "now()";
    fn migrations() -> EmbeddedMigrations {
        crate::store::postgres::MIGRATIONS
    }
    fn rows<R: QueryableByName<Self::Db> + 'static>(&mut self, sql: &str) -> Vec<R> {
        diesel::sql_query(sql).load(self).unwrap()
    }
}

fn on_sqlite(scenario: impl FnOnce(&mut SqliteConnection)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    scenario(&mut SqliteConnection::establish(&path.display().to_string()).unwrap());
}

async fn on_postgres(scenario: impl FnOnce(&mut PgConnection) + Send + 'static) {
    let url = crate::store::testing::empty_postgres().await.unwrap();
    tokio::task::spawn_blocking(move || scenario(&mut PgConnection::establish(&url).unwrap()))
        .await
        .unwrap();
}

/// Writes `rows` at the schema just before the migration named `name`, runs it and checks
/// `after`, then reverts it and checks `back`.
fn there_and_back<C: OldDatabase>(
    conn: &mut C,
    name: &str,
    rows: &str,
    after: impl FnOnce(&mut C),
    back: impl FnOnce(&mut C),
) where
    EmbeddedMigrations: MigrationSource<C::Db>,
{
    migrate(conn, C::migrations(), name, true);
    conn.batch_execute(rows).unwrap();
    migrate_through(conn, C::migrations(), name);
    after(conn);
    revert_last(conn, C::migrations(), name);
    back(conn);
}
