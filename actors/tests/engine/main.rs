//! Engine behaviour through its public API, over the in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod charges;
mod passivation;
mod pipeline;
mod properties;
mod refunds;
mod shared;
mod support;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use payrail_actors::domain::{
    DomainError, EventData, GatewayOutcome, InvoiceCommand, InvoiceStatus, PaymentStatus, StreamId,
};
use payrail_actors::engine::{GatewayEvent, IdempotencySpec, Outcome, PaymentAttempt, Rendered};
use payrail_actors::EngineError;
use support::{card, config, harness, lingering_config};

fn spec(key: &str, fingerprint: &str) -> IdempotencySpec {
    IdempotencySpec {
        key: key.into(),
        fingerprint: fingerprint.into(),
        status: 201,
        render: Arc::new(|rendered| match rendered {
            Rendered::Invoice(i) => serde_json::to_string(i).unwrap(),
            Rendered::Payment(p) => serde_json::to_string(p).unwrap(),
            Rendered::Refund(r) => serde_json::to_string(r).unwrap(),
        }),
    }
}

pub(crate) fn success(id: &str, payment: payrail_actors::domain::PaymentId) -> GatewayEvent {
    GatewayEvent {
        id: id.into(),
        payment_id: payment,
        outcome: GatewayOutcome::Succeeded {
            reference: None,
            amount: None,
            currency: None,
        },
    }
}

pub(crate) fn failure(id: &str, payment: payrail_actors::domain::PaymentId) -> GatewayEvent {
    GatewayEvent {
        id: id.into(),
        payment_id: payment,
        outcome: GatewayOutcome::Failed {
            code: "card_declined".into(),
            message: "declined".into(),
            amount: None,
            currency: None,
        },
    }
}

#[actix_rt::test]
async fn pays_an_invoice_end_to_end() {
    let h = harness(config());
    let invoice = h.open_invoice(3_300).await;
    assert_eq!(invoice.number, "INV-000001");
    let attempt = PaymentAttempt {
        invoice_id: invoice.id,
        amount: Some(1_300),
        method: card("4242424242424242"),
    };
    let first = h
        .engine
        .attempt_payment(h.ctx(), attempt)
        .await
        .unwrap()
        .fresh()
        .unwrap();
    assert_eq!(first.status, PaymentStatus::Processing);
    assert_eq!(first.payment_method.last4, "4242");
    let attempt = PaymentAttempt {
        invoice_id: invoice.id,
        amount: None,
        method: card("4242424242424242"),
    };
    let second = h
        .engine
        .attempt_payment(h.ctx(), attempt)
        .await
        .unwrap()
        .fresh()
        .unwrap();
    assert_eq!(second.amount, 2_000);
    let pending = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!(
        (pending.amount_pending, pending.amount_remaining()),
        (3_300, 0)
    );

    let summary = h
        .engine
        .apply_gateway_events(
            h.tenant,
            vec![success("evt_gw_1", first.id), success("evt_gw_1", first.id)],
        )
        .await
        .unwrap();
    assert_eq!(
        (summary.received, summary.applied, summary.duplicates),
        (2, 1, 1)
    );
    assert_eq!(
        h.engine.invoice(h.tenant, invoice.id).await.unwrap().status,
        InvoiceStatus::Open
    );
    h.engine
        .apply_gateway_events(h.tenant, vec![success("evt_gw_2", second.id)])
        .await
        .unwrap();
    let paid = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!(paid.status, InvoiceStatus::Paid);
    assert_eq!((paid.amount_paid, paid.amount_pending), (3_300, 0));

    // A late failure is stale: ignored, and a re-delivery of it is a duplicate.
    let late = failure("evt_gw_3", first.id);
    let summary = h
        .engine
        .apply_gateway_events(h.tenant, vec![late.clone()])
        .await
        .unwrap();
    assert_eq!(summary.ignored, 1);
    let summary = h
        .engine
        .apply_gateway_events(h.tenant, vec![late])
        .await
        .unwrap();
    assert_eq!(summary.duplicates, 1);

    // `payment.processing` lands whenever the gateway's reference comes back, so it is left
    // out of the order check; everything else is in causal order.
    let types: Vec<&str> = h
        .store
        .all_events()
        .iter()
        .filter(|e| e.invoice_id == Some(invoice.id) && e.event_type() != "payment.processing")
        .map(|e| e.event_type())
        .collect();
    assert_eq!(
        types,
        [
            "invoice.created",
            "invoice.finalized",
            "invoice.payment_pending",
            "payment.attempted",
            "invoice.payment_pending",
            "payment.attempted",
            "payment.succeeded",
            "payment.succeeded",
            "invoice.paid",
        ]
    );
    h.check_log();
}

#[actix_rt::test]
async fn idempotency_keys_replay_refuse_and_serialize() {
    let h = harness(config());
    let ctx = h.ctx().with_idempotency(spec("k1", "body-a"));
    let first = h
        .engine
        .create_invoice(ctx.clone(), support::invoice_input(100), false)
        .await
        .unwrap();
    let Outcome::Fresh(invoice) = first else {
        panic!("first run must be fresh")
    };
    match h
        .engine
        .create_invoice(ctx, support::invoice_input(100), false)
        .await
        .unwrap()
    {
        Outcome::Replayed(record) => {
            assert_eq!(record.status, 201);
            assert!(record.body.contains(&invoice.id.to_string()));
        }
        Outcome::Fresh(_) => panic!("second run must replay"),
    }
    let reused = h
        .engine
        .create_invoice(
            h.ctx().with_idempotency(spec("k1", "body-b")),
            support::invoice_input(100),
            false,
        )
        .await;
    assert_eq!(reused.unwrap_err(), EngineError::IdempotencyKeyReused);

    // Many concurrent requests with one key: exactly one effect.
    let runs = (0..20).map(|_| {
        let ctx = h.ctx().with_idempotency(spec("k2", "same"));
        let engine = h.engine.clone();
        async move {
            engine
                .create_invoice(ctx, support::invoice_input(100), false)
                .await
        }
    });
    let results = futures::future::join_all(runs).await;
    let fresh = results
        .iter()
        .filter(|r| matches!(r, Ok(Outcome::Fresh(_))))
        .count();
    assert_eq!(fresh, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(_) | Err(EngineError::IdempotencyInFlight))));
    let created = h
        .store
        .all_events()
        .iter()
        .filter(|e| e.event_type() == "invoice.created")
        .count();
    assert_eq!(created, 2);
}

#[actix_rt::test]
async fn group_commit_batches_concurrent_callers() {
    // A short linger lets concurrent callers meet in a batch however busy the machine is (the
    // memory store commits instantly, so without it a slow machine may flush one by one).
    let h = harness(lingering_config());
    let runs = (0..300).map(|_| {
        let engine = h.engine.clone();
        let ctx = h.ctx();
        async move {
            engine
                .create_invoice(ctx, support::invoice_input(100), true)
                .await
        }
    });
    let results = futures::future::join_all(runs).await;
    assert!(results.iter().all(Result::is_ok));
    // Creation is serialized per tenant for gap-free numbers, so spread over tenants too.
    let tenants: Vec<_> = (0..50)
        .map(|_| payrail_actors::domain::TenantId::new())
        .collect();
    let before = h.store.batches_committed();
    let runs = tenants.iter().map(|t| {
        let engine = h.engine.clone();
        let ctx = payrail_actors::engine::Context::new(*t, "k");
        async move {
            engine
                .create_invoice(ctx, support::invoice_input(100), true)
                .await
        }
    });
    assert!(futures::future::join_all(runs)
        .await
        .iter()
        .all(Result::is_ok));
    let batches = h.store.batches_committed() - before;
    assert!(batches < 50, "50 concurrent units took {batches} batches");
    let mut numbers: Vec<String> = h
        .store
        .all_events()
        .iter()
        .filter_map(|e| match &e.data {
            EventData::InvoiceCreated { number, .. } if e.tenant_id == h.tenant => {
                Some(number.clone())
            }
            _ => None,
        })
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=300).map(|n| format!("INV-{n:06}")).collect();
    assert_eq!(numbers, expected, "invoice numbers must be gap-free");
}

#[actix_rt::test]
async fn a_failing_unit_fails_alone_and_a_failing_batch_fails_everyone() {
    // The single-unit failure needs a batch of several units: see `lingering_config`.
    let h = harness(lingering_config());
    let invoice = h.open_invoice(1_000).await;
    // Whole batch fails: the caller gets an error and nothing is durable.
    h.store.fail_next_batches(1);
    let err = h
        .engine
        .invoice_command(h.ctx(), invoice.id, InvoiceCommand::MarkUncollectible)
        .await;
    assert!(matches!(err, Err(EngineError::Storage(_))), "{err:?}");
    let status = h.engine.invoice(h.tenant, invoice.id).await.unwrap().status;
    assert_eq!(
        status,
        InvoiceStatus::Open,
        "a failed commit must not change state"
    );

    // A lost reply: the caller gets an error although the change is durable; the actor
    // reloads and shows the durable truth (never a false success).
    h.store.lose_next_replies(1);
    let err = h
        .engine
        .invoice_command(h.ctx(), invoice.id, InvoiceCommand::MarkUncollectible)
        .await;
    assert!(err.is_err());
    let status = h.engine.invoice(h.tenant, invoice.id).await.unwrap().status;
    assert_eq!(status, InvoiceStatus::Uncollectible);

    // One unit of a batch fails: only its caller sees an error.
    let tenants: Vec<_> = (0..20)
        .map(|_| payrail_actors::domain::TenantId::new())
        .collect();
    h.store.fail_unit_of_next_batch(1);
    let runs = tenants.iter().map(|t| {
        let engine = h.engine.clone();
        let ctx = payrail_actors::engine::Context::new(*t, "k");
        async move {
            (
                ctx.tenant,
                engine
                    .create_invoice(ctx, support::invoice_input(100), false)
                    .await,
            )
        }
    });
    let results = futures::future::join_all(runs).await;
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    for (tenant, result) in &results {
        let durable = h.store.all_events().iter().any(|e| e.tenant_id == *tenant);
        assert_eq!(durable, result.is_ok(), "answer must match what is durable");
    }
    h.check_log();
}

#[actix_rt::test]
async fn panicked_actors_restart_from_storage() {
    let h = harness(config());
    let invoice = h.open_invoice(1_000).await;
    h.engine
        .inject_panic(h.tenant, StreamId::Invoice(invoice.id))
        .await;
    let attempt = PaymentAttempt {
        invoice_id: invoice.id,
        amount: Some(400),
        method: card("4242424242424242"),
    };
    let payment = h
        .engine
        .attempt_payment(h.ctx(), attempt)
        .await
        .unwrap()
        .fresh()
        .unwrap();
    h.engine
        .inject_panic(h.tenant, StreamId::Payment(payment.id))
        .await;
    let summary = h
        .engine
        .apply_gateway_events(h.tenant, vec![success("evt_gw_p", payment.id)])
        .await
        .unwrap();
    assert_eq!(summary.applied, 1);
    let after = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!((after.amount_paid, after.amount_pending), (400, 0));
    assert!(
        h.engine
            .metrics()
            .actor_restarts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    h.check_log();
}

#[actix_rt::test]
async fn full_queues_answer_overloaded() {
    let mut cfg = config();
    cfg.tenant_in_flight_max = 2;
    let h = harness(cfg);
    let invoice = h.open_invoice(1_000_000).await;
    let runs = (0..50).map(|_| {
        let engine = h.engine.clone();
        let ctx = h.ctx();
        let attempt = PaymentAttempt {
            invoice_id: invoice.id,
            amount: Some(1),
            method: card("4242424242424242"),
        };
        async move { engine.attempt_payment(ctx, attempt).await }
    });
    let results = futures::future::join_all(runs).await;
    assert!(results
        .iter()
        .any(|r| matches!(r, Err(EngineError::Overloaded))));
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(_) | Err(EngineError::Overloaded))));
    let ok = results.iter().filter(|r| r.is_ok()).count() as i64;
    assert_eq!(
        h.engine
            .invoice(h.tenant, invoice.id)
            .await
            .unwrap()
            .amount_pending,
        ok
    );
}

#[actix_rt::test]
async fn racing_payments_for_the_last_amount_collect_once() {
    let h = harness(config());
    for _ in 0..10 {
        let invoice = h.open_invoice(700).await;
        let runs = (0..4).map(|_| {
            let engine = h.engine.clone();
            let ctx = h.ctx();
            let attempt = PaymentAttempt {
                invoice_id: invoice.id,
                amount: Some(700),
                method: card("4242424242424242"),
            };
            async move { engine.attempt_payment(ctx, attempt).await }
        });
        let results = futures::future::join_all(runs).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(
                    r,
                    Err(EngineError::Domain(
                        DomainError::AmountExceedsRemaining { .. }
                    ))
                ),
                "{r:?}"
            );
        }
    }
    h.check_log();
}

#[actix_rt::test]
async fn refunds_flow_through_to_the_invoice() {
    let h = harness(config());
    let invoice = h.open_invoice(1_000).await;
    let attempt = PaymentAttempt {
        invoice_id: invoice.id,
        amount: None,
        method: card("4242424242424242"),
    };
    let payment = h
        .engine
        .attempt_payment(h.ctx(), attempt)
        .await
        .unwrap()
        .fresh()
        .unwrap();
    h.engine
        .apply_gateway_events(h.tenant, vec![success("evt_gw_r1", payment.id)])
        .await
        .unwrap();
    let refund = h
        .engine
        .refund(h.ctx(), payment.id, Some(400), None)
        .await
        .unwrap()
        .fresh()
        .unwrap();
    let over = h.engine.refund(h.ctx(), payment.id, Some(601), None).await;
    assert!(matches!(
        over,
        Err(EngineError::Domain(
            DomainError::RefundExceedsCaptured { .. }
        ))
    ));
    let done = GatewayEvent {
        id: "evt_gw_r2".into(),
        payment_id: payment.id,
        outcome: GatewayOutcome::RefundSucceeded {
            refund_id: refund.id,
        },
    };
    h.engine
        .apply_gateway_events(h.tenant, vec![done.clone(), done])
        .await
        .unwrap();
    let p = h.engine.payment(h.tenant, payment.id).await.unwrap();
    assert_eq!(
        (p.status, p.amount_refunded),
        (PaymentStatus::PartiallyRefunded, 400)
    );
    assert_eq!(
        h.engine
            .invoice(h.tenant, invoice.id)
            .await
            .unwrap()
            .amount_refunded,
        400
    );
    for _ in 0..100 {
        if !h.gateway.refunds.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.gateway.refunds.lock().unwrap().len(), 1);
    h.check_log();
}

/// A command whose commit does not come back within the command deadline is answered
/// `Unavailable` at the deadline, not held for as long as storage stays silent. The write goes
/// on and commits once storage answers; a retry under the same key replays it, and numbering
/// stays gap-free.
#[actix_rt::test]
async fn a_command_past_its_deadline_is_unavailable_and_a_retry_replays_it() {
    let mut cfg = config();
    cfg.command_deadline = Duration::from_millis(200);
    let h = harness(cfg);
    h.open_invoice(100).await;
    let ctx = h.ctx().with_idempotency(spec("held", "body"));
    h.store.hold_batches(true);
    let started = std::time::Instant::now();
    let held = h
        .engine
        .create_invoice(ctx.clone(), support::invoice_input(100), true)
        .await;
    let took = started.elapsed();
    assert!(matches!(held, Err(EngineError::Unavailable(_))), "{held:?}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    h.store.hold_batches(false);
    let mut replayed = None;
    for _ in 0..200 {
        match h
            .engine
            .create_invoice(ctx.clone(), support::invoice_input(100), true)
            .await
        {
            Ok(Outcome::Replayed(record)) => {
                replayed = Some(record);
                break;
            }
            Ok(Outcome::Fresh(invoice)) => panic!("the retry wrote again: {invoice:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let record = replayed.expect("the held write never committed");
    assert!(record.body.contains("INV-000002"), "{}", record.body);
    let next = h.open_invoice(100).await;
    assert_eq!(next.number, "INV-000003");
    h.check_log();
}
