//! Baseline (b): the write path without group commit — one transaction per webhook event
//! (insert one event row and one dedup row, update the payment's projection row, commit) from
//! K concurrent callers, straight into the same database, in tables of the same shape as
//! `events`, `webhook_dedup` and `payments`. Closed loop: each caller starts its next
//! transaction when the previous one committed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use hdrhistogram::Histogram;

use crate::procs;

/// Concurrent callers; the same path was measured on this machine at K = 64.
pub const CALLERS: usize = 64;

const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS load_events (
    seq bigserial NOT NULL, tenant_id text NOT NULL, stream_id text NOT NULL,
    version bigint NOT NULL, event_id text NOT NULL, event_type text NOT NULL,
    invoice_id text, subject_id text NOT NULL, actor text NOT NULL, gateway_event_id text,
    data json NOT NULL, occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, seq), UNIQUE (tenant_id, stream_id, version));
CREATE TABLE IF NOT EXISTS load_dedup (
    tenant_id text NOT NULL, gateway_event_id text NOT NULL, payment_id text NOT NULL,
    created_at timestamptz NOT NULL, PRIMARY KEY (tenant_id, gateway_event_id));
CREATE TABLE IF NOT EXISTS load_payments (
    tenant_id text NOT NULL, id text NOT NULL, invoice_id text NOT NULL, status text NOT NULL,
    amount bigint NOT NULL, currency text NOT NULL, gateway_reference text,
    created_at timestamptz NOT NULL, version bigint NOT NULL, data json NOT NULL,
    PRIMARY KEY (tenant_id, id)) WITH (fillfactor = 80);
CREATE INDEX IF NOT EXISTS load_payments_invoice ON load_payments (tenant_id, invoice_id, id);
CREATE INDEX IF NOT EXISTS load_payments_status ON load_payments (tenant_id, status, id);
INSERT INTO load_payments
    SELECT 'ten_load' || (c % 8), 'pay_base_' || c || '_' || i, 'inv_base_' || c, 'processing',
           1000, 'USD', NULL, now(), 1, '{}'
    FROM generate_series(0, 63) c, generate_series(0, 255) i
    ON CONFLICT DO NOTHING;";

const SQLITE_SCHEMA: &str = "
PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS load_events (
    seq INTEGER PRIMARY KEY, tenant_id text NOT NULL, stream_id text NOT NULL,
    version integer NOT NULL, event_id text NOT NULL, event_type text NOT NULL,
    invoice_id text, subject_id text NOT NULL, actor text NOT NULL, gateway_event_id text,
    data text NOT NULL, occurred_at integer NOT NULL, UNIQUE (tenant_id, stream_id, version));
CREATE TABLE IF NOT EXISTS load_dedup (
    tenant_id text NOT NULL, gateway_event_id text NOT NULL, payment_id text NOT NULL,
    created_at integer NOT NULL, PRIMARY KEY (tenant_id, gateway_event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS load_payments (
    tenant_id text NOT NULL, id text NOT NULL, invoice_id text NOT NULL, status text NOT NULL,
    amount integer NOT NULL, currency text NOT NULL, gateway_reference text,
    created_at integer NOT NULL, version integer NOT NULL, data text NOT NULL,
    PRIMARY KEY (tenant_id, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS load_payments_invoice ON load_payments (tenant_id, invoice_id, id);
CREATE INDEX IF NOT EXISTS load_payments_status ON load_payments (tenant_id, status, id);
WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < 63),
               i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < 255)
INSERT OR IGNORE INTO load_payments
    SELECT 'ten_load' || (c.n % 8), 'pay_base_' || c.n || '_' || i.n, 'inv_base_' || c.n,
           'processing', 1000, 'USD', NULL, strftime('%s','now'), 1, '{}'
    FROM c, i;";

const PG_INSERT_EVENT: &str = "INSERT INTO load_events (tenant_id, stream_id, version, event_id, \
    event_type, subject_id, actor, gateway_event_id, data, occurred_at) \
    VALUES ($1, $2, $3, $4, 'payment.succeeded', $2, 'gateway', $5, $6::json, now())";
const PG_INSERT_DEDUP: &str = "INSERT INTO load_dedup (tenant_id, gateway_event_id, payment_id, \
    created_at) VALUES ($1, $2, $3, now())";
const PG_UPDATE_PAYMENT: &str = "UPDATE load_payments SET status = 'succeeded', \
    version = version + 1, data = $3::json WHERE tenant_id = $1 AND id = $2";
const SQLITE_UPDATE_PAYMENT: &str = "UPDATE load_payments SET status = 'succeeded', \
    version = version + 1, data = ? WHERE tenant_id = ? AND id = ?";
/// Payment rows each caller cycles through (seeded by the schema script).
const PAYMENTS_PER_CALLER: u64 = 256;
const SQLITE_INSERT_EVENT: &str = "INSERT INTO load_events (tenant_id, stream_id, version, \
    event_id, event_type, subject_id, actor, gateway_event_id, data, occurred_at) \
    VALUES (?, ?, ?, ?, 'payment.succeeded', ?, 'gateway', ?, ?, strftime('%s','now'))";
const SQLITE_INSERT_DEDUP: &str = "INSERT INTO load_dedup (tenant_id, gateway_event_id, \
    payment_id, created_at) VALUES (?, ?, ?, strftime('%s','now'))";

pub struct BaselineResult {
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub db_cpu_ms_per_kop: f64,
    /// PostgreSQL only.
    pub wal_bytes_per_op: Option<f64>,
}

struct Op {
    tenant: String,
    payment: String,
    stream: String,
    event: String,
    gateway_event: String,
    data: String,
}

fn op(caller: usize, n: u64) -> Op {
    let stream = format!("pay_load{caller:03}x{n:012}");
    Op {
        tenant: format!("ten_load{}", caller % 8),
        payment: format!("pay_base_{caller}_{}", n % PAYMENTS_PER_CALLER),
        event: format!("evt_{stream}"),
        gateway_event: format!("evt_gw_base_{caller}_{n}"),
        data: format!(
            r#"{{"paymentId":"{stream}","gatewayReference":"ch_{stream}","amount":1000,"currency":"USD","method":{{"brand":"visa","last4":"4242"}}}}"#
        ),
        stream,
    }
}

fn pg_op(conn: &mut PgConnection, o: &Op) -> diesel::QueryResult<()> {
    conn.transaction(|c| {
        diesel::sql_query(PG_INSERT_EVENT)
            .bind::<Text, _>(&o.tenant)
            .bind::<Text, _>(&o.stream)
            .bind::<BigInt, _>(1i64)
            .bind::<Text, _>(&o.event)
            .bind::<Text, _>(&o.gateway_event)
            .bind::<Text, _>(&o.data)
            .execute(c)?;
        diesel::sql_query(PG_INSERT_DEDUP)
            .bind::<Text, _>(&o.tenant)
            .bind::<Text, _>(&o.gateway_event)
            .bind::<Text, _>(&o.stream)
            .execute(c)?;
        diesel::sql_query(PG_UPDATE_PAYMENT)
            .bind::<Text, _>(&o.tenant)
            .bind::<Text, _>(&o.payment)
            .bind::<Text, _>(&o.data)
            .execute(c)?;
        Ok(())
    })
}

fn sqlite_op(conn: &mut SqliteConnection, o: &Op) -> diesel::QueryResult<()> {
    conn.immediate_transaction(|c| {
        diesel::sql_query(SQLITE_INSERT_EVENT)
            .bind::<Text, _>(&o.tenant)
            .bind::<Text, _>(&o.stream)
            .bind::<BigInt, _>(1i64)
            .bind::<Text, _>(&o.event)
            .bind::<Text, _>(&o.stream)
            .bind::<Text, _>(&o.gateway_event)
            .bind::<Text, _>(&o.data)
            .execute(c)?;
        diesel::sql_query(SQLITE_INSERT_DEDUP)
            .bind::<Text, _>(&o.tenant)
            .bind::<Text, _>(&o.gateway_event)
            .bind::<Text, _>(&o.stream)
            .execute(c)?;
        diesel::sql_query(SQLITE_UPDATE_PAYMENT)
            .bind::<Text, _>(&o.data)
            .bind::<Text, _>(&o.tenant)
            .bind::<Text, _>(&o.payment)
            .execute(c)?;
        Ok(())
    })
}

/// Runs the baseline for `duration` against `db_url` (`postgres://…` or `sqlite://path`).
/// PostgreSQL: one connection per caller. SQLite: one writer connection the callers share
/// (the engine also has a single writer; K writers would only spin on the file lock).
pub fn run(
    db_url: &str,
    duration: Duration,
    postmaster: Option<u32>,
) -> anyhow::Result<BaselineResult> {
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let sqlite = match db_url.strip_prefix("sqlite://") {
        Some(path) => {
            let mut conn = SqliteConnection::establish(path)?;
            conn.batch_execute(SQLITE_SCHEMA)?;
            Some(Arc::new(Mutex::new(conn)))
        }
        None => {
            PgConnection::establish(db_url)?.batch_execute(PG_SCHEMA)?;
            None
        }
    };
    let db0 = postmaster.map_or(0.0, procs::tree_cpu_secs);
    let wal0 = wal_position(db_url);
    let start = Instant::now();
    let done = std::thread::scope(|scope| -> anyhow::Result<u64> {
        let handles: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let (hist, sqlite) = (hist.clone(), sqlite.clone());
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut pg = match sqlite {
                        Some(_) => None,
                        None => Some(PgConnection::establish(db_url)?),
                    };
                    let mut n = 0u64;
                    while start.elapsed() < duration {
                        let o = op(caller, n);
                        let t0 = Instant::now();
                        match (&mut pg, &sqlite) {
                            (Some(conn), _) => pg_op(conn, &o)?,
                            (None, Some(shared)) => sqlite_op(
                                &mut shared.lock().unwrap_or_else(|e| e.into_inner()),
                                &o,
                            )?,
                            (None, None) => unreachable!("one backend is chosen"),
                        }
                        hist.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .saturating_record(t0.elapsed().as_micros() as u64);
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut total = 0;
        for handle in handles {
            total += handle
                .join()
                .map_err(|_| anyhow::anyhow!("baseline caller panicked"))??;
        }
        Ok(total)
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    let db_cpu = postmaster.map_or(0.0, procs::tree_cpu_secs) - db0;
    let wal = wal0
        .zip(wal_position(db_url))
        .map(|(a, b)| b.saturating_sub(a));
    let hist = hist.lock().unwrap_or_else(|e| e.into_inner());
    Ok(BaselineResult {
        ops_per_s: done as f64 / elapsed,
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1_000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1_000.0,
        db_cpu_ms_per_kop: if done == 0 {
            0.0
        } else {
            db_cpu * 1_000.0 / (done as f64 / 1_000.0)
        },
        wal_bytes_per_op: wal.map(|bytes| bytes as f64 / done.max(1) as f64),
    })
}

#[derive(diesel::QueryableByName)]
struct Lsn {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// PostgreSQL's WAL position in bytes (None on SQLite).
fn wal_position(db_url: &str) -> Option<u64> {
    if db_url.starts_with("sqlite://") {
        return None;
    }
    let mut conn = PgConnection::establish(db_url).ok()?;
    let rows: Vec<Lsn> = diesel::sql_query("SELECT (pg_current_wal_lsn() - '0/0')::int8 AS n")
        .load(&mut conn)
        .ok()?;
    rows.first().and_then(|r| u64::try_from(r.n).ok())
}
