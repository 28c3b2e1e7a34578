//! Refunds after their commit: one the gateway never heard of (it was down through every
//! retry) is asked for again by the recovery sweep, from durable state, until its outcome
//! arrives; one the gateway refuses for good fails, and its amount is refundable again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use payrail_actors::domain::{GatewayOutcome, Payment, Refund, RefundId, RefundStatus};
use payrail_actors::engine::GatewayEvent;
use payrail_actors::EngineConfig;

use crate::support::{config, harness, Harness};

/// An engine whose recovery sweep takes refunds of any age, and a payment of 1,000 that
/// succeeded.
async fn paid_payment() -> (Harness, Payment) {
    paid_payment_on(EngineConfig {
        recovery_min_age: Duration::ZERO,
        ..config()
    })
    .await
}

/// A payment of 1,000 that succeeded, on an engine with `config`.
async fn paid_payment_on(config: EngineConfig) -> (Harness, Payment) {
    let h = harness(config);
    let invoice = h.open_invoice(1_000).await;
    let payment = h.pay(invoice.id, None).await;
    h.engine
        .apply_gateway_events(h.tenant, vec![crate::success("evt_gw_paid", payment.id)])
        .await
        .unwrap();
    (h, payment)
}

/// A refund of `amount` of `payment`, made fresh.
async fn refund(h: &Harness, payment: &Payment, amount: Option<i64>) -> Refund {
    h.engine
        .refund(h.ctx(), payment.id, amount, None)
        .await
        .unwrap()
        .fresh()
        .unwrap()
}

/// The refunds the gateway was asked for, once there is one (or after 2 s).
async fn refunds_asked(h: &Harness) -> Vec<(RefundId, i64)> {
    for _ in 0..400 {
        if !h.gateway.refunds.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.gateway
        .refunds
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.refund_id, r.amount))
        .collect()
}

#[actix_rt::test]
async fn a_refund_the_gateway_missed_is_asked_for_again() {
    let (h, payment) = paid_payment().await;
    h.gateway.down.store(true, Ordering::SeqCst);
    let refund = refund(&h, &payment, Some(400)).await;
    // The refund's own call gives up while the gateway is down (1 retry, 1 ms apart).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.gateway.refunds.lock().unwrap().is_empty());

    h.gateway.down.store(false, Ordering::SeqCst);
    assert_eq!(h.engine.resubmit_pending_refunds().await.unwrap(), 1);
    assert_eq!(refunds_asked(&h).await, [(refund.id, 400)]);

    // Once its outcome is in, the refund is no longer pending and nothing is asked again.
    let done = GatewayEvent {
        id: "evt_gw_refunded".into(),
        payment_id: payment.id,
        outcome: GatewayOutcome::RefundSucceeded {
            refund_id: refund.id,
        },
    };
    h.engine
        .apply_gateway_events(h.tenant, vec![done])
        .await
        .unwrap();
    let settled = h.engine.payment(h.tenant, payment.id).await.unwrap();
    assert_eq!(settled.refunds[0].status, RefundStatus::Succeeded);
    assert_eq!(h.engine.resubmit_pending_refunds().await.unwrap(), 0);
    h.check_log();
}

#[actix_rt::test]
async fn a_refund_the_gateway_refuses_fails_and_frees_its_amount() {
    let (h, payment) = paid_payment().await;
    h.gateway.refuse_refunds.store(true, Ordering::SeqCst);
    let refused = refund(&h, &payment, Some(400)).await;
    let mut failed = None;
    for _ in 0..400 {
        let now = h.engine.payment(h.tenant, payment.id).await.unwrap();
        if now.refunds[0].status != RefundStatus::Pending {
            failed = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let failed = failed.expect("a refused refund stayed pending");
    assert_eq!(failed.refunds[0].id, refused.id);
    assert_eq!(failed.refunds[0].status, RefundStatus::Failed);
    assert_eq!(
        h.engine.resubmit_pending_refunds().await.unwrap(),
        0,
        "a refused refund is not asked for again"
    );
    // The whole amount is refundable again.
    h.gateway.refuse_refunds.store(false, Ordering::SeqCst);
    let full = refund(&h, &payment, None).await;
    assert_eq!(full.amount, payment.amount);
    h.check_log();
}

/// With every gateway slot taken, a refund waits in line and is asked for as soon as the
/// running call ends, with no recovery sweep.
#[actix_rt::test]
async fn a_refund_waits_in_line_for_a_gateway_slot() {
    let (h, payment) = paid_payment_on(EngineConfig {
        gateway_tasks_max: 1,
        ..config()
    })
    .await;
    let metrics = h.engine.metrics();
    for _ in 0..200 {
        if metrics.gateway_tasks.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another payment's charge holds the only slot for a while.
    h.gateway.stall_ms.store(300, Ordering::SeqCst);
    let other = h.open_invoice(500).await;
    h.pay(other.id, None).await;
    let refund = refund(&h, &payment, Some(400)).await;
    assert_eq!(metrics.gateway_calls_queued.load(Ordering::SeqCst), 1);
    assert!(h.gateway.refunds.lock().unwrap().is_empty());
    assert_eq!(refunds_asked(&h).await, [(refund.id, 400)]);
    assert_eq!(metrics.gateway_calls_deferred.load(Ordering::SeqCst), 0);
}
