//! How a gateway webhook body is read: a batch (`account` and `events`) or one event. An event
//! the batch cannot read refuses the whole request with a 400 and nothing of it is recorded; a
//! body that is both a batch and an event is the batch, and one whose `events` are no batch is
//! read as the event it may be.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(a_body_is_a_batch_or_one_event);

async fn post(app: &TestApp, secret: &str, body: &Value) -> (u16, Value) {
    let response = app.signed_webhook(&[secret], &body.to_string()).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// `(received, applied, duplicates, ignored, rejected)` of a 200 answer.
fn counts(answer: &Value) -> [i64; 5] {
    ["received", "applied", "duplicates", "ignored", "rejected"]
        .map(|k| answer[k].as_i64().unwrap_or(-1))
}

async fn a_body_is_a_batch_or_one_event(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 100, true).await;
    let payment = app.card_payment(&t.key, &invoice).await;
    let pid = payment["id"].as_str().unwrap();
    app.eventually(&format!("/api/payments/{pid}"), &t.key, |v| {
        v["status"] == "succeeded"
    })
    .await;
    // Every event below is a failure after the success: valid, and ignored once read.
    let failed = |id: &str| {
        json!({"id": id, "type": "payment.failed", "account": t.id,
               "data": {"paymentId": pid, "failureCode": "card_declined"}})
    };
    let unreadable = json!({"id": "evt_gw_b2", "type": "payment.failed",
                            "data": {"paymentId": pid, "amount": "ten"}});
    let (status, problem) = post(
        app,
        &t.secret,
        &json!({"account": t.id, "events": [failed("evt_gw_b1"), unreadable]}),
    )
    .await;
    assert_eq!((status, &problem["code"]), (400, &json!("invalid_request")));
    // The refused batch recorded nothing: its readable event is new to a later request.
    let (status, answer) = post(app, &t.secret, &failed("evt_gw_b1")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(counts(&answer), [1, 0, 0, 1, 0], "{answer}");
    let (_, answer) = post(app, &t.secret, &failed("evt_gw_b1")).await;
    assert_eq!(counts(&answer), [1, 0, 1, 0, 0], "{answer}");
    // With `events`, the top-level event fields are not an event of their own.
    let mut both = failed("evt_gw_b3");
    both["events"] = json!([failed("evt_gw_b4"), failed("evt_gw_b1")]);
    let (status, answer) = post(app, &t.secret, &both).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(counts(&answer), [2, 0, 1, 1, 0], "{answer}");
    let (_, answer) = post(app, &t.secret, &failed("evt_gw_b3")).await;
    assert_eq!(counts(&answer), [1, 0, 0, 1, 0], "{answer}");
    // `events` that are no batch leave a body that is one event with an extra field.
    let mut single = failed("evt_gw_b7");
    single["events"] = json!([{"data": {"paymentId": pid}}]);
    let (status, answer) = post(app, &t.secret, &single).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(counts(&answer), [1, 0, 0, 1, 0], "{answer}");
    // A batch naming another account in one of its events rejects that event only.
    let mut foreign = failed("evt_gw_b5");
    foreign["account"] = json!("ten_01jd6x2c8ef9r4t7bq5n1k3h2m");
    let (_, answer) = post(
        app,
        &t.secret,
        &json!({"account": t.id, "events": [foreign, failed("evt_gw_b6")]}),
    )
    .await;
    assert_eq!(counts(&answer), [2, 0, 0, 1, 1], "{answer}");
}
