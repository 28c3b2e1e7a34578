//! How a gateway webhook body is read: a batch (`account` and `events`) or one event. An event
//! the batch cannot read refuses the whole request with a 400 and nothing of it is recorded; a
//! body that is both a batch and an event is the batch, and one whose `events` are no batch is
//! read as the event it may be.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{Tenant, TestApp};

both_backends!(
    a_body_is_a_batch_or_one_event,
    events_that_name_nothing_known_are_rejected_one_by_one
);

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

/// A tenant and the id of a card payment of theirs that has succeeded.
async fn succeeded_payment(app: &TestApp) -> (Tenant, String) {
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 100, true).await;
    let payment = app.card_payment(&t.key, &invoice).await;
    let pid = payment["id"].as_str().unwrap().to_owned();
    app.eventually(&format!("/api/payments/{pid}"), &t.key, |v| {
        v["status"] == "succeeded"
    })
    .await;
    (t, pid)
}

async fn a_body_is_a_batch_or_one_event(app: &TestApp) {
    let (t, pid) = succeeded_payment(app).await;
    let pid = pid.as_str();
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

/// An event whose type, ids or currency name nothing Payrail knows is rejected on its own, and
/// the rest of its batch is read as usual; a field of the wrong JSON type refuses the whole
/// request.
async fn events_that_name_nothing_known_are_rejected_one_by_one(app: &TestApp) {
    let (t, pid) = succeeded_payment(app).await;
    let pid = pid.as_str();
    let event = |id: &str, kind: &str, data: Value| json!({"id": id, "type": kind, "data": data});
    let unknown = [
        event("evt_gw_u1", "payment.refunded", json!({"paymentId": pid})),
        event(
            "evt_gw_u2",
            "payment.failed",
            json!({"paymentId": "pay_nope"}),
        ),
        event(
            "evt_gw_u3",
            "payment.failed",
            json!({"paymentId": pid, "currency": "usd"}),
        ),
        event("evt_gw_u4", "refund.succeeded", json!({"paymentId": pid})),
        event(
            "evt_gw_u5",
            "refund.failed",
            json!({"paymentId": pid, "refundId": "re_x"}),
        ),
        event("evt_gw_u6", "payment.processing", json!({"paymentId": pid})),
        event("evt_gw_u7", "payment.failed", json!({})),
    ];
    // A failure after the success, with an escaped id and currency: read, and ignored.
    let escaped = format!(
        r#"{{"id":"evt_gw_u8","type":"payment.f\u0061iled","data":{{"paymentId":"{pid}","currency":"US\u0044"}}}}"#
    );
    let mut events: Vec<String> = unknown.iter().map(Value::to_string).collect();
    events.push(escaped);
    let body = format!(
        r#"{{"account":"{}","events":[{}]}}"#,
        t.id,
        events.join(",")
    );
    let response = app.signed_webhook(&[&t.secret], &body).await;
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(counts(&answer), [8, 0, 0, 1, 7], "{answer}");
    let payment: Value = app.get_json(&format!("/api/payments/{pid}"), &t.key).await;
    assert_eq!(payment["status"], "succeeded", "{payment}");

    for wrong in [
        json!({"paymentId": 7}),
        json!({"paymentId": pid, "currency": 840}),
        json!({"paymentId": pid, "refundId": ["re_x"]}),
    ] {
        let batch =
            json!({"account": t.id, "events": [event("evt_gw_w1", "payment.failed", wrong)]});
        let (status, problem) = post(app, &t.secret, &batch).await;
        assert_eq!(
            (status, &problem["code"]),
            (400, &json!("invalid_request")),
            "{problem}"
        );
    }
    let typed = json!({"account": t.id, "events": [
        {"id": "evt_gw_w2", "type": {"payment.failed": null}, "data": {"paymentId": pid}}]});
    let (status, problem) = post(app, &t.secret, &typed).await;
    assert_eq!(
        (status, &problem["code"]),
        (400, &json!("invalid_request")),
        "{problem}"
    );
}
