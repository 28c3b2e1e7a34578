//! The charge after a payment's commit: it reaches the gateway once, and a refusal for good
//! fails the payment and releases its money.

use std::time::Duration;

use payrail_actors::domain::PaymentStatus;

use crate::support::{config, harness};

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
