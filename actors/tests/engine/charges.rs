//! The charge after a payment's commit: it reaches the gateway once, and a refusal for good
//! fails the payment and releases its money.

use std::time::Duration;

use payrail_actors::domain::{Payment, PaymentStatus};

use crate::support::{config, harness, Harness};

#[actix_rt::test]
async fn charges_reach_the_gateway_once_and_record_the_reference() {
    let h = harness(config());
    let invoice = h.open_invoice(500).await;
    let payment = h.pay(invoice.id, None).await;
    for _ in 0..100 {
        let current = h.engine.payment(h.tenant, payment.id).await.unwrap();
        if current.gateway_reference.is_some() {
            assert_eq!(
                current.gateway_reference.unwrap(),
                format!("ch_{}", payment.id)
            );
            assert_eq!(
                h.gateway.charges.lock().unwrap()[&payment.id.to_string()],
                1
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("charge reference never recorded");
}

#[actix_rt::test]
async fn a_charge_the_gateway_refuses_fails_the_payment_and_releases_the_money() {
    let h = harness(config());
    h.gateway
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let invoice = h.open_invoice(500).await;
    let payment = h.pay(invoice.id, Some(300)).await;
    for _ in 0..200 {
        let current = h.engine.payment(h.tenant, payment.id).await.unwrap();
        if current.status == PaymentStatus::Failed {
            assert_eq!(current.failure_code.as_deref(), Some("processing_error"));
            let message = current.failure_message.unwrap_or_default();
            assert!(message.contains("HTTP 402"), "{message}");
            assert!(
                !message.contains(&payment.id.to_string()),
                "gateway words: {message}"
            );
            let invoice = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
            assert_eq!((invoice.amount_pending, invoice.amount_paid), (0, 0));
            // The released amount can be paid again.
            h.pay(invoice.id, Some(500)).await;
            h.check_log();
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("a refused charge left the payment processing");
}

/// An engine with `slots` gateway slots and a sweep that takes payments of any age, on a
/// gateway that holds each charge long enough that none finishes while a test makes its
/// payments.
fn stalled_gateway(slots: usize) -> Harness {
    let h = harness(payrail_actors::EngineConfig {
        gateway_tasks_max: slots,
        recovery_min_age: Duration::ZERO,
        ..config()
    });
    h.gateway
        .stall_ms
        .store(1_500, std::sync::atomic::Ordering::SeqCst);
    h
}

/// Asserts the gateway was asked to charge each of `payments` exactly once.
fn charged_once_each(h: &Harness, payments: &[Payment]) {
    let charged = h.gateway.charges.lock().unwrap().clone();
    for payment in payments {
        assert_eq!(
            charged.get(&payment.id.to_string()),
            Some(&1),
            "{}",
            payment.id
        );
    }
}

/// A slow gateway: no more gateway calls run at once than configured. The others wait in line
/// and each starts as a running one ends, with no recovery sweep.
#[actix_rt::test]
async fn gateway_calls_are_bounded_and_the_rest_start_as_slots_free() {
    use std::sync::atomic::Ordering::SeqCst;
    let h = stalled_gateway(2);
    let invoice = h.open_invoice(10_000).await;
    let payments = futures::future::join_all((0..5).map(|_| h.pay(invoice.id, Some(1_000)))).await;
    let metrics = h.engine.metrics();
    assert_eq!(metrics.gateway_tasks.load(SeqCst), 2);
    assert_eq!(metrics.gateway_calls_queued.load(SeqCst), 3);
    assert_eq!(metrics.gateway_calls_deferred.load(SeqCst), 0);
    h.gateway.stall_ms.store(0, SeqCst);
    for _ in 0..500 {
        let charged = h.gateway.charges.lock().unwrap().len();
        assert!(metrics.gateway_tasks.load(SeqCst) <= 2);
        if charged == 5 && metrics.gateway_tasks.load(SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    charged_once_each(&h, &payments);
}

/// Past the line (64 calls per slot) a call is left in durable state, and the recovery sweep
/// sends it once there is room.
#[actix_rt::test]
async fn gateway_calls_past_the_line_wait_in_durable_state() {
    use std::sync::atomic::Ordering::SeqCst;
    let h = stalled_gateway(1);
    let invoice = h.open_invoice(100_000).await;
    // One running, 64 in line, 3 past it.
    let payments = futures::future::join_all((0..68).map(|_| h.pay(invoice.id, Some(1_000)))).await;
    let metrics = h.engine.metrics();
    assert_eq!(metrics.gateway_calls_queued.load(SeqCst), 64);
    assert_eq!(metrics.gateway_calls_deferred.load(SeqCst), 3);
    h.gateway.stall_ms.store(0, SeqCst);
    for _ in 0..500 {
        if metrics.gateway_tasks.load(SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.gateway.charges.lock().unwrap().len(), 65);
    let sent = h.engine.resubmit_pending_charges().await.unwrap();
    assert!((1..=3).contains(&sent), "{sent}");
    assert_eq!(metrics.recovery_backlog.load(SeqCst), 3);
    for _ in 0..200 {
        if h.gateway.charges.lock().unwrap().len() == 68 {
            break;
        }
        if metrics.gateway_tasks.load(SeqCst) == 0 {
            h.engine.resubmit_pending_charges().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    charged_once_each(&h, &payments);
}
