//! Refunds still pending are found in durable state, on both databases, and asked for again
//! until their outcome arrives.

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp};

#[actix_web::test]
async fn sqlite_pending_refunds_are_asked_for_again() {
    pending_refunds_are_asked_for_again(Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_pending_refunds_are_asked_for_again() {
    pending_refunds_are_asked_for_again(Backend::Postgres).await;
}

/// Sends one gateway outcome, signed, as the gateway would.
async fn outcome(app: &TestApp, secret: &str, event: Value) {
    let response = app.signed_webhook(&[secret], &event.to_string()).await;
    assert_eq!(response.status(), 200);
}

async fn pending_refunds_are_asked_for_again(backend: Backend) {
    // The simulator never answers by webhook here: each outcome is sent by hand, and the
    // sweep runs only when the test calls it.
    let app = spawn_app_with(backend, |s| {
        s.simulator.webhook_delay_min_ms = 600_000;
        s.simulator.webhook_delay_max_ms = 600_000;
        s.recovery_interval_secs = 0;
        s.recovery_min_age_secs = 0;
    })
    .await;
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    let payment = app.card_payment(&t.key, &invoice).await;
    let pid = payment["id"].as_str().unwrap();
    outcome(
        &app,
        &t.secret,
        json!({"id": "evt_gw_paid", "type": "payment.succeeded", "account": t.id,
               "data": {"paymentId": pid}}),
    )
    .await;
    let refund: Value = app
        .post(&format!("/api/payments/{pid}/refunds"), &t.key)
        .json(&json!({"amount": 400}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rid = refund["id"].as_str().unwrap();

    let store = &app._state.db;
    let pending = payrail_actors::ports::EventStore::refunds_awaiting_outcome(store, None, 10)
        .await
        .unwrap();
    let pending: Vec<String> = pending.iter().map(|(_, _, r)| r.to_string()).collect();
    assert_eq!(pending, [rid]);
    let engine = &app._state.engine;
    assert_eq!(engine.resubmit_pending_refunds().await.unwrap(), 1);

    outcome(
        &app,
        &t.secret,
        json!({"id": "evt_gw_refunded", "type": "refund.succeeded", "account": t.id,
               "data": {"paymentId": pid, "refundId": rid}}),
    )
    .await;
    let after = payrail_actors::ports::EventStore::refunds_awaiting_outcome(store, None, 10)
        .await
        .unwrap();
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(engine.resubmit_pending_refunds().await.unwrap(), 0);
}
