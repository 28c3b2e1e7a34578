//! A batch writer's own PostgreSQL connection (`Postgres::writer_conn`): kept from one batch to
//! the next, rolled back and kept after a failed batch, and replaced by a new one once the
//! server has closed it.

use std::time::{Duration, Instant};

use diesel::sql_types::Integer;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use payrail_actors::domain::{StreamId, TenantId};
use payrail_actors::ports::{EventStore, StoreError};

use super::fixtures::{
    at, attempt_payment, charge_accepted, commit, create_invoice, delete_payment_row, InvoiceSpec,
};
use crate::store::postgres::execute_in_order;
use crate::store::rows::TextRow;
use crate::store::stmt::{Bind, Stmt};
use crate::store::{testing, Db};

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// The client sessions on the test's database other than the one asking. The store's pool
/// holds one connection here (nothing runs two queries at once), so these are the writer's.
async fn other_sessions(db: &Db) -> Vec<i32> {
    let sessions: Vec<Session> = db
        .load(Stmt::new(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid",
            vec![],
        ))
        .await
        .unwrap();
    sessions.into_iter().map(|s| s.pid).collect()
}

/// What the server says session `pid` is doing (`idle`, `idle in transaction`, …).
async fn state(db: &Db, pid: i32) -> String {
    let rows: Vec<TextRow> = db
        .load(Stmt::new(
            "SELECT state AS value FROM pg_stat_activity WHERE pid = ?",
            vec![Bind::I64(pid.into())],
        ))
        .await
        .unwrap();
    rows.into_iter().map(|r| r.value).collect()
}

/// A batch of one: a tenant's first invoice.
async fn create_one(db: &Db) {
    let (_, created) = create_invoice(TenantId::new(), &InvoiceSpec::default());
    commit(db, vec![created]).await;
}

#[tokio::test]
async fn a_writer_keeps_its_connection_and_replaces_one_the_server_closed() {
    let (db, _url) = testing::fresh_postgres().await.unwrap();

    create_one(&db).await;
    let first = other_sessions(&db).await;
    assert_eq!(
        first.len(),
        1,
        "one connection of the writer's own: {first:?}"
    );
    create_one(&db).await;
    create_one(&db).await;
    assert_eq!(
        other_sessions(&db).await,
        first,
        "the same connection for every batch"
    );

    db.transact(vec![Stmt::new(
        format!("SELECT pg_terminate_backend({})", first[0]),
        vec![],
    )])
    .await
    .unwrap();
    // Each query here also lets the test's runtime drive the writer's connection, whose task
    // reads the server's goodbye and marks it closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !other_sessions(&db).await.is_empty() {
        assert!(Instant::now() < deadline, "the session was not terminated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    create_one(&db).await;
    let second = other_sessions(&db).await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first, "a new connection replaced the closed one");
}

/// A batch whose writes went out and then failed (an update of a row another session deleted
/// touches no row) is rolled back on the writer's connection, which stays outside any
/// transaction and writes the next batch: nothing of the failed batch is stored.
#[tokio::test]
async fn a_failed_batch_is_rolled_back_and_its_connection_writes_the_next() {
    let (db, _url) = testing::fresh_postgres().await.unwrap();
    let tenant = TenantId::new();
    let (mut invoice, created) = create_invoice(tenant, &InvoiceSpec::default());
    let (mut payment, attempt) = attempt_payment(&mut invoice, 1000, at(1));
    commit(&db, vec![created, attempt]).await;
    let writer = other_sessions(&db).await;
    assert_eq!(writer.len(), 1, "{writer:?}");
    delete_payment_row(&db, tenant, payment.id).await;

    let results = db.append(vec![charge_accepted(&mut payment, at(2))]).await;
    assert!(
        matches!(results.as_slice(), [Err(StoreError::Unavailable(_))]),
        "{results:?}"
    );
    assert_eq!(state(&db, writer[0]).await, "idle", "rolled back");
    let stream = db
        .load_stream(tenant, StreamId::Payment(payment.id))
        .await
        .unwrap();
    assert_eq!(
        stream.len(),
        1,
        "the failed batch's event row is not stored"
    );

    create_one(&db).await;
    assert_eq!(other_sessions(&db).await, writer, "the same connection");
    assert_eq!(state(&db, writer[0]).await, "idle", "committed");
}

/// The rows of the test's `probe` table, as another session sees them.
async fn probes(db: &Db) -> String {
    let rows: Vec<TextRow> = db
        .load(Stmt::new(
            "SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') AS value FROM probe",
            vec![],
        ))
        .await
        .unwrap();
    rows.into_iter().map(|r| r.value).collect()
}

/// A fresh database with an empty `probe` table.
async fn probe_db() -> (Db, String) {
    let (db, url) = testing::fresh_postgres().await.unwrap();
    db.transact(vec![Stmt::new("CREATE TABLE probe (n int)", vec![])])
        .await
        .unwrap();
    (db, url)
}

/// Runs `stmts` through `execute_in_order` inside a transaction, on a session of its own none
/// of whose statements is prepared yet; after a failure, rolls back whatever it left open.
async fn run_fresh(url: &str, stmts: Vec<Stmt>) -> Result<Vec<usize>, diesel::result::Error> {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    let result = execute_in_order(&conn, stmts).await;
    if result.is_err() {
        conn.batch_execute("ROLLBACK").await.unwrap();
    }
    result
}

/// A batch's statements and its `COMMIT` go out together and run in the order given, even on a
/// session that must first prepare each of them: a statement the server refuses aborts the
/// transaction before the `COMMIT` behind it is read, and nothing ahead of it is stored (a
/// `COMMIT` passing the statements still being prepared would have committed the first two
/// inserts on their own).
#[tokio::test]
async fn statements_sent_together_run_in_order_and_a_refusal_stops_the_commit_behind() {
    let (db, url) = probe_db().await;
    let refused = run_fresh(
        &url,
        vec![
            Stmt::new("INSERT INTO probe VALUES (1)", vec![]),
            Stmt::new("INSERT INTO probe VALUES (2)", vec![]),
            Stmt::new("SELECT payrail_expect_rows(1, ?)", vec![Bind::I64(2)]),
            Stmt::new("COMMIT", vec![]),
        ],
    )
    .await;
    let error = refused.unwrap_err().to_string();
    assert!(
        error.contains("expected 2 stored rows and found 1"),
        "{error}"
    );
    assert_eq!(
        probes(&db).await,
        "",
        "nothing of the refused run is stored"
    );

    let counts = run_fresh(
        &url,
        vec![
            Stmt::new("INSERT INTO probe VALUES (3)", vec![]),
            Stmt::new("INSERT INTO probe VALUES (4), (5)", vec![]),
            Stmt::new("COMMIT", vec![]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(counts, [1, 2, 0]);
    assert_eq!(
        probes(&db).await,
        "3,4,5",
        "committed by the COMMIT sent with them"
    );
}

/// A statement that fails before it is sent (a placeholder without its bind) ends the run
/// before anything behind it goes out: the `COMMIT` last in line does not commit the insert
/// ahead of it.
#[tokio::test]
async fn a_statement_failing_before_it_is_sent_holds_back_the_commit_behind_it() {
    let (db, url) = probe_db().await;
    let failed = run_fresh(
        &url,
        vec![
            Stmt::new("INSERT INTO probe VALUES (1)", vec![]),
            Stmt::new("INSERT INTO probe VALUES (?)", vec![]),
            Stmt::new("COMMIT", vec![]),
        ],
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        probes(&db).await,
        "",
        "the insert ahead of it was rolled back"
    );
}
