//! Group commit on the real stores: durable units per second by batch size and batches in
//! flight, on SQLite (a temp file) and, when `PAYRAIL_BENCH_PG_URL` names a database, PostgreSQL.
//! One unit has the shape of an applied webhook: one event, one projection upsert, one dedup key.
//! `cargo bench --bench store_commit`; prints one JSON line per configuration
//! (`PAYRAIL_BENCH_SKIP_SQLITE=1` measures PostgreSQL alone).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use payrail::store::Db;
use payrail_actors::domain::{
    CardSummary, Event, EventData, EventId, InvoiceId, Payment, PaymentId, StreamId, TenantId,
};
use payrail_actors::ports::{DedupKey, EventStore, Snapshot, StreamAppend, Unit};

const BATCH_SIZES: [usize; 5] = [1, 16, 64, 256, 512];
/// Each configuration runs at least this long (or this many batches), whichever ends first.
const MIN_DURATION: Duration = Duration::from_secs(3);
const MAX_BATCHES: usize = 400;

fn unit(tenant: TenantId, invoice: InvoiceId, n: u64) -> Unit {
    let payment_id = PaymentId::new();
    let at = Utc::now();
    let event = Event {
        id: EventId::new(),
        tenant_id: tenant,
        stream: StreamId::Payment(payment_id),
        version: 1,
        invoice_id: Some(invoice),
        actor: "gateway".into(),
        occurred_at: at,
        gateway_event_id: Some(format!("evt_gw_{n}_{payment_id}")),
        data: EventData::PaymentAttempted {
            invoice_id: invoice,
            amount: 1_000,
            currency: "USD".parse().unwrap(),
            payment_method: CardSummary {
                kind: "card".into(),
                brand: "visa".into(),
                last4: "4242".into(),
                exp_month: 12,
                exp_year: 2040,
                fingerprint: "0123456789abcdef".into(),
            }
            .into(),
            token: None,
        },
    };
    let mut payment = Payment::blank(tenant, payment_id, at);
    payment.apply(&event);
    let mut unit = Unit::new(tenant);
    unit.dedup_keys.push(DedupKey {
        gateway_event_id: event.gateway_event_id.clone().unwrap(),
        payment_id,
    });
    unit.streams.push(StreamAppend {
        stream: StreamId::Payment(payment_id),
        expected_version: 0,
        events: vec![event],
    });
    unit.snapshots
        .push(Snapshot::Payment(std::sync::Arc::new(payment)));
    unit
}

/// Commits batches of `size` units back to back on each of `in_flight` concurrent lanes.
async fn run(db: &Db, size: usize, in_flight: usize) -> (u64, Duration, Vec<Duration>) {
    let tenant = TenantId::new();
    let invoice = InvoiceId::new();
    let started = Instant::now();
    let lanes = (0..in_flight).map(|lane| async move {
        let mut units = 0u64;
        let mut latencies = Vec::new();
        let mut batches = 0;
        while started.elapsed() < MIN_DURATION && batches < MAX_BATCHES / in_flight.max(1) {
            let batch: Vec<Unit> = (0..size)
                .map(|i| {
                    unit(
                        tenant,
                        invoice,
                        (lane * 1_000_000 + batches * size + i) as u64,
                    )
                })
                .collect();
            let t = Instant::now();
            let results = db.append_batch(batch).await;
            latencies.push(t.elapsed());
            assert!(
                results.iter().all(Result::is_ok),
                "{:?}",
                results.iter().find(|r| r.is_err())
            );
            units += size as u64;
            batches += 1;
        }
        (units, latencies)
    });
    let mut total = 0;
    let mut latencies = Vec::new();
    for (units, lane) in futures::future::join_all(lanes).await {
        total += units;
        latencies.extend(lane);
    }
    (total, started.elapsed(), latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1_000.0
}

async fn bench(backend: &str, db: Db) {
    for in_flight in [1, 2] {
        for size in BATCH_SIZES {
            let (units, elapsed, mut latencies) = run(&db, size, in_flight).await;
            latencies.sort();
            let line = serde_json::json!({
                "bench": "store_commit",
                "backend": backend,
                "batch_units": size,
                "batches_in_flight": in_flight,
                "units": units,
                "units_per_sec": (units as f64 / elapsed.as_secs_f64()).round(),
                "batch_p50_ms": percentile(&latencies, 0.5),
                "batch_p99_ms": percentile(&latencies, 0.99),
            });
            println!("{line}");
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        if std::env::var("PAYRAIL_BENCH_SKIP_SQLITE").is_err() {
            bench(
                "sqlite",
                Db::connect(
                    &url,
                    4,
                    std::sync::Arc::new(payrail::keys::Keys::ephemeral()),
                )
                .await
                .unwrap(),
            )
            .await;
        }
        if let Ok(url) = std::env::var("PAYRAIL_BENCH_PG_URL") {
            bench(
                "postgres",
                Db::connect(
                    &url,
                    8,
                    std::sync::Arc::new(payrail::keys::Keys::ephemeral()),
                )
                .await
                .unwrap(),
            )
            .await;
        }
    });
}
