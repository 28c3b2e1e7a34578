//! The `EventStore` contract, run against the in-memory reference store, SQLite and PostgreSQL.

use payrail_actors::domain::{EventData, InvoiceStatus, PaymentStatus, StreamId, TenantId};
use payrail_actors::memory::MemoryStore;
use payrail_actors::ports::{EventStore, StoreError, StreamAppend, Unit};

use super::fixtures::*;
use crate::store::testing::{fresh_postgres, fresh_sqlite};

async fn contract<S: EventStore>(store: &S) {
    round_trip(store).await;
    conflicts_are_isolated(store).await;
    dedup_and_idempotency_keys_are_unique_per_unit(store).await;
    invoice_numbers_and_awaiting_charges(store).await;
}

async fn round_trip<S: EventStore>(store: &S) {
    let tenant = TenantId::new();
    let (invoice, mut unit) = create_invoice(tenant, &InvoiceSpec::default());
    unit.idempotency = Some(idempotency("k-1", at(0)));
    let events = unit.streams[0].events.clone();
    assert_eq!(store.append_batch(vec![unit]).await, vec![Ok(())]);

    let loaded = store
        .load_invoice(tenant, invoice.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.snapshot, invoice);
    assert!(loaded.trailing.is_empty(), "snapshot is current");
    assert_eq!(
        store
            .load_stream(tenant, StreamId::Invoice(invoice.id))
            .await
            .unwrap(),
        events
    );
    assert_eq!(
        store.idempotency_record(tenant, "k-1").await.unwrap(),
        Some(idempotency("k-1", at(0)))
    );
    // Another tenant sees none of it.
    let other = TenantId::new();
    assert_eq!(store.load_invoice(other, invoice.id).await.unwrap(), None);
    assert!(store
        .load_stream(other, StreamId::Invoice(invoice.id))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.idempotency_record(other, "k-1").await.unwrap(), None);
    assert!(store.append_batch(vec![]).await.is_empty());
}

/// SQL stores refuse a unit whose snapshot or events belong to another tenant (the memory
/// store trusts its callers), without failing the rest of the batch.
/// Prepared (`EventStore::prepare`, as an audit writer does when it queues them) or not.
async fn foreign_rows_are_refused(db: &crate::store::Db, prepared: bool) {
    let tenant = TenantId::new();
    let (_, mut foreign_snapshot) = create_invoice(tenant, &InvoiceSpec::default());
    let (_, foreign_events) = create_invoice(TenantId::new(), &InvoiceSpec::default());
    foreign_snapshot.tenant_id = Some(TenantId::new());
    foreign_snapshot.streams.clear();
    let mut foreign_events = foreign_events;
    foreign_events.tenant_id = Some(tenant);
    foreign_events.snapshots.clear();
    let (ok, ok_unit) = create_invoice(tenant, &InvoiceSpec::default());
    let units = vec![foreign_snapshot, foreign_events, ok_unit];
    if prepared {
        units.iter().for_each(|unit| db.prepare(unit));
    }
    let results = db.append_batch(units).await;
    assert!(
        matches!(results[0], Err(StoreError::Corrupt(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[1], Err(StoreError::Corrupt(_))),
        "{results:?}"
    );
    assert_eq!(results[2], Ok(()));
    assert!(db.load_invoice(tenant, ok.id).await.unwrap().is_some());
}

async fn conflicts_are_isolated<S: EventStore>(store: &S) {
    let tenant = TenantId::new();
    let (mut a, unit_a) = create_invoice(tenant, &InvoiceSpec::default());
    let (mut b, unit_b) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 2,
            ..Default::default()
        },
    );
    assert_eq!(
        store.append_batch(vec![unit_a, unit_b]).await,
        vec![Ok(()), Ok(())]
    );
    let b_stored = b.clone();

    let ok = invoice_change(
        &mut a,
        vec![EventData::InvoiceMarkedUncollectible {}],
        at(1),
    );
    let mut stale = invoice_change(&mut b, vec![EventData::InvoiceVoided {}], at(1));
    stale.streams[0].expected_version = 1;
    for e in &mut stale.streams[0].events {
        e.version -= 1;
    }
    let (c, unit_c) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 3,
            ..Default::default()
        },
    );
    let results = store.append_batch(vec![ok, stale, unit_c]).await;
    assert_eq!(results[0], Ok(()));
    assert!(
        matches!(results[1], Err(StoreError::VersionConflict(_))),
        "{results:?}"
    );
    assert_eq!(results[2], Ok(()));
    assert_eq!(
        store
            .load_invoice(tenant, a.id)
            .await
            .unwrap()
            .unwrap()
            .snapshot,
        a
    );
    assert_eq!(
        store
            .load_invoice(tenant, b.id)
            .await
            .unwrap()
            .unwrap()
            .snapshot,
        b_stored
    );
    assert_eq!(
        store
            .load_invoice(tenant, c.id)
            .await
            .unwrap()
            .unwrap()
            .snapshot,
        c
    );
    assert_eq!(
        store
            .load_stream(tenant, StreamId::Invoice(b.id))
            .await
            .unwrap()
            .len(),
        2
    );

    // A stream with no events is still checked; later units see earlier ones of the batch.
    let check_only = |expected| {
        let mut u = Unit::new(tenant);
        u.streams.push(StreamAppend {
            stream: StreamId::Invoice(a.id),
            expected_version: expected,
            events: vec![],
        });
        u
    };
    let mut a2 = a.clone();
    let first = invoice_change(&mut a2, vec![EventData::InvoiceVoided {}], at(2));
    let mut a3 = a.clone();
    let second = invoice_change(&mut a3, vec![EventData::InvoiceVoided {}], at(2));
    let results = store
        .append_batch(vec![
            check_only(a.version + 5),
            check_only(a.version),
            first,
            second,
        ])
        .await;
    assert!(
        matches!(results[0], Err(StoreError::VersionConflict(_))),
        "{results:?}"
    );
    assert_eq!(results[1], Ok(()));
    assert_eq!(results[2], Ok(()));
    assert!(
        matches!(results[3], Err(StoreError::VersionConflict(_))),
        "{results:?}"
    );
    let stored = store
        .load_invoice(tenant, a.id)
        .await
        .unwrap()
        .unwrap()
        .snapshot;
    assert_eq!(stored.status, InvoiceStatus::Void);
    assert_eq!(stored.version, a.version + 1);
}

async fn dedup_and_idempotency_keys_are_unique_per_unit<S: EventStore>(store: &S) {
    let tenant = TenantId::new();
    let (mut invoice, unit) = create_invoice(tenant, &InvoiceSpec::default());
    let (mut payment, attempt) = attempt_payment(&mut invoice, 1000, at(1));
    assert_eq!(
        store.append_batch(vec![unit, attempt]).await,
        vec![Ok(()), Ok(())]
    );

    let mut p1 = payment.clone();
    let processing = payment_change(
        &mut p1,
        None,
        vec![EventData::PaymentProcessing {
            gateway_reference: "ch_1".into(),
        }],
        Some("gw_1"),
        at(2),
    );
    // The applied event carries its gateway event id; no dedup row is needed for it. A second
    // unit of the same batch recording the same id as ignored is a duplicate.
    assert!(processing.dedup_keys.is_empty());
    let mut duplicate = Unit::new(tenant);
    duplicate.dedup_keys = vec![payrail_actors::ports::DedupKey {
        gateway_event_id: "gw_1".into(),
        payment_id: payment.id,
    }];
    let mut keyed = Unit::new(tenant);
    keyed.idempotency = Some(idempotency("k-1", at(2)));
    let mut keyed_again = Unit::new(tenant);
    keyed_again.idempotency = Some(idempotency("k-1", at(3)));
    let results = store
        .append_batch(vec![
            processing,
            duplicate.clone(),
            keyed,
            keyed_again.clone(),
        ])
        .await;
    assert_eq!(results[0], Ok(()));
    assert_eq!(
        results[1],
        Err(StoreError::DuplicateGatewayEvent("gw_1".into()))
    );
    assert_eq!(results[2], Ok(()));
    assert_eq!(results[3], Err(StoreError::IdempotencyKeyTaken));
    // And in a later batch.
    assert_eq!(
        store.append_batch(vec![duplicate, keyed_again]).await,
        vec![
            Err(StoreError::DuplicateGatewayEvent("gw_1".into())),
            Err(StoreError::IdempotencyKeyTaken)
        ]
    );
    payment = p1;
    // An ignored event is recorded against its payment: ignored again for it, in the same batch
    // or a later one, it is a duplicate.
    let ignored = |id: &str| {
        let mut unit = Unit::new(tenant);
        unit.dedup_keys = vec![payrail_actors::ports::DedupKey {
            gateway_event_id: id.into(),
            payment_id: payment.id,
        }];
        unit
    };
    assert_eq!(
        store
            .append_batch(vec![ignored("gw_2"), ignored("gw_2")])
            .await,
        vec![
            Ok(()),
            Err(StoreError::DuplicateGatewayEvent("gw_2".into()))
        ]
    );
    assert_eq!(
        store.append_batch(vec![ignored("gw_2")]).await,
        vec![Err(StoreError::DuplicateGatewayEvent("gw_2".into()))]
    );
    assert_eq!(
        store
            .payment_gateway_events(tenant, payment.id)
            .await
            .unwrap(),
        vec!["gw_1".to_string(), "gw_2".to_string()]
    );
    let loaded = store
        .load_payment(tenant, payment.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.snapshot, payment);
    assert!(loaded.trailing.is_empty());
    // The same gateway event id is fine for another tenant.
    let mut elsewhere = Unit::new(TenantId::new());
    elsewhere.dedup_keys = vec![payrail_actors::ports::DedupKey {
        gateway_event_id: "gw_1".into(),
        payment_id: payment.id,
    }];
    assert_eq!(store.append_batch(vec![elsewhere]).await, vec![Ok(())]);
}

async fn invoice_numbers_and_awaiting_charges<S: EventStore>(store: &S) {
    let tenant = TenantId::new();
    assert_eq!(store.last_invoice_number(tenant).await.unwrap(), 0);
    let numbered = |tenant, number| {
        create_invoice(
            tenant,
            &InvoiceSpec {
                number,
                ..Default::default()
            },
        )
    };
    // Numbers are gap-free per tenant: a number is taken only right after its predecessor,
    // once, so a failed creation fails the ones numbered after it in the same batch too.
    let (mut first, u1) = numbered(tenant, 1);
    let (_, u2) = numbered(tenant, 2);
    let (_, other_tenant) = numbered(TenantId::new(), 1);
    let (_, gap) = numbered(tenant, 4);
    let (_, again) = numbered(tenant, 2);
    let results = store
        .append_batch(vec![u1, u2, other_tenant, gap, again])
        .await;
    assert_eq!(results[..3], [Ok(()), Ok(()), Ok(())]);
    assert!(
        results[3..]
            .iter()
            .all(|r| matches!(r, Err(StoreError::Fenced(_)))),
        "{results:?}"
    );
    let (_, u3) = numbered(tenant, 3);
    let mut failing = u3.clone();
    failing.streams[0].expected_version = 7;
    let (_, u4) = numbered(tenant, 4);
    let results = store.append_batch(vec![failing, u4]).await;
    assert!(results.iter().all(Result::is_err), "{results:?}");
    assert_eq!(store.append_batch(vec![u3]).await, vec![Ok(())]);
    assert_eq!(store.last_invoice_number(tenant).await.unwrap(), 3);

    let before = store.payments_awaiting_charge(None, 1000).await.unwrap();
    let (mut charged, a1) = attempt_payment(&mut first, 400, at(1));
    let (pending, a2) = attempt_payment(&mut first, 600, at(2));
    assert_eq!(store.append_batch(vec![a1, a2]).await, vec![Ok(()), Ok(())]);
    let awaiting = store.payments_awaiting_charge(None, 1000).await.unwrap();
    assert_eq!(awaiting.len(), before.len() + 2);
    assert!(awaiting.contains(&(tenant, charged.id)) && awaiting.contains(&(tenant, pending.id)));
    assert_eq!(
        store.payments_awaiting_charge(None, 1).await.unwrap().len(),
        1
    );
    // Paged oldest first: every page starts after the last id of the one before.
    let all = store.payments_awaiting_charge(None, 1000).await.unwrap();
    let mut paged = Vec::new();
    let mut after = None;
    while let Some(&row) = store
        .payments_awaiting_charge(after, 1)
        .await
        .unwrap()
        .first()
    {
        paged.push(row);
        after = Some(row.1);
    }
    assert_eq!(paged, all);
    assert!(all.windows(2).all(|w| w[0].1 < w[1].1));
    // The money the payments in flight hold comes back with the invoice, although it is not
    // part of its stored snapshot.
    let loaded = store.load_invoice(tenant, first.id).await.unwrap().unwrap();
    assert_eq!(loaded.snapshot, first);
    assert_eq!(
        {
            let mut held: Vec<_> = loaded.snapshot.reservations.into_iter().collect();
            held.sort();
            held
        },
        {
            let mut held = vec![(charged.id, 400), (pending.id, 600)];
            held.sort();
            held
        }
    );

    let unit = payment_change(
        &mut charged,
        None,
        vec![EventData::PaymentProcessing {
            gateway_reference: "ch_9".into(),
        }],
        None,
        at(3),
    );
    assert_eq!(store.append_batch(vec![unit]).await, vec![Ok(())]);
    let awaiting = store.payments_awaiting_charge(None, 1000).await.unwrap();
    assert!(!awaiting.contains(&(tenant, charged.id)));
    assert!(awaiting.contains(&(tenant, pending.id)));
    let stored = store
        .load_payment(tenant, charged.id)
        .await
        .unwrap()
        .unwrap()
        .snapshot;
    assert_eq!(stored.status, PaymentStatus::Processing);
    assert_eq!(stored.gateway_reference.as_deref(), Some("ch_9"));
}

#[tokio::test]
async fn store_contract_memory() {
    contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn store_contract_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = fresh_sqlite(dir.path()).await.unwrap();
    contract(&db).await;
    foreign_rows_are_refused(&db, false).await;
    foreign_rows_are_refused(&db, true).await;
}

#[tokio::test]
async fn store_contract_postgres() {
    let (db, _) = fresh_postgres().await.unwrap();
    contract(&db).await;
    foreign_rows_are_refused(&db, false).await;
    foreign_rows_are_refused(&db, true).await;
}
