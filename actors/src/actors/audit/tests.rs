#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::domain::{PaymentId, TenantId};
use crate::memory::MemoryStore;
use crate::ports::DedupKey;

fn queued(light: &[bool]) -> Vec<Queued> {
    let tenant = TenantId::new();
    let counter = Arc::new(AtomicUsize::new(light.len()));
    light
        .iter()
        .enumerate()
        .map(|(i, &light)| {
            let mut unit = Unit::new(tenant);
            unit.dedup_keys.push(DedupKey {
                gateway_event_id: format!("evt_{i}"),
                payment_id: PaymentId::new(),
            });
            if !light {
                unit.idempotency = Some(crate::ports::IdempotencyRecord {
                    key: format!("key_{i}"),
                    fingerprint: String::new(),
                    status: 201,
                    body: String::new(),
                    created_at: chrono::Utc::now(),
                });
            }
            let waiter = Waiter {
                reply: None,
                fences: Fences::none(),
                queued: Arc::clone(&counter),
            };
            (unit, waiter)
        })
        .collect()
}

#[test]
fn a_batch_counts_light_units_as_a_fraction_of_its_cap() {
    let heavy = |n| vec![false; n];
    assert_eq!(batch_len(&queued(&heavy(300)), 256), 256);
    assert_eq!(batch_len(&queued(&heavy(10)), 256), 10);
    assert_eq!(batch_len(&queued(&[]), 256), 0);
    // Only light units: eight to a place.
    assert_eq!(batch_len(&queued(&[true; 3000]), 256), 2048);
    // Half and half: 227 of each fill the budget (227 × 9 = 2043 of 2048).
    let mixed: Vec<bool> = (0..1000).map(|i| i % 2 == 1).collect();
    assert_eq!(batch_len(&queued(&mixed), 256), 454);
    // A cap of one is one unit per transaction, light or not.
    assert_eq!(batch_len(&queued(&[false, true, false]), 1), 1);
    assert_eq!(batch_len(&queued(&[true, true, false]), 1), 1);
    assert_eq!(batch_len(&queued(&[true, false]), 2), 2);
    assert_eq!(batch_len(&queued(&[true; 20]), 2), 16);
}

/// Asserts that `writer` holds no unit and has committed `units` units in `batches` batches.
fn assert_drained(writer: &WriterHandle, batches: u64, units: u64) {
    let snapshot = writer.snapshot();
    assert_eq!(
        (snapshot.queued, snapshot.batches, snapshot.units),
        (0, batches, units)
    );
}

fn dedup_unit(tenant: TenantId, i: usize) -> Unit {
    let mut unit = Unit::new(tenant);
    unit.dedup_keys.push(DedupKey {
        gateway_event_id: format!("evt_{i}"),
        payment_id: PaymentId::new(),
    });
    unit
}

#[actix_rt::test]
async fn a_burst_for_two_writers_reaches_each_as_one_batch() {
    let (config, metrics) = (
        Arc::new(EngineConfig::default()),
        Arc::new(Default::default()),
    );
    let writers: Vec<WriterHandle> = (0..2)
        .map(|_| {
            let store = Arc::new(MemoryStore::new());
            WriterHandle::start(
                &Arbiter::current(),
                store,
                config.clone(),
                Arc::clone(&metrics),
            )
        })
        .collect();
    let tenant = TenantId::new();
    // Alternating writers within one burst of this thread: the outbox keeps a list per
    // writer, so each writer gets its own three units and commits them together.
    let durables: Vec<Durable> = (0..6)
        .map(|i| {
            writers[i % 2]
                .reserve()
                .unwrap()
                .submit(dedup_unit(tenant, i), Fences::none())
        })
        .collect();
    for durable in durables {
        durable.await.unwrap();
    }
    for writer in &writers {
        assert_drained(writer, 1, 3);
    }
}

#[test]
fn a_batch_counts_gathered_records_by_their_rows() {
    let mut gathered = queued(&[true, true]);
    for i in 1..100 {
        gathered[0].0.dedup_keys.push(DedupKey {
            gateway_event_id: format!("evt_more_{i}"),
            payment_id: PaymentId::new(),
        });
    }
    // 100 rows, then one: 101 of the 104 that a cap of 13 allows.
    assert_eq!(batch_len(&gathered, 13), 2);
    // A cap of 12 (96 rows) still takes the first unit whole, but alone.
    assert_eq!(batch_len(&gathered, 12), 1);
}

fn key(i: usize, payment: PaymentId) -> DedupKey {
    DedupKey {
        gateway_event_id: format!("evt_{i}"),
        payment_id: payment,
    }
}

#[actix_rt::test]
async fn ignored_events_of_a_tenant_in_one_burst_share_one_unit() {
    let store = Arc::new(MemoryStore::new());
    let (config, metrics) = (Arc::new(EngineConfig::default()), Arc::default());
    let writer = WriterHandle::start(&Arbiter::current(), store.clone(), config, metrics);
    let (a, b) = (TenantId::new(), TenantId::new());
    let (pa, pb) = (PaymentId::new(), PaymentId::new());
    // One burst of this thread: a's records, a unit of a's between them, and b's.
    writer.record_ignored(a, key(1, pa)).unwrap();
    let between = writer
        .reserve()
        .unwrap()
        .submit(dedup_unit(a, 9), Fences::none());
    writer.record_ignored(b, key(2, pb)).unwrap();
    writer.record_ignored(a, key(3, pa)).unwrap();
    writer.record_ignored(b, key(4, pb)).unwrap();
    assert_eq!(writer.snapshot().queued, 3);
    between.await.unwrap();
    // Queued before the unit awaited: in its batch.
    assert_drained(&writer, 1, 3);
    let mut seen_a = store.payment_gateway_events(a, pa).await.unwrap();
    seen_a.sort();
    assert_eq!(seen_a, ["evt_1", "evt_3"]);
    let mut seen_b = store.payment_gateway_events(b, pb).await.unwrap();
    seen_b.sort();
    assert_eq!(seen_b, ["evt_2", "evt_4"]);
    // A later burst starts a unit of its own.
    writer.record_ignored(a, key(5, pa)).unwrap();
    writer
        .reserve()
        .unwrap()
        .submit(Unit::new(a), Fences::none())
        .await
        .unwrap();
    assert_eq!(writer.snapshot().units, 4);
    assert_eq!(store.payment_gateway_events(a, pa).await.unwrap().len(), 3);
}

#[actix_rt::test]
async fn a_full_writer_refuses_a_record_that_needs_a_place() {
    let store = Arc::new(MemoryStore::new());
    let config = Arc::new(EngineConfig {
        audit_queue_capacity: 1,
        ..EngineConfig::default()
    });
    let writer = WriterHandle::start(&Arbiter::current(), store, config, Arc::default());
    let (a, b) = (TenantId::new(), TenantId::new());
    writer.record_ignored(a, key(1, PaymentId::new())).unwrap();
    // Full: another of a's joins the unit already queued, b's needs a place of its own.
    writer.record_ignored(a, key(2, PaymentId::new())).unwrap();
    assert!(matches!(
        writer.record_ignored(b, key(3, PaymentId::new())),
        Err(EngineError::Overloaded)
    ));
    assert_eq!(writer.snapshot().queued, 1);
}

#[actix_rt::test]
async fn a_writer_counts_its_own_batches_units_and_queue() {
    let store = Arc::new(MemoryStore::new());
    let (config, metrics) = (Arc::new(EngineConfig::default()), Arc::default());
    let writer = WriterHandle::start(&Arbiter::current(), store, config, metrics);
    assert_eq!(writer.snapshot(), WriterSnapshot::default());
    let tenant = TenantId::new();
    // Queued before the writer runs, so they share one batch.
    let durables: Vec<Durable> = (0..3)
        .map(|i| {
            writer
                .reserve()
                .unwrap()
                .submit(dedup_unit(tenant, i), Fences::none())
        })
        .collect();
    assert_eq!(writer.snapshot().queued, 3);
    for durable in durables {
        durable.await.unwrap();
    }
    assert_drained(&writer, 1, 3);
}

/// Polls `done` every millisecond, for at most two seconds.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("condition not reached in time");
}

#[actix_rt::test]
async fn units_delivered_during_a_batch_wait_in_the_inbox_and_form_the_next() {
    let store = Arc::new(MemoryStore::new());
    let (config, metrics) = (Arc::new(EngineConfig::default()), Arc::default());
    let writer = WriterHandle::start(&Arbiter::current(), store.clone(), config, metrics);
    let inbox = Arc::clone(&writer.link.inbox);
    let tenant = TenantId::new();
    let submit = |i| {
        writer
            .reserve()
            .unwrap()
            .submit(dedup_unit(tenant, i), Fences::none())
    };
    store.hold_batches(true);
    let first = submit(0);
    // Once this thread has run its other tasks, the writer has taken the unit, and its batch
    // waits on the store.
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    assert!(!inbox::holds_units(&inbox) && inbox::is_watched(&inbox));
    let later = [submit(1), submit(2)];
    until(|| inbox::holds_units(&inbox)).await;
    // The writer is not woken while its batch is in flight: the units stay where they were
    // left until the batch returns.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert!(inbox::holds_units(&inbox));
    assert_eq!(writer.snapshot().batches, 0);
    store.hold_batches(false);
    first.await.unwrap();
    for durable in later {
        durable.await.unwrap();
    }
    assert_drained(&writer, 2, 3);
    // With nothing left the writer rests, and the next delivery wakes it.
    until(|| !inbox::is_watched(&inbox)).await;
    submit(3).await.unwrap();
    assert_eq!(writer.snapshot().batches, 3);
}

#[actix_rt::test]
async fn a_stopped_writer_answers_what_it_held_and_what_comes_later_unavailable() {
    let arbiter = Arbiter::new();
    let store = Arc::new(MemoryStore::new());
    let (config, metrics) = (Arc::new(EngineConfig::default()), Arc::default());
    let writer = WriterHandle::start(&arbiter.handle(), store.clone(), config, metrics);
    let inbox = Arc::clone(&writer.link.inbox);
    let tenant = TenantId::new();
    let submit = |i| {
        let fence = Fence::new();
        let durable = writer
            .reserve()
            .unwrap()
            .submit(dedup_unit(tenant, i), Fences::of(fence.clone(), None));
        (durable, fence)
    };
    store.hold_batches(true);
    // One unit in a batch that never returns, one left in the inbox behind it.
    let in_batch = submit(0);
    until(|| !inbox::holds_units(&inbox) && writer.snapshot().queued == 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let in_inbox = submit(1);
    until(|| inbox::holds_units(&inbox)).await;
    assert!(arbiter.stop());
    let after = async {
        // Delivered once the writer has stopped.
        until(|| inbox::is_closed(&inbox)).await;
        submit(2)
    };
    let after = after.await;
    for (durable, fence) in [in_batch, in_inbox, after] {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), durable).await;
        assert!(
            matches!(answer, Ok(Err(EngineError::Unavailable(_)))),
            "{answer:?}"
        );
        assert!(fence.is_tripped());
    }
    assert_eq!(writer.snapshot().queued, 0);
}
