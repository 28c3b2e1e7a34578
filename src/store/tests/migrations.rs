//! Migrations over existing data: a database written by an earlier version keeps its events,
//! renumbered per tenant in their old order, when `sequence` becomes per tenant.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_migrations::MigrationHarness;

/// The migration that numbers events per tenant.
const PER_TENANT: &str = "sequence_per_tenant";

/// Events of two tenants interleaved, as the platform-wide counter numbered them.
const EVENTS: [(i64, &str); 5] = [(7, "a"), (9, "b"), (10, "a"), (12, "b"), (20, "a")];

#[derive(QueryableByName, Debug, PartialEq)]
struct Numbered {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tenant_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_id: String,
}

fn insert_sql(occurred_at: &str) -> String {
    EVENTS
        .iter()
        .map(|(seq, tenant)| {
            format!(
                "INSERT INTO events (seq, tenant_id, stream_id, version, event_id, event_type, \
                 subject_id, actor, data, occurred_at) VALUES ({seq}, 'ten_{tenant}', \
                 'inv_{tenant}{seq}', 1, 'evt_{seq}', 'invoice.created', 'inv_{tenant}{seq}', \
                 'test', '{{}}', {occurred_at});"
            )
        })
        .collect()
}

/// Runs the pending migrations before (`before`) or from (`!before`) the per-tenant one.
fn migrate<DB, C>(conn: &mut C, source: impl MigrationSource<DB>, before: bool)
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
{
    for migration in conn.pending_migrations(source).unwrap() {
        let is_per_tenant = migration.name().to_string().contains(PER_TENANT);
        if before && is_per_tenant {
            return;
        }
        conn.run_migration(&migration).unwrap();
    }
}

fn check(numbered: Vec<Numbered>, counters: Vec<Numbered>) {
    let expected = |tenant: &str, ids: &[i64]| -> Vec<(String, i64, String)> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| (format!("ten_{tenant}"), i as i64 + 1, format!("evt_{id}")))
            .collect()
    };
    let mut want = expected("a", &[7, 10, 20]);
    want.extend(expected("b", &[9, 12]));
    let got: Vec<_> = numbered
        .into_iter()
        .map(|n| (n.tenant_id, n.seq, n.event_id))
        .collect();
    assert_eq!(got, want);
    let counters: Vec<_> = counters.into_iter().map(|c| (c.tenant_id, c.seq)).collect();
    assert_eq!(counters, [("ten_a".to_owned(), 3), ("ten_b".to_owned(), 2)]);
}

const NUMBERED: &str = "SELECT tenant_id, seq, event_id FROM events ORDER BY tenant_id, seq";
const COUNTERS: &str =
    "SELECT tenant_id, last_seq AS seq, '' AS event_id FROM event_counters ORDER BY tenant_id";

#[test]
fn sqlite_events_are_renumbered_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let mut conn = SqliteConnection::establish(&path.display().to_string()).unwrap();
    migrate(&mut conn, crate::store::sqlite::MIGRATIONS, true);
    conn.batch_execute(&insert_sql("0")).unwrap();
    migrate(&mut conn, crate::store::sqlite::MIGRATIONS, false);
    let numbered = diesel::sql_query(NUMBERED).load(&mut conn).unwrap();
    let counters = diesel::sql_query(COUNTERS).load(&mut conn).unwrap();
    check(numbered, counters);
}

#[tokio::test]
async fn postgres_events_are_renumbered_per_tenant() {
    let url = crate::store::testing::empty_postgres().await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        migrate(&mut conn, crate::store::postgres::MIGRATIONS, true);
        conn.batch_execute(&insert_sql("now()")).unwrap();
        migrate(&mut conn, crate::store::postgres::MIGRATIONS, false);
        let numbered = diesel::sql_query(NUMBERED).load(&mut conn).unwrap();
        let counters = diesel::sql_query(COUNTERS).load(&mut conn).unwrap();
        check(numbered, counters);
    })
    .await
    .unwrap();
}
