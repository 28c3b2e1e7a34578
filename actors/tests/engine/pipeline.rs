//! Pipelined entity actors: a hot entity puts many units in one batch, and a unit that fails in
//! the middle of a pipeline fails the units queued behind it, never a false success.

use payrail_actors::domain::{Invoice, InvoiceId, PaymentId};
use payrail_actors::engine::WebhookSummary;
use payrail_actors::EngineError;

use crate::success;
use crate::support::{harness, lingering_config, Harness};

/// Payments on one invoice.
const HOT_PAYMENTS: usize = 32;
const PAYMENT_AMOUNT: i64 = 100;

/// A harness whose writer waits a little before each batch, so units queued close together
/// share it: without pipelining an invoice could still put only one unit in each batch.
fn lingering() -> Harness {
    harness(lingering_config())
}

async fn hot_invoice(h: &Harness) -> (Invoice, Vec<PaymentId>) {
    let invoice = h.open_invoice(1_000_000).await;
    let attempts = (0..HOT_PAYMENTS).map(|_| h.pay(invoice.id, Some(PAYMENT_AMOUNT)));
    let payments = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    (invoice, payments)
}

/// Each payment's success in a request of its own, all at once.
async fn settle_all(
    h: &Harness,
    payments: &[PaymentId],
    tag: &str,
) -> Vec<Result<WebhookSummary, EngineError>> {
    let runs = payments.iter().map(|p| {
        let event = success(&format!("evt_{tag}_{p}"), *p);
        h.engine.apply_gateway_events(h.tenant, vec![event])
    });
    futures::future::join_all(runs).await
}

async fn amount_paid(h: &Harness, invoice: InvoiceId) -> i64 {
    h.engine
        .invoice(h.tenant, invoice)
        .await
        .unwrap()
        .amount_paid
}

#[actix_rt::test]
async fn a_hot_invoice_puts_many_units_in_one_batch() {
    let h = lingering();
    let (invoice, payments) = hot_invoice(&h).await;
    let before = h.store.batches_committed();
    let results = settle_all(&h, &payments, "ok").await;
    assert!(results.iter().all(|r| r.as_ref().unwrap().applied == 1));
    let batches = h.store.batches_committed() - before;
    assert!(
        batches <= HOT_PAYMENTS / 4,
        "{HOT_PAYMENTS} settlements of one invoice took {batches} batches"
    );
    let paid = amount_paid(&h, invoice.id).await;
    assert_eq!(paid, HOT_PAYMENTS as i64 * PAYMENT_AMOUNT);
    h.check_log();
}

#[actix_rt::test]
async fn a_failed_unit_fences_the_units_queued_behind_it() {
    let h = lingering();
    let (invoice, payments) = hot_invoice(&h).await;
    // The fourth unit of the next batch fails; the invoice's later units were decided on top
    // of it and must fail with it. The engine decides the fenced events again on the reloaded
    // state, so some requests may still succeed: whatever each caller heard must be durable.
    h.store.fail_unit_of_next_batch(3);
    let results = settle_all(&h, &payments, "first").await;
    assert!(
        !h.store.unit_fault_armed(),
        "the injected failure hit nobody"
    );
    let applied = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|s| s.applied == 1))
        .count();
    assert!(results.iter().flatten().all(|s| s.applied == 1));
    // No false success: exactly what was acknowledged is durable, and nothing else.
    let durable_paid = h
        .store
        .invoice_snapshot(h.tenant, invoice.id)
        .unwrap()
        .amount_paid;
    assert_eq!(durable_paid, applied as i64 * PAYMENT_AMOUNT);
    assert_eq!(amount_paid(&h, invoice.id).await, durable_paid);
    h.check_log();

    // The actors reloaded: re-sent, the failed ones apply and the rest are duplicates.
    let results = settle_all(&h, &payments, "first").await;
    let summaries: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        summaries.iter().map(|s| s.applied).sum::<usize>(),
        HOT_PAYMENTS - applied
    );
    assert_eq!(
        summaries.iter().map(|s| s.duplicates).sum::<usize>(),
        applied
    );
    let paid = amount_paid(&h, invoice.id).await;
    assert_eq!(paid, HOT_PAYMENTS as i64 * PAYMENT_AMOUNT);
    h.check_log();
}

#[actix_rt::test]
async fn an_unknown_outcome_mid_pipeline_reloads_the_durable_truth() {
    let h = lingering();
    let (invoice, payments) = hot_invoice(&h).await;
    // The batch commits but every caller hears "unknown": none may be told it succeeded.
    h.store.lose_next_replies(1);
    let results = settle_all(&h, &payments, "lost").await;
    assert!(results.iter().any(Result::is_err));
    let acknowledged = results.iter().filter(|r| r.is_ok()).count();
    let durable_paid = h
        .store
        .invoice_snapshot(h.tenant, invoice.id)
        .unwrap()
        .amount_paid;
    assert!(durable_paid >= acknowledged as i64 * PAYMENT_AMOUNT);
    // The actors reloaded what is durable, and a re-delivery applies only what is missing.
    assert_eq!(amount_paid(&h, invoice.id).await, durable_paid);
    let results = settle_all(&h, &payments, "lost").await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        amount_paid(&h, invoice.id).await,
        HOT_PAYMENTS as i64 * PAYMENT_AMOUNT
    );
    h.check_log();
}

#[actix_rt::test]
async fn a_duplicate_is_not_acknowledged_before_its_original_is_durable() {
    let h = lingering();
    let invoice = h.open_invoice(1_000).await;
    let payment = h.pay(invoice.id, Some(PAYMENT_AMOUNT)).await;
    let event = || success("evt_once", payment.id);
    // The original and its duplicate arrive together; the original's batch then fails.
    h.store.fail_next_batches(1);
    let (first, second) = futures::join!(
        h.engine.apply_gateway_events(h.tenant, vec![event()]),
        h.engine.apply_gateway_events(h.tenant, vec![event()]),
    );
    assert!(
        first.is_err() && second.is_err(),
        "nothing is durable, so neither delivery may be acknowledged: {first:?} {second:?}"
    );
    assert_eq!(amount_paid(&h, invoice.id).await, 0);
    // The gateway retries and the event applies once.
    let retried = h
        .engine
        .apply_gateway_events(h.tenant, vec![event()])
        .await
        .unwrap();
    assert_eq!(retried.applied, 1);
    assert_eq!(amount_paid(&h, invoice.id).await, PAYMENT_AMOUNT);
    h.check_log();
}
