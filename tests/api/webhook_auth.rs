//! Who may post gateway webhooks: signatures (wrong secret, tampered body, stale or future
//! timestamp, another tenant's payment) are enforced, and an unauthenticated caller learns
//! nothing about which tenants exist, nor how the body would have been read.

use reqwest::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{problem, sign_all, TestApp};

both_backends!(
    webhook_signatures_are_enforced,
    unknown_and_known_accounts_are_refused_alike,
    the_signature_is_checked_before_the_events_are_read
);

async fn post(app: &TestApp, body: &str, signature: &str) -> Response {
    app.client
        .post(format!("{}/api/webhooks/payments", app.url))
        .header("content-type", "application/json")
        .header("Payrail-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Status, code and detail: the parts of a refusal a caller can compare.
async fn refusal(response: Response) -> (u16, Value, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["code"].clone(), body["detail"].clone())
}

fn event(account: &str) -> String {
    json!({"id": "evt_gw_probe", "type": "payment.succeeded", "account": account,
           "data": {"paymentId": "pay_01jd6x2c8ef9r4t7bq5n1k3h2m", "gatewayReference": "ch_1"}})
    .to_string()
}

async fn unknown_and_known_accounts_are_refused_alike(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let now = chrono::Utc::now().timestamp();
    let unknown = "ten_01jd6x2c8ef9r4t7bq5n1k3h2m";
    let mut answers = Vec::new();
    for account in [t.id.as_str(), unknown, "not-a-tenant-id"] {
        let body = event(account);
        let forged = sign_all(&["whsec_guess"], now, &body);
        answers.push(refusal(post(app, &body, &forged).await).await);
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].1, "invalid_signature");
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    // A stale timestamp is refused the same way whoever the account is.
    let mut stale = Vec::new();
    for account in [t.id.as_str(), unknown] {
        let body = event(account);
        stale.push(refusal(post(app, &body, &sign_all(&["x"], now - 3_600, &body)).await).await);
    }
    assert_eq!(stale[0].1, "stale_signature");
    assert_eq!(stale[0], stale[1]);
}

/// A forged request whose events are malformed gets the signature refusal, not a parse error
/// that would show the body was read.
async fn the_signature_is_checked_before_the_events_are_read(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let now = chrono::Utc::now().timestamp();
    let body = json!({"account": t.id, "events": "not a list"}).to_string();
    let forged = sign_all(&["whsec_guess"], now, &body);
    let (status, code, _) = refusal(post(app, &body, &forged).await).await;
    assert_eq!((status, code), (401, json!("invalid_signature")));
    // Signed for real, the same body is a 400.
    let signed = sign_all(&[&t.secret], now, &body);
    let (status, code, _) = refusal(post(app, &body, &signed).await).await;
    assert_eq!((status, code), (400, json!("invalid_request")));
}

fn sign(secret: &str, t: i64, body: &str) -> String {
    sign_all(&[secret], t, body)
}

async fn webhook_signatures_are_enforced(app: &TestApp) {
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    let invoice = app.invoice(&a.key, 100, true).await;
    let payment = app.card_payment(&a.key, &invoice).await;
    let pid = payment["id"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    let event = |account: &str, id: &str| {
        json!({"id": id, "type": "payment.failed", "account": account, "created": now,
        "data": {"paymentId": pid, "failureCode": "card_declined", "failureMessage": "no"}})
        .to_string()
    };
    let hook = |body: String, sig: Option<String>| {
        let mut req = app
            .client
            .post(format!("{}/api/webhooks/payments", app.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = sig {
            req = req.header("Payrail-Signature", sig);
        }
        req.send()
    };
    let body = event(&a.id, "evt_gw_t1");
    problem(
        hook(body.clone(), Some(sign("whsec_wrong", now, &body)))
            .await
            .unwrap(),
        401,
        "invalid_signature",
    )
    .await;
    problem(
        hook(body.clone(), None).await.unwrap(),
        401,
        "invalid_signature",
    )
    .await;
    problem(
        hook(
            body.replace("card_declined", "x"),
            Some(sign(&a.secret, now, &body)),
        )
        .await
        .unwrap(),
        401,
        "invalid_signature",
    )
    .await;
    problem(
        hook(
            body.clone(),
            Some(sign(&a.secret, chrono::Utc::now().timestamp() - 302, &body)),
        )
        .await
        .unwrap(),
        401,
        "stale_signature",
    )
    .await;
    problem(
        hook(
            body.clone(),
            Some(sign(&a.secret, chrono::Utc::now().timestamp() + 302, &body)),
        )
        .await
        .unwrap(),
        401,
        "stale_signature",
    )
    .await;
    // Tenant B signs validly but cannot touch A's payment.
    let foreign = event(&b.id, "evt_gw_t2");
    let response = hook(foreign.clone(), Some(sign(&b.secret, now, &foreign)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let counts: Value = response.json().await.unwrap();
    assert_eq!(
        (
            counts["received"].as_i64(),
            counts["rejected"].as_i64(),
            counts["applied"].as_i64()
        ),
        (Some(1), Some(1), Some(0))
    );
    let after = app
        .eventually(&format!("/api/payments/{pid}"), &a.key, |v| {
            v["status"] != "processing"
        })
        .await;
    assert_eq!(
        after["status"], "succeeded",
        "nothing from the refused webhooks was applied"
    );
    // A valid batch from A: the stale failure is ignored, its repeat a duplicate.
    let batch = json!({"account": a.id, "events": [serde_json::from_str::<Value>(&body).unwrap(), serde_json::from_str::<Value>(&body).unwrap()]}).to_string();
    let counts: Value = hook(batch.clone(), Some(sign(&a.secret, now, &batch)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (counts["ignored"].as_i64(), counts["duplicates"].as_i64()),
        (Some(1), Some(1))
    );
}
