//! SQL-only behaviour, on SQLite and PostgreSQL alike: list filters, sorts and paging,
//! timelines and the audit log, trailing events, purge, projection rebuild, batches.

use chrono::{Duration, Utc};
use payrail_actors::domain::{
    EventData, Invoice, InvoiceId, PaymentStatus, RefundId, StreamId, TenantId,
};
use payrail_actors::ports::{EventStore, StoreError, Unit};

use super::fixtures::*;
use super::lists::seed_invoices;
use crate::store::{Db, StoredEvent};

on_both!(timelines_and_audit_log);
on_both!(trailing_events_follow_the_snapshot);
on_both!(purge_deletes_only_expired_rows_in_batches);
on_both!(rebuild_projections_equals_live_tables);
on_both!(concurrent_batches_on_one_stream_conflict_cleanly);

/// An invoice paid by a payment that is then partly refunded, in four batches; answers
/// (invoice, payment, refund).
pub(super) async fn paid_and_refunded(
    db: &Db,
    tenant: TenantId,
) -> (Invoice, payrail_actors::domain::Payment, RefundId) {
    let (mut invoice, created) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: db.last_invoice_number(tenant).await.unwrap() + 1,
            ..Default::default()
        },
    );
    let (mut payment, attempt) = attempt_payment(&mut invoice, 1000, at(1));
    commit(db, vec![created, attempt]).await;
    let processing = charge_accepted(&mut payment, at(2));
    let succeeded = payment_change(
        &mut payment,
        Some(&mut invoice),
        vec![EventData::PaymentSucceeded {
            amount: 1000,
            gateway_reference: None,
        }],
        Some("gw_2"),
        at(3),
    );
    commit(db, vec![processing, succeeded]).await;
    let paid = invoice_change(
        &mut invoice,
        vec![EventData::InvoicePaid { amount_paid: 1000 }],
        at(3),
    );
    commit(db, vec![paid]).await;
    let refund_id = RefundId::new();
    let created = payment_change(
        &mut payment,
        None,
        vec![EventData::RefundCreated {
            refund_id,
            amount: 400,
            reason: None,
        }],
        None,
        at(4),
    );
    let succeeded = payment_change(
        &mut payment,
        Some(&mut invoice),
        vec![EventData::RefundSucceeded {
            refund_id,
            amount: 400,
        }],
        Some("gw_3"),
        at(5),
    );
    commit(db, vec![created, succeeded]).await;
    (invoice, payment, refund_id)
}

async fn timelines_and_audit_log(db: Db) {
    let tenant = TenantId::new();
    let (invoice, payment, refund_id) = paid_and_refunded(&db, tenant).await;
    let other = TenantId::new();
    paid_and_refunded(&db, other).await;

    let timeline = db.invoice_timeline(tenant, invoice.id).await.unwrap();
    let types: Vec<&str> = timeline.iter().map(|e| e.event.event_type()).collect();
    assert_eq!(
        types,
        [
            "invoice.created",
            "invoice.finalized",
            "invoice.payment_pending",
            "payment.attempted",
            "payment.processing",
            "payment.succeeded",
            "invoice.paid",
            "refund.created",
            "refund.succeeded"
        ]
    );
    assert!(timeline.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(db
        .invoice_timeline(other, invoice.id)
        .await
        .unwrap()
        .is_empty());

    let pay_timeline = db.payment_timeline(tenant, payment.id).await.unwrap();
    let versions: Vec<u64> = pay_timeline.iter().map(|e| e.event.version).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert_eq!(
        pay_timeline
            .iter()
            .map(|e| e.event.clone())
            .collect::<Vec<_>>(),
        db.load_stream(tenant, StreamId::Payment(payment.id))
            .await
            .unwrap()
    );
    assert_eq!(
        pay_timeline[1].event.gateway_event_id.as_deref(),
        Some("gw_1")
    );

    let all = db.list_events(tenant, None, None, 100, None).await.unwrap();
    assert_eq!(
        all, timeline,
        "the tenant's log is exactly this invoice's events"
    );
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = db.list_events(tenant, None, None, 4, after).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.sequence);
        walked.extend(page);
    }
    assert_eq!(walked, all);
    let succeeded = db
        .list_events(tenant, Some("payment.succeeded"), None, 10, None)
        .await
        .unwrap();
    assert_eq!(succeeded.len(), 1);
    let refund_events = db
        .list_events(tenant, None, Some(&refund_id.to_string()), 10, None)
        .await
        .unwrap();
    assert_eq!(
        refund_events
            .iter()
            .map(|e| e.event.event_type())
            .collect::<Vec<_>>(),
        ["refund.created", "refund.succeeded"]
    );
    let types_of = |events: Vec<StoredEvent>| -> Vec<&'static str> {
        events.iter().map(|e| e.event.event_type()).collect()
    };
    let subject = |id: String, after: Option<i64>| {
        let db = db.clone();
        async move {
            db.list_events(tenant, None, Some(&id), 10, after)
                .await
                .unwrap()
        }
    };
    let invoice_events = subject(invoice.id.to_string(), None).await;
    assert_eq!(
        types_of(invoice_events.clone()),
        [
            "invoice.created",
            "invoice.finalized",
            "invoice.payment_pending",
            "invoice.paid"
        ]
    );
    // Paging within a subject resumes after the cursor.
    assert_eq!(
        subject(invoice.id.to_string(), Some(invoice_events[1].sequence)).await,
        invoice_events[2..]
    );
    assert_eq!(
        types_of(subject(payment.id.to_string(), None).await),
        [
            "payment.attempted",
            "payment.processing",
            "payment.succeeded"
        ],
        "a payment's subject leaves out its refunds' events"
    );
    for nobody in [
        InvoiceId::new().to_string(),
        RefundId::new().to_string(),
        "not-an-id".to_owned(),
        String::new(),
    ] {
        assert!(subject(nobody, None).await.is_empty());
    }
    assert!(
        db.list_events(other, None, Some(&refund_id.to_string()), 10, None)
            .await
            .unwrap()
            .is_empty(),
        "another tenant's refund is no subject here"
    );

    assert_eq!(
        db.get_payment(tenant, payment.id).await.unwrap(),
        Some(payment.clone())
    );
    assert_eq!(db.get_payment(other, payment.id).await.unwrap(), None);
    let (listed, total) = db
        .list_payments(
            tenant,
            Some(invoice.id),
            Some(PaymentStatus::PartiallyRefunded),
            1,
            10,
        )
        .await
        .unwrap();
    assert_eq!((listed, total), (vec![payment.clone()], 1));
    let (listed, total) = db
        .list_payments(tenant, None, Some(PaymentStatus::Failed), 1, 10)
        .await
        .unwrap();
    assert_eq!((listed.len(), total), (0, 0));
}

async fn trailing_events_follow_the_snapshot(db: Db) {
    let tenant = TenantId::new();
    let (mut invoice, created) = create_invoice(tenant, &InvoiceSpec::default());
    commit(&db, vec![created]).await;
    let snapshot = invoice.clone();
    // Events committed without a new snapshot (e.g. a snapshot-every-n policy).
    let mut unit = invoice_change(
        &mut invoice,
        vec![EventData::InvoiceMarkedUncollectible {}],
        at(1),
    );
    unit.snapshots.clear();
    commit(&db, vec![unit.clone()]).await;
    let loaded = db.load_invoice(tenant, invoice.id).await.unwrap().unwrap();
    assert_eq!(loaded.snapshot, snapshot);
    assert_eq!(loaded.trailing, unit.streams[0].events);
    let mut replayed = loaded.snapshot.clone();
    for e in &loaded.trailing {
        replayed.apply(e);
    }
    assert_eq!(replayed, invoice);
}

async fn purge_deletes_only_expired_rows_in_batches(db: Db) {
    let tenant = TenantId::new();
    let (invoice, created) = create_invoice(tenant, &InvoiceSpec::default());
    commit(&db, vec![created]).await;
    let mut units = Vec::new();
    let payments: Vec<_> = (0..5)
        .map(|_| payrail_actors::domain::PaymentId::new())
        .collect();
    for (i, payment) in payments.iter().enumerate() {
        let mut unit = Unit::new(tenant);
        unit.dedup_keys.push(payrail_actors::ports::DedupKey {
            gateway_event_id: format!("gw_{i}"),
            payment_id: *payment,
        });
        // Three old idempotency records, two recent ones.
        unit.idempotency = Some(idempotency(
            &format!("k-{i}"),
            if i < 3 { at(0) } else { at(600) },
        ));
        units.push(unit);
    }
    commit(&db, units).await;
    let now = Utc::now();
    assert_eq!(
        db.purge_expired(now - Duration::hours(1), at(1), 2)
            .await
            .unwrap(),
        (0, 3)
    );
    assert_eq!(db.idempotency_record(tenant, "k-0").await.unwrap(), None);
    assert!(db
        .idempotency_record(tenant, "k-3")
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        db.purge_expired(now + Duration::hours(1), at(1), 2)
            .await
            .unwrap(),
        (5, 0)
    );
    for payment in payments {
        assert!(db
            .payment_gateway_events(tenant, payment)
            .await
            .unwrap()
            .is_empty());
    }
    // Events and projections are untouched.
    assert!(db.get_invoice(tenant, invoice.id).await.unwrap().is_some());
}

async fn rebuild_projections_equals_live_tables(db: Db) {
    let mut live = Vec::new();
    for _ in 0..2 {
        let tenant = TenantId::new();
        let (invoice, payment, _) = paid_and_refunded(&db, tenant).await;
        let invoices = seed_invoices(&db, tenant).await;
        live.push((tenant, invoice, payment, invoices));
    }
    let snapshot = |db: Db,
                    live: Vec<(
        TenantId,
        Invoice,
        payrail_actors::domain::Payment,
        Vec<Invoice>,
    )>| async move {
        let mut out = Vec::new();
        for (tenant, invoice, payment, invoices) in live {
            out.push(format!(
                "{:?}",
                db.get_invoice(tenant, invoice.id).await.unwrap()
            ));
            out.push(format!(
                "{:?}",
                db.get_payment(tenant, payment.id).await.unwrap()
            ));
            for i in invoices {
                out.push(format!("{:?}", db.get_invoice(tenant, i.id).await.unwrap()));
            }
            let (payments, _) = db.list_payments(tenant, None, None, 1, 100).await.unwrap();
            out.push(format!("{payments:?}"));
            out.push(format!(
                "{:?}",
                db.last_invoice_number(tenant).await.unwrap()
            ));
        }
        out
    };
    let before = snapshot(db.clone(), live.clone()).await;
    assert!(before.iter().all(|s| s != "None"));
    // Damage the read tables, then rebuild them from the events alone.
    db.transact(vec![
        crate::store::stmt::Stmt::new("DELETE FROM invoices", vec![]),
        crate::store::stmt::Stmt::new("UPDATE payments SET status = 'failed'", vec![]),
    ])
    .await
    .unwrap();
    let rebuilt = db.rebuild_projections().await.unwrap();
    assert_eq!(
        rebuilt,
        2 * (1 + 1 + 7),
        "per tenant 7 invoices and 1 payment, plus one foreign invoice per seeding"
    );
    assert_eq!(snapshot(db.clone(), live.clone()).await, before);
    let refunds: Vec<crate::store::rows::CountRow> = db
        .load(crate::store::stmt::Stmt::new(
            "SELECT count(*) AS n FROM refunds",
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(refunds[0].n, 2, "one refund per tenant");
}

async fn concurrent_batches_on_one_stream_conflict_cleanly(db: Db) {
    let tenant = TenantId::new();
    let (invoice, created) = create_invoice(tenant, &InvoiceSpec::default());
    commit(&db, vec![created]).await;
    for round in 0..5 {
        let current = db
            .load_invoice(tenant, invoice.id)
            .await
            .unwrap()
            .unwrap()
            .snapshot;
        let (mut x, mut y) = (current.clone(), current.clone());
        let ux = invoice_change(
            &mut x,
            vec![EventData::InvoiceMarkedUncollectible {}],
            at(round),
        );
        let uy = invoice_change(&mut y, vec![EventData::InvoiceVoided {}], at(round));
        let (_, bystander) = create_invoice(
            tenant,
            &InvoiceSpec {
                number: 2 + round as u64,
                ..Default::default()
            },
        );
        let (a, b) = tokio::join!(
            db.append_batch(vec![ux]),
            db.append_batch(vec![uy, bystander])
        );
        let oks = [&a[0], &b[0]].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "{a:?} {b:?}");
        assert!([&a[0], &b[0]]
            .iter()
            .any(|r| matches!(r, Err(StoreError::VersionConflict(_)))));
        assert_eq!(b[1], Ok(()), "the other unit of the batch commits");
        // Reset the stream's state machine for the next round: a fresh invoice.
        if round == 4 {
            break;
        }
    }
}

/// The known crash hazard: dropping an in-flight SQLite future on a single-threaded runtime
/// (as actix-web does on client disconnect) must not panic, and the store must stay usable.
/// A dropped append still runs to completion on its blocking thread (like a lost reply).
#[tokio::test(flavor = "current_thread")]
async fn sqlite_survives_dropped_in_flight_futures() {
    use futures::FutureExt;

    let dir = tempfile::tempdir().unwrap();
    let (db, _) = crate::store::testing::fresh_sqlite(dir.path())
        .await
        .unwrap();
    // One tenant each: the jobs may land in any order, and a tenant's numbers must not.
    let tenants: Vec<TenantId> = (0..20).map(|_| TenantId::new()).collect();
    let mut ids = Vec::new();
    for &tenant in &tenants {
        let (invoice, unit) = create_invoice(tenant, &InvoiceSpec::default());
        ids.push((tenant, invoice.id));
        // Poll once (the job is handed to the blocking thread), then drop the future. A job
        // that happens to finish within that one poll is fine too: nothing may crash either way.
        let _ = db.append_batch(vec![unit]).now_or_never();
        let _ = db.get_invoice(tenant, invoice.id).now_or_never();
        let _ = db.list_events(tenant, None, None, 10, None).now_or_never();
    }
    // The detached jobs finish on their own (readers don't wait for the writer: bounded poll,
    // generous because a loaded machine may queue the blocking jobs for a while).
    // The jobs may land in any order, so wait for every invoice, not for the highest number.
    let mut missing = ids.clone();
    for _ in 0..3_000 {
        let mut still = Vec::new();
        for (tenant, id) in missing {
            if db.get_invoice(tenant, id).await.unwrap().is_none() {
                still.push((tenant, id));
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        missing.is_empty(),
        "dropped writes never landed: {missing:?}"
    );
    for tenant in tenants {
        assert_eq!(db.last_invoice_number(tenant).await.unwrap(), 1);
    }
    db.ping().await.unwrap();
}

on_both!(a_unit_the_database_rejects_fails_alone);
on_both!(large_batches_commit_in_one_transaction);

/// A constraint the pre-check doesn't cover (here: invoice numbers are unique per tenant, met
/// by a projection row without its creation event) fails only its unit: the batch is re-run
/// with one savepoint per unit.
async fn a_unit_the_database_rejects_fails_alone(db: Db) {
    let tenant = TenantId::new();
    let (_, first) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 1,
            ..Default::default()
        },
    );
    commit(&db, vec![first]).await;
    let (a, ua) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 2,
            ..Default::default()
        },
    );
    let (clash, mut uclash) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 1,
            ..Default::default()
        },
    );
    uclash.streams.clear();
    let (c, uc) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 3,
            ..Default::default()
        },
    );
    let results = db.append_batch(vec![ua, uclash, uc]).await;
    assert_eq!(results[0], Ok(()));
    assert!(
        matches!(results[1], Err(StoreError::Unavailable(_))),
        "{results:?}"
    );
    assert_eq!(results[2], Ok(()));
    assert_eq!(db.get_invoice(tenant, a.id).await.unwrap(), Some(a));
    assert_eq!(db.get_invoice(tenant, c.id).await.unwrap(), Some(c));
    assert_eq!(db.get_invoice(tenant, clash.id).await.unwrap(), None);
    assert!(db
        .load_stream(tenant, StreamId::Invoice(clash.id))
        .await
        .unwrap()
        .is_empty());
}

/// A batch the size the audit actor flushes (hundreds of units touching every table), with
/// failing units spread through it.
async fn large_batches_commit_in_one_transaction(db: Db) {
    let tenant = TenantId::new();
    let mut units = Vec::new();
    let mut payments = Vec::new();
    for number in 1..=300u64 {
        let (mut invoice, mut unit) = create_invoice(
            tenant,
            &InvoiceSpec {
                number,
                ..Default::default()
            },
        );
        let (payment, attempt) = attempt_payment(&mut invoice, 500, at(1));
        // One append per stream: the invoice's three events, then the payment's.
        let mut streams = attempt.streams.into_iter();
        unit.streams[0]
            .events
            .extend(streams.next().unwrap().events);
        unit.streams.extend(streams);
        unit.snapshots = attempt.snapshots;
        unit.dedup_keys.push(payrail_actors::ports::DedupKey {
            gateway_event_id: format!("gw_{}", number % 290),
            payment_id: payment.id,
        });
        unit.idempotency = Some(idempotency(&format!("k-{number}"), at(1)));
        payments.push(payment);
        units.push(unit);
    }
    let results = db.append_batch(units).await;
    // Units 291..300 reuse the dedup keys of units 1..10.
    assert!(
        results[..290].iter().all(Result::is_ok),
        "{:?}",
        &results[..5]
    );
    assert!(results[290..]
        .iter()
        .all(|r| matches!(r, Err(StoreError::DuplicateGatewayEvent(_)))));
    assert_eq!(db.last_invoice_number(tenant).await.unwrap(), 290);
    assert_eq!(
        db.payments_awaiting_charge(None, 1000).await.unwrap().len(),
        290
    );
    assert_eq!(
        db.get_payment(tenant, payments[7].id).await.unwrap(),
        Some(payments[7].clone())
    );
    assert_eq!(
        db.get_payment(tenant, payments[297].id).await.unwrap(),
        None
    );
    assert_eq!(
        db.list_events(tenant, None, None, 100, None)
            .await
            .unwrap()
            .len(),
        100
    );
}

/// A storage outage fails the batch as a whole (never a false success), and the pool recovers
/// on its own once the server is back: here every server connection of the database is killed.
#[tokio::test]
async fn postgres_recovers_after_its_connections_are_killed() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    let (db, url) = crate::store::testing::fresh_postgres().await.unwrap();
    let tenant = TenantId::new();
    let (_, unit) = create_invoice(tenant, &InvoiceSpec::default());
    commit(&db, vec![unit]).await;

    let name = url.rsplit('/').next().unwrap().to_owned();
    let admin = std::env::var("PAYRAIL_TEST_PG_URL").unwrap();
    tokio::task::spawn_blocking(move || {
        let mut conn = diesel::PgConnection::establish(&admin).unwrap();
        conn.batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .unwrap();
    })
    .await
    .unwrap();

    let mut committed = false;
    for _ in 2..10 {
        let (_, unit) = create_invoice(
            tenant,
            &InvoiceSpec {
                number: 2,
                ..Default::default()
            },
        );
        let results = db.append_batch(vec![unit]).await;
        match &results[0] {
            // Number 2 is taken: an attempt whose outcome was unknown did commit.
            Ok(()) | Err(StoreError::Fenced(_)) => {
                committed = true;
                break;
            }
            Err(StoreError::Unavailable(_) | StoreError::Ambiguous(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(committed, "the pool replaced its broken connections");
    db.ping().await.unwrap();
    assert!(db.last_invoice_number(tenant).await.unwrap() >= 2);
}
