//! A batch writer's own PostgreSQL connection (`Postgres::writer_conn`): kept from one batch to
//! the next, rolled back and kept after a failed batch, and replaced by a new one once the
//! server has closed it.

use std::time::{Duration, Instant};

use diesel::sql_types::Integer;
use diesel::QueryableByName;
use payrail_actors::domain::{StreamId, TenantId};
use payrail_actors::ports::{EventStore, StoreError};

use super::fixtures::{
    at, attempt_payment, charge_accepted, commit, create_invoice, delete_payment_row, InvoiceSpec,
};
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
        matches!(
            results.as_slice(),
            [Err(StoreError::Unavailable(_) | StoreError::Corrupt(_))]
        ),
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
