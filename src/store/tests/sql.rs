//! SQL-only behaviour, on SQLite and PostgreSQL alike: list filters, sorts and paging,
//! timelines and the audit log, trailing events, purge, projection rebuild. Batches are in
//! `sql_batches.rs`.

use chrono::{Duration, Utc};
use payrail_actors::domain::{
    EventData, Invoice, InvoiceId, PaymentStatus, RefundId, StreamId, TenantId,
};
use payrail_actors::ports::{EventStore, Unit};

use super::fixtures::*;
use super::lists::seed_invoices;
use crate::store::{Db, StoredEvent};

on_both!(timelines_and_audit_log);
on_both!(trailing_events_follow_the_snapshot);
on_both!(purge_deletes_only_expired_rows_in_batches);
on_both!(rebuild_projections_equals_live_tables);

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
    // Another invoice of the same tenant, with a payment: each timeline holds its own
    // invoice's events and its payments' alone.
    let (mut second, created) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: db.last_invoice_number(tenant).await.unwrap() + 1,
            ..Default::default()
        },
    );
    let (second_payment, attempt) = attempt_payment(&mut second, 500, at(6));
    commit(&db, vec![created, attempt]).await;
    assert_eq!(
        db.invoice_timeline(tenant, invoice.id).await.unwrap(),
        timeline
    );
    let second_timeline = db.invoice_timeline(tenant, second.id).await.unwrap();
    assert_eq!(
        types_of(second_timeline.clone()),
        [
            "invoice.created",
            "invoice.finalized",
            "invoice.payment_pending",
            "payment.attempted"
        ]
    );
    assert_eq!(
        second_timeline[3].event.stream,
        StreamId::Payment(second_payment.id)
    );
    assert!(second_timeline[0].sequence > timeline[timeline.len() - 1].sequence);

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
