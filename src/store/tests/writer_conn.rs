//! A batch writer's own PostgreSQL connection (`Postgres::writer_conn`): kept from one batch to
//! the next, and replaced by a new one once the server has closed it.

use std::time::{Duration, Instant};

use diesel::sql_types::Integer;
use diesel::QueryableByName;
use payrail_actors::domain::TenantId;

use super::fixtures::{commit, create_invoice, InvoiceSpec};
use crate::store::stmt::Stmt;
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
