//! The statements that run on a timer over whole tables (the recovery sweeps and the retention
//! purges) read through their indexes, on both SQL backends, in the state that misled the
//! planner before: thousands of rows and no statistics yet, as right after a bulk of writes.
//! A sweep must not sort, and a purge must not read every row, to find a page of work. The
//! reads of one stream's or one invoice's events go through the indexes led by that entity.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_migrations::MigrationHarness;

use crate::store::event_store::{AWAITING_CHARGE_PAGE, PENDING_REFUNDS_PAGE, STREAM_EVENTS_AFTER};
use crate::store::ops::{purge_sql, Aged, AGED_ATTEMPTS, AGED_DEDUP, AGED_IDEMPOTENCY};
use crate::store::plan::PG_PRECHECK;
use crate::store::stmt::Dialect;
use crate::store::timelines::{
    log_filter, PG_INVOICE_EVENTS, SQLITE_INVOICE_EVENTS, STREAM_EVENTS, SUBJECT_REFUND,
    SUBJECT_STREAM,
};
use crate::store::PREFER_INDEXES;

/// Rows per table: enough that a sequential scan and a sort cost more than an index scan.
const ROWS: u32 = 20_000;

#[derive(QueryableByName)]
struct PgPlanLine {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

#[derive(QueryableByName)]
struct SqlitePlanLine {
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
}

/// `ROWS` rows in each swept or purged table, all of them recent; one payment and one refund
/// in a hundred awaiting a sweep.
fn fill(d: Dialect) -> String {
    let (series, now) = match d {
        Dialect::Postgres => (format!("generate_series(1, {ROWS}) AS s(g)"), "now()"),
        Dialect::Sqlite => (
            format!(
                "(WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n \
                 WHERE g < {ROWS}) SELECT g FROM n) AS s"
            ),
            "1",
        ),
    };
    // A stored response's size, so the purged table spans several BRIN ranges.
    let body = "x".repeat(200);
    format!(
        "INSERT INTO payments (tenant_id, id, invoice_id, amount, currency, created_at, details, \
           status, gateway_reference, version, data) \
         SELECT 'ten_plans', 'pay_' || g, 'inv_plans', 100, 'USD', {now}, '{{}}', \
           CASE WHEN g % 100 = 0 THEN 'processing' ELSE 'succeeded' END, \
           CASE WHEN g % 100 = 0 THEN NULL ELSE 'ch_' || g END, 2, '{{}}' FROM {series}; \
         INSERT INTO refunds (tenant_id, id, payment_id, status, amount, created_at, data) \
         SELECT 'ten_plans', 're_' || g, 'pay_' || g, \
           CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'succeeded' END, 100, {now}, '{{}}' \
         FROM {series}; \
         INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, body, created_at) \
         SELECT 'ten_plans', 'key_' || g, 'f', 201, '{body}', {now} FROM {series}; \
         INSERT INTO webhook_dedup (tenant_id, gateway_event_id, payment_id, created_at) \
         SELECT 'ten_plans', 'evt_' || g, 'pay_' || g, {now} FROM {series}; \
         INSERT INTO webhook_attempts (tenant_id, endpoint_id, id, event_seq, event_id, attempt, \
           status, duration_ms, attempted_at) \
         SELECT 'ten_plans', 'we_plans', 'wa_' || g, g, 'evt_' || g, 1, 'delivered', 1, {now} \
         FROM {series};"
    )
}

/// Each statement with its binds written in: a cursor before every id, a page of 1,000, a
/// retention cutoff a day ago.
fn statements(d: Dialect) -> Vec<(&'static str, String)> {
    let cutoff = match d {
        Dialect::Postgres => "now() - interval '1 day'",
        Dialect::Sqlite => "0",
    };
    let sweep = |sql: &str| sql.replacen('?', "''", 1).replacen('?', "1000", 1);
    let purge = |aged: &Aged| {
        purge_sql(aged)
            .replacen('?', cutoff, 1)
            .replacen('?', "1000", 1)
    };
    vec![
        ("payments_awaiting_charge", sweep(AWAITING_CHARGE_PAGE)),
        ("refunds_pending", sweep(PENDING_REFUNDS_PAGE)),
        (AGED_IDEMPOTENCY.index, purge(&AGED_IDEMPOTENCY)),
        (AGED_DEDUP.index, purge(&AGED_DEDUP)),
        (AGED_ATTEMPTS.index, purge(&AGED_ATTEMPTS)),
    ]
}

fn check(index: &str, plan: &str) {
    assert!(plan.contains(index), "{index} not read:\n{plan}");
    for whole_table in [
        "Seq Scan",
        "SCAN payments",
        "SCAN refunds",
        "SCAN idempotency_keys",
    ] {
        assert!(!plan.contains(whole_table), "{whole_table}:\n{plan}");
    }
    for sort in ["Sort", "TEMP B-TREE"] {
        assert!(!plan.contains(sort), "sorted to find a page:\n{plan}");
    }
}

/// `explain` (`EXPLAIN` and its options) of `sql` in a transaction set up as the engine sets
/// up those statements' transactions.
fn pg_plan(conn: &mut PgConnection, explain: &str, sql: &str) -> String {
    let plan = conn
        .transaction(|c| {
            c.batch_execute(PREFER_INDEXES)?;
            diesel::sql_query(format!("{explain} {sql}")).load::<PgPlanLine>(c)
        })
        .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|l| l.line).collect();
    plan.join("\n")
}

/// A migrated SQLite database in a temporary folder (kept while the answer lives), filled by
/// `fill`.
fn sqlite_filled(fill: &str) -> (tempfile::TempDir, SqliteConnection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    let mut conn = SqliteConnection::establish(&path.display().to_string()).unwrap();
    conn.run_pending_migrations(crate::store::sqlite::MIGRATIONS)
        .unwrap();
    conn.batch_execute(fill).unwrap();
    (dir, conn)
}

/// SQLite's `EXPLAIN QUERY PLAN` of `sql`, a line per step.
fn sqlite_plan(conn: &mut SqliteConnection, sql: &str) -> String {
    let plan: Vec<SqlitePlanLine> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
        .load(conn)
        .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|l| l.detail).collect();
    plan.join("\n")
}

#[test]
fn sqlite_sweeps_and_purges_read_their_indexes() {
    let (_dir, mut conn) = sqlite_filled(&fill(Dialect::Sqlite));
    for (index, sql) in statements(Dialect::Sqlite) {
        check(index, &sqlite_plan(&mut conn, &sql));
    }
}

#[tokio::test]
async fn postgres_sweeps_and_purges_read_their_indexes() {
    let url = crate::store::testing::empty_postgres().await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        conn.run_pending_migrations(crate::store::postgres::MIGRATIONS)
            .unwrap();
        // No statistics: autovacuum must not analyze the tables while the test reads plans.
        for table in [
            "payments",
            "refunds",
            "idempotency_keys",
            "webhook_dedup",
            "webhook_attempts",
        ] {
            conn.batch_execute(&format!(
                "ALTER TABLE {table} SET (autovacuum_enabled = off)"
            ))
            .unwrap();
        }
        conn.batch_execute(&fill(Dialect::Postgres)).unwrap();
        for (index, sql) in statements(Dialect::Postgres) {
            check(index, &pg_plan(&mut conn, "EXPLAIN", &sql));
        }
    })
    .await
    .unwrap();
}

/// The heap pages a purge of `aged` reads when nothing has expired, from its plan's
/// `Heap Blocks: lossy=N` (a BRIN's bitmap is lossy: whole pages of its candidate ranges).
/// The index is built on the empty table, so only its first range has a summary until one
/// is made.
fn pages_read_by_purge(conn: &mut PgConnection, aged: &Aged) -> u64 {
    let sql = purge_sql(aged)
        .replacen('?', "now() - interval '1 day'", 1)
        .replacen('?', "1000", 1);
    let plan = pg_plan(conn, "EXPLAIN (ANALYZE, BUFFERS)", &sql);
    // No bitmap heap scan line when the index rules out every page.
    let Some((_, after)) = plan.split_once("Heap Blocks: lossy=") else {
        return 0;
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// Summaries of the age index's page ranges are left to autovacuum, which lags behind a busy
/// table; until then every purge reads the unsummarized ranges whole. A purge summarizes them
/// first, so the next one, with nothing expired, reads at most the newest range (128 pages).
#[tokio::test]
async fn postgres_a_purge_reads_only_the_age_index_ranges_it_needs() {
    let (db, url) = crate::store::testing::fresh_postgres().await.unwrap();
    let mut conn = tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        conn.batch_execute("ALTER TABLE idempotency_keys SET (autovacuum_enabled = off)")
            .unwrap();
        conn.batch_execute(&fill(Dialect::Postgres)).unwrap();
        conn
    })
    .await
    .unwrap();
    let (before, conn_back) = tokio::task::spawn_blocking(move || {
        (pages_read_by_purge(&mut conn, &AGED_IDEMPOTENCY), conn)
    })
    .await
    .unwrap();
    conn = conn_back;
    assert!(before > 128, "the whole table unsummarized: {before} pages");

    let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
    assert_eq!(
        db.purge_expired(day_ago, day_ago, 1000).await.unwrap(),
        (0, 0)
    );

    let after =
        tokio::task::spawn_blocking(move || pages_read_by_purge(&mut conn, &AGED_IDEMPOTENCY))
            .await
            .unwrap();
    assert!(
        after <= 128,
        "read {after} pages after summarizing ({before} before)"
    );
}

/// `ROWS` events of four tenants: streams of three versions, invoices of six events, a
/// gateway event on every other row.
const FILL_EVENTS: &str = "INSERT INTO events (seq, tenant_id, stream_id, version, event_id, \
       event_type, invoice_id, actor, gateway_event_id, data, occurred_at) \
     SELECT g, md5('ten' || g % 4)::uuid, md5('pay' || g / 3)::uuid, g % 3 + 1, md5('evt' || g)::uuid, \
       'payment.succeeded', md5('inv' || g / 6)::uuid, 'gateway', \
       CASE WHEN g % 2 = 0 THEN 'gw_' || g END, '{}', now() \
     FROM generate_series(1, 20000) AS s(g)";

/// A tenant in `FILL_EVENTS`.
const TENANT: &str = "md5('ten1')::uuid";

/// A payment's stream in `FILL_EVENTS`.
const PAYMENT: &str = "md5('pay300')::uuid";

/// The reads of one stream or one invoice, and the write path's pre-check, go through the
/// events' stream/version and gateway-event indexes, which lead with the entity (or the tenant
/// and the gateway's id), never scanning a tenant's whole log.
#[tokio::test]
async fn postgres_event_reads_by_entity_use_their_indexes() {
    let url = crate::store::testing::empty_postgres().await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        conn.run_pending_migrations(crate::store::postgres::MIGRATIONS)
            .unwrap();
        conn.batch_execute("ALTER TABLE events SET (autovacuum_enabled = off)")
            .unwrap();
        conn.batch_execute(FILL_EVENTS).unwrap();
        let select = |filter: &str, binds: &[&str]| {
            binds.iter().fold(
                format!("SELECT * FROM events e WHERE {filter}"),
                |sql, bind| sql.replacen('?', bind, 1),
            )
        };
        for (index, sql) in [
            (
                "events_stream_version",
                select(STREAM_EVENTS_AFTER, &[TENANT, PAYMENT, "1"]),
            ),
            (
                "events_stream_version",
                select(STREAM_EVENTS, &[TENANT, PAYMENT]),
            ),
        ] {
            check(index, &pg_plan(&mut conn, "EXPLAIN", &sql));
        }
        // An invoice's timeline, and a page of the log about one subject, read the streams
        // through their index and sort what they find.
        let streams = "ARRAY[md5('inv150')::uuid, md5('pay300')::uuid]";
        for sql in [
            select(PG_INVOICE_EVENTS, &[TENANT, streams, "20000"]),
            select(
                &log_filter(false, Some(SUBJECT_STREAM)),
                &[TENANT, "0", "md5('inv150')::uuid", "10"],
            ),
            select(
                &log_filter(false, Some(SUBJECT_REFUND)),
                &[TENANT, "0", PAYMENT, "md5('re1')::uuid", "10"],
            ),
        ] {
            let plan = pg_plan(&mut conn, "EXPLAIN", &sql);
            assert!(plan.contains("events_stream_version"), "{plan}");
            assert!(!plan.contains("events_pkey"), "{plan}");
            assert!(!plan.contains("Seq Scan on events"), "{plan}");
        }
        let arrays = [
            "ARRAY[md5('ten1')::uuid]",
            "ARRAY[md5('pay300')::uuid]",
            "ARRAY['ten_1']",
            "ARRAY[md5('ten1')::uuid]",
            "ARRAY['gw_902']",
            "ARRAY['pay_300']",
            "ARRAY[]::text[]",
            "ARRAY[]::text[]",
            "ARRAY[]::text[]",
            "ARRAY[]::text[]",
        ];
        let precheck = arrays
            .iter()
            .fold(PG_PRECHECK.to_owned(), |sql, a| sql.replacen('?', a, 1));
        let plan = pg_plan(&mut conn, "EXPLAIN", &precheck);
        for index in ["events_stream_version", "events_gateway_event"] {
            assert!(plan.contains(index), "{index} not read:\n{plan}");
        }
        assert!(!plan.contains("Seq Scan on events"), "{plan}");
    })
    .await
    .unwrap();
}

/// `FILL_EVENTS` on SQLite, whose ids are TypeID text, and each invoice's payments.
const SQLITE_FILL_EVENTS: &str = "WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n \
       WHERE g < 20000) \
     INSERT INTO events (seq, tenant_id, stream_id, version, event_id, event_type, invoice_id, \
       actor, gateway_event_id, data, occurred_at) \
     SELECT g, 'ten_' || (g % 4), 'pay_' || (g / 3), g % 3 + 1, 'evt_' || g, \
       'payment.succeeded', 'inv_' || (g / 6), 'gateway', \
       CASE WHEN g % 2 = 0 THEN 'gw_' || g END, '{}', 1 FROM n; \
     WITH RECURSIVE n(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM n WHERE g < 6700) \
     INSERT INTO payments (tenant_id, id, invoice_id, amount, currency, created_at, details, \
       status, gateway_reference, version, data) \
     SELECT 'ten_' || (g % 4), 'pay_' || g, 'inv_' || (g / 2), 100, 'USD', 1, '{}', 'succeeded', \
       'ch_' || g, 3, '{}' FROM n;";

/// An invoice's timeline reads its payments through their invoice index and each stream
/// through the stream/version index, never a tenant's whole log; a stream's reads, and a page
/// of the log about one subject, go through the stream/version index.
#[test]
fn sqlite_event_reads_by_entity_use_their_indexes() {
    let (_dir, mut conn) = sqlite_filled(SQLITE_FILL_EVENTS);
    let plan = |conn: &mut SqliteConnection, filter: &str, binds: &[&str]| {
        let sql = binds.iter().fold(
            format!("SELECT * FROM events e WHERE {filter}"),
            |sql, bind| sql.replacen('?', bind, 1),
        );
        sqlite_plan(conn, &sql)
    };
    let stream_index = "USING INDEX sqlite_autoindex_events_2";
    for (filter, binds) in [
        (STREAM_EVENTS_AFTER, &["'ten_1'", "'pay_300'", "1"][..]),
        (STREAM_EVENTS, &["'ten_1'", "'pay_300'"][..]),
    ] {
        let plan = plan(&mut conn, filter, binds);
        assert!(plan.contains(stream_index), "{plan}");
        check("events", &plan);
    }
    let timeline = plan(
        &mut conn,
        SQLITE_INVOICE_EVENTS,
        &["'ten_1'", "'inv_150'", "'ten_1'", "'inv_150'"],
    );
    assert!(timeline.contains(stream_index), "{timeline}");
    assert!(timeline.contains("payments_invoice"), "{timeline}");
    assert!(!timeline.contains("SCAN e"), "{timeline}");
    assert!(!timeline.contains("SCAN p"), "{timeline}");

    // A page of the log about one subject reads the subject's stream, not the tenant's log
    // from the cursor on; a page of the whole log reads it in order, unsorted.
    for (subject, binds) in [
        (SUBJECT_STREAM, &["'inv_150'"][..]),
        (SUBJECT_STREAM, &["'pay_300'"][..]),
        (SUBJECT_REFUND, &["'pay_300'", "'re_1'"][..]),
    ] {
        let mut all = vec!["'ten_1'", "0"];
        all.extend(binds);
        all.push("10");
        let page = plan(&mut conn, &log_filter(false, Some(subject)), &all);
        assert!(page.contains(stream_index), "{subject}: {page}");
    }
    let log = plan(
        &mut conn,
        &log_filter(true, None),
        &["'ten_1'", "0", "'payment.succeeded'", "10"],
    );
    assert!(!log.contains("TEMP B-TREE"), "{log}");
}
