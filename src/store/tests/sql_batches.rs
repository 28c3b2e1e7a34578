//! SQL-only behaviour of batches, on SQLite and PostgreSQL alike: concurrent batches on one
//! stream, a unit the database rejects, batches the audit actor's size, dropped in-flight
//! futures (SQLite) and an outage the pool recovers from (PostgreSQL).

use std::borrow::Cow;

use payrail_actors::actors::GATEWAY_ACTOR;
use payrail_actors::domain::{EventData, StreamId, TenantId};
use payrail_actors::ports::{EventStore, StoreError};

use super::fixtures::*;
use crate::store::Db;

on_both!(concurrent_batches_on_one_stream_conflict_cleanly);
on_both!(the_pre_check_finds_each_stored_key_by_its_place_in_the_batch);
on_both!(one_batch_holds_actors_of_every_kind);

/// An event's actor is either text the program holds (`gateway`, `system`) or an API key's
/// id made at run time; one batch (one array per column on PostgreSQL) takes both, in either
/// order, and each reads back as written.
async fn one_batch_holds_actors_of_every_kind(db: Db) {
    let tenant = TenantId::new();
    let key = format!("key_{}", uuid::Uuid::new_v4().simple());
    let gateway = || Cow::Borrowed(GATEWAY_ACTOR);
    let api_key = || Cow::Owned(key.clone());
    let mut number = 0;
    for order in [[gateway(), api_key()], [api_key(), gateway()]] {
        let mut written = Vec::new();
        let mut units = Vec::new();
        for actor in order {
            number += 1;
            let spec = InvoiceSpec {
                number,
                ..Default::default()
            };
            let (invoice, mut unit) = create_invoice(tenant, &spec);
            for event in &mut unit.streams[0].events {
                event.actor = actor.clone();
            }
            written.push((invoice.id, actor));
            units.push(unit);
        }
        assert_eq!(db.append_batch(units).await, vec![Ok(()), Ok(())]);
        for (invoice, actor) in written {
            let timeline = db.invoice_timeline(tenant, invoice).await.unwrap();
            assert!(!timeline.is_empty());
            assert!(timeline.iter().all(|e| e.event.actor == actor), "{actor}");
        }
    }
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
on_both!(a_prepared_unit_the_database_rejects_fails_alone);
on_both!(large_batches_commit_in_one_transaction);

/// A constraint the pre-check doesn't cover (here: invoice numbers are unique per tenant, met
/// by a projection row without its creation event) fails only its unit: the batch is re-run
/// with one savepoint per unit.
async fn a_unit_the_database_rejects_fails_alone(db: Db) {
    rejected_unit_fails_alone(db, false).await;
}

/// The same with units prepared as an audit writer queues them: the first attempt takes their
/// prepared rows, so the re-run renders them again.
async fn a_prepared_unit_the_database_rejects_fails_alone(db: Db) {
    rejected_unit_fails_alone(db, true).await;
}

async fn rejected_unit_fails_alone(db: Db, prepared: bool) {
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
    let units = vec![ua, uclash, uc];
    if prepared {
        units.iter().for_each(|unit| db.prepare(unit));
    }
    let results = db.append_batch(units).await;
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

on_both!(a_batch_meeting_stored_gateway_events_part_way_leaves_nothing_behind);

/// A batch's first attempt leaves gateway event ids to their unique indexes, so a stored one
/// fails a multi-row insert part way through (SQLite's inserts stop at the offending row). None
/// of that attempt stays: re-run checked in full, only the units carrying a stored id fail, and
/// the rows before it in the failed insert are written once, by the re-run.
async fn a_batch_meeting_stored_gateway_events_part_way_leaves_nothing_behind(db: Db) {
    use payrail_actors::ports::{DedupKey, Unit};

    let tenant = TenantId::new();
    let numbered = |number| numbered_invoice(tenant, number);
    let (mut first_invoice, first_created) = numbered(1);
    let (mut second_invoice, second_created) = numbered(2);
    let (mut first, first_attempt) = attempt_payment(&mut first_invoice, 100, at(1));
    let (mut second, second_attempt) = attempt_payment(&mut second_invoice, 100, at(1));
    let first_id = first.id;
    let ignored = |id: &str| {
        let mut unit = Unit::new(tenant);
        unit.dedup_keys.push(DedupKey {
            gateway_event_id: id.into(),
            payment_id: first_id,
        });
        unit
    };
    let applied = charge_accepted(&mut first, at(2));
    commit(
        &db,
        vec![
            first_created,
            second_created,
            first_attempt,
            second_attempt,
            applied,
            ignored("gw_x"),
        ],
    )
    .await;
    let events_before = db
        .list_events(tenant, None, None, 1_000, None)
        .await
        .unwrap()
        .len();

    // Ignored events around one already recorded: the dedup rows' insert meets it third.
    let ids = ["gw_a", "gw_b", "gw_x", "gw_c", "gw_d", "gw_e"];
    let results = db
        .append_batch(ids.iter().map(|id| ignored(id)).collect())
        .await;
    let mut expected = vec![Ok(()); ids.len()];
    expected[2] = Err(StoreError::DuplicateGatewayEvent("gw_x".into()));
    assert_eq!(results, expected);
    let mut recorded = db.payment_gateway_events(tenant, first_id).await.unwrap();
    recorded.sort();
    let mut want: Vec<String> = ["gw_1", "gw_a", "gw_b", "gw_c", "gw_d", "gw_e", "gw_x"]
        .map(String::from)
        .to_vec();
    want.sort();
    assert_eq!(recorded, want, "each recorded once");

    // Events between creations: the log's insert meets an event id another event holds.
    let (third, third_created) = numbered(3);
    let before_reuse = second.clone();
    // Reported by `gw_1`, which the first payment's event already holds.
    let reused = charge_accepted(&mut second, at(3));
    let (fourth, fourth_created) = numbered(4);
    let created_events: usize = [&third_created, &fourth_created]
        .iter()
        .flat_map(|u| &u.streams)
        .map(|s| s.events.len())
        .sum();
    let results = db
        .append_batch(vec![third_created, reused, fourth_created])
        .await;
    let refused = Err(StoreError::DuplicateGatewayEvent("gw_1".into()));
    assert_eq!(results, vec![Ok(()), refused, Ok(())]);
    assert_eq!(db.get_invoice(tenant, third.id).await.unwrap(), Some(third));
    assert_eq!(
        db.get_invoice(tenant, fourth.id).await.unwrap(),
        Some(fourth)
    );
    assert_eq!(db.last_invoice_number(tenant).await.unwrap(), 4);
    let stored = db.load_payment(tenant, second.id).await.unwrap().unwrap();
    assert_eq!(stored.snapshot, before_reuse);
    assert_eq!(
        db.list_events(tenant, None, None, 1_000, None)
            .await
            .unwrap()
            .len(),
        events_before + created_events,
        "the creations' events once each, the refused one not at all"
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

/// Rows rendered ahead of the batch (as an audit writer prepares each unit it queues) plan the
/// very statements the batch would have rendered itself, and the batch consumes them: event,
/// projection, idempotency and dedup rows, a unit that only records an ignored event included.
#[test]
fn prepared_units_plan_the_statements_the_batch_would_render() {
    use crate::store::plan::{plan, Existing};
    use crate::store::stmt::Dialect;
    use crate::store::unit_rows::UnitRows;
    use payrail_actors::domain::PaymentId;
    use payrail_actors::ports::{DedupKey, Unit};

    let tenant = TenantId::new();
    let (mut invoice, mut created) = create_invoice(tenant, &InvoiceSpec::default());
    created.idempotency = Some(idempotency("key_1", at(0)));
    let voided = invoice_change(&mut invoice, vec![EventData::InvoiceVoided {}], at(1));
    let mut ignored = Unit::new(tenant);
    ignored.dedup_keys.push(DedupKey {
        gateway_event_id: "gw_ignored".into(),
        payment_id: PaymentId::new(),
    });
    let units = vec![created, voided, ignored];
    for d in [Dialect::Sqlite, Dialect::Postgres] {
        // A copy of a unit starts without anything prepared.
        let prepared = units.clone();
        prepared.iter().for_each(UnitRows::prepare);
        let ahead = plan(d, &prepared, Existing::default(), at(2)).unwrap();
        let fresh = plan(d, &units, Existing::default(), at(2)).unwrap();
        assert_eq!(ahead.results, fresh.results);
        assert_eq!(ahead.statements, fresh.statements);
        for table in ["INTO webhook_dedup", "INTO idempotency_keys"] {
            assert!(
                ahead.statements.iter().any(|s| s.sql.contains(table)),
                "{table}"
            );
        }
        for unit in &prepared {
            let left = unit.prepared.take::<Result<UnitRows, StoreError>>();
            assert!(left.is_none(), "the batch took the prepared rows");
        }
    }
}

/// The pre-check answers with each stored key's kind and place among the batch's keys of that
/// kind: here the stored ones sit after missing ones in every list, so an answer read against
/// the wrong place finds the missing key instead.
async fn the_pre_check_finds_each_stored_key_by_its_place_in_the_batch(db: Db) {
    use crate::store::plan::{precheck, Existing, Keys};
    use crate::store::rows::KeyRow;
    use payrail_actors::ports::{DedupKey, Unit};

    let tenant = TenantId::new();
    let (_, first_created) = create_invoice(tenant, &InvoiceSpec::default());
    let (mut invoice, created) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 2,
            ..Default::default()
        },
    );
    let (mut payment, mut attempted) = attempt_payment(&mut invoice, 100, at(1));
    attempted.idempotency = Some(idempotency("k_stored", at(1)));
    let mut ignored = Unit::new(tenant);
    ignored.dedup_keys.push(DedupKey {
        gateway_event_id: "gw_ignored".into(),
        payment_id: payment.id,
    });
    let accepted = charge_accepted(&mut payment, at(2));
    commit(
        &db,
        vec![first_created, created, attempted, accepted, ignored],
    )
    .await;

    let (never, _) = create_invoice(tenant, &InvoiceSpec::default());
    let stream = StreamId::Payment(payment.id);
    let keys = Keys {
        streams: vec![
            (tenant, StreamId::Invoice(never.id)),
            (tenant, StreamId::Invoice(invoice.id)),
            (tenant, stream),
        ],
        dedup: ["gw_missing", "gw_1", "gw_other", "gw_ignored"]
            .map(|id| (tenant, id.to_owned(), stream))
            .to_vec(),
        idempotency: vec![(tenant, "k_missing".into()), (tenant, "k_stored".into())],
        numbers: vec![(tenant, 7), (tenant, 5), (tenant, 2)],
    };
    let mut rows = Vec::new();
    for stmt in precheck(db.dialect(), &keys) {
        rows.extend(db.load::<KeyRow>(stmt).await.unwrap());
    }
    let (versions, dedup, idempotency, numbers) = Existing::new(rows, &keys, Default::default())
        .unwrap()
        .sorted();

    let stored_version = |v: u64, s| ((tenant, s), v);
    let mut want_versions = vec![
        stored_version(invoice.version, StreamId::Invoice(invoice.id)),
        stored_version(payment.version, stream),
    ];
    // PostgreSQL answers for every stream, a stream without events at version 0; SQLite only
    // for the streams it finds.
    if matches!(db.dialect(), crate::store::stmt::Dialect::Postgres) {
        want_versions.push(stored_version(0, StreamId::Invoice(never.id)));
    }
    want_versions.sort();
    assert_eq!(versions, want_versions);
    assert_eq!(
        dedup,
        vec![(tenant, "gw_1".into()), (tenant, "gw_ignored".into())]
    );
    assert_eq!(idempotency, vec![(tenant, "k_stored".into())]);
    assert_eq!(numbers, vec![(tenant, 2)]);
}
