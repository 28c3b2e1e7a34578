//! Gateway webhooks through the engine: unknown payments, each payment's order inside a
//! batch, and admission by a batch's weight.

use payrail_actors::domain::{PaymentId, PaymentStatus};
use payrail_actors::EngineError;

use crate::support::{config, harness};
use crate::{failure, success};

/// Events about payments that do not exist are rejected, not errors: also several about one
/// such payment in one request (its actor stops after the first, finding nothing to load).
#[actix_rt::test]
async fn unknown_payments_are_rejected_not_errors() {
    let h = harness(config());
    let unknown = PaymentId::new();
    let summary = h
        .engine
        .apply_gateway_events(h.tenant, vec![success("evt_gw_x", unknown)])
        .await
        .unwrap();
    assert_eq!(summary.rejected, 1);
    let other = PaymentId::new();
    let summary = h
        .engine
        .apply_gateway_events(
            h.tenant,
            vec![
                success("evt_gw_y1", unknown),
                success("evt_gw_y2", other),
                success("evt_gw_y3", unknown),
                success("evt_gw_y4", unknown),
            ],
        )
        .await
        .unwrap();
    assert_eq!((summary.received, summary.rejected), (4, 4));
}

/// One request's events reach their payments in one message, and each payment still sees its
/// own events in the order they came, however the request interleaves them: the first final
/// outcome of each payment applies and the later one is stale.
#[actix_rt::test]
async fn a_batch_applies_each_payments_events_in_arrival_order() {
    let h = harness(config());
    let invoice = h.open_invoice(3_000).await;
    let first = h.pay(invoice.id, Some(1_000)).await;
    let second = h.pay(invoice.id, Some(1_000)).await;
    let third = h.pay(invoice.id, Some(1_000)).await;
    let summary = h
        .engine
        .apply_gateway_events(
            h.tenant,
            vec![
                success("evt_gw_o1", first.id),
                failure("evt_gw_o2", second.id),
                failure("evt_gw_o3", first.id),
                success("evt_gw_o1", first.id),
                success("evt_gw_o4", PaymentId::new()),
                success("evt_gw_o5", second.id),
                failure("evt_gw_o6", third.id),
                success("evt_gw_o7", third.id),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            summary.received,
            summary.applied,
            summary.ignored,
            summary.duplicates,
            summary.rejected
        ),
        (8, 3, 3, 1, 1)
    );
    for (payment, expected) in [
        (first.id, PaymentStatus::Succeeded),
        (second.id, PaymentStatus::Failed),
        (third.id, PaymentStatus::Failed),
    ] {
        let stored = h.engine.payment(h.tenant, payment).await.unwrap();
        assert_eq!(stored.status, expected);
    }
    let paid = h.engine.invoice(h.tenant, invoice.id).await.unwrap();
    assert_eq!((paid.amount_paid, paid.amount_pending), (1_000, 0));
    h.check_log();
}

#[actix_rt::test]
async fn webhook_batches_are_admitted_by_weight() {
    let mut cfg = config();
    cfg.tenant_in_flight_max = 10;
    let h = harness(cfg);
    let batch = || {
        (0..8)
            .map(|i| success(&format!("evt_gw_w{i}"), PaymentId::new()))
            .collect::<Vec<_>>()
    };
    // Two batches of 8 events do not fit a budget of 10 at once: the second is shed.
    let (first, second) = futures::join!(
        h.engine.apply_gateway_events(h.tenant, batch()),
        h.engine.apply_gateway_events(h.tenant, batch())
    );
    assert_eq!(first.unwrap().received, 8);
    assert_eq!(second.unwrap_err(), EngineError::Overloaded);
    // Once the first is done its budget is back.
    assert!(h
        .engine
        .apply_gateway_events(h.tenant, batch())
        .await
        .is_ok());
}
