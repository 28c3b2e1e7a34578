//! The malformed-input sweep: every POST and PATCH that takes a body, fed truncated JSON, wrong
//! types, huge numbers, negative amounts, unknown fields and 2 MiB, answers a documented 4xx
//! problem (never a 5xx) and writes nothing.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{TestApp, ADMIN};

both_backends!(every_body_endpoint_refuses_bad_input_and_writes_nothing);

/// Everything a refused request could have changed, read back for comparison.
async fn snapshot(app: &TestApp, key: &str, draft: &str, payment: &str) -> Value {
    let get = |path: String, auth: &str| {
        let request = app.get(&path, auth);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    json!({
        "tenants": get("/api/tenants?pageSize=100".into(), ADMIN).await["totalItems"],
        "keys": get("/api/api-keys".into(), key).await["items"].as_array().unwrap().len(),
        "invoices": get("/api/invoices?pageSize=100".into(), key).await["totalItems"],
        "draft": get(format!("/api/invoices/{draft}"), key).await,
        "payments": get("/api/payments?pageSize=100".into(), key).await["totalItems"],
        "payment": get(format!("/api/payments/{payment}"), key).await,
        "events": get("/api/events?limit=100".into(), key).await["items"].as_array().unwrap().len(),
    })
}

async fn every_body_endpoint_refuses_bad_input_and_writes_nothing(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let draft = app.invoice(&t.key, 1_000, false).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let open = app.invoice(&t.key, 1_000, true).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pay = json!({"invoiceId": open, "amount": 1_000, "paymentMethod": {"type": "card", "token": "tok_visa"}});
    let payment: Value = app
        .post("/api/payments", &t.key)
        .json(&pay)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payment = payment["id"].as_str().unwrap().to_owned();
    app.eventually(&format!("/api/payments/{payment}"), &t.key, |v| {
        v["status"] == "succeeded"
    })
    .await;
    let before = snapshot(app, &t.key, &draft, &payment).await;

    let invoice = r#"{"customerName":"J","currency":"USD","lineItems":[{"description":"x","quantity":1,"unitAmount":1}]}"#;
    // (method, path, auth, a valid body, variants that must be refused)
    let endpoints: Vec<(&str, String, &str, String, Vec<String>)> = vec![
        (
            "POST",
            "/api/tenants".into(),
            ADMIN,
            r#"{"name":"N"}"#.into(),
            vec![r#"{"name": 5}"#.into(), r#"{"name": ""}"#.into()],
        ),
        (
            "POST",
            "/api/api-keys".into(),
            t.key.as_str(),
            r#"{"name":"k","role":"viewer"}"#.into(),
            vec![
                r#"{"name":"k","role":"root"}"#.into(),
                r#"{"name":["k"],"role":"viewer"}"#.into(),
            ],
        ),
        (
            "POST",
            "/api/invoices".into(),
            t.key.as_str(),
            invoice.into(),
            vec![
                invoice.replace("\"unitAmount\":1", "\"unitAmount\":-1"),
                invoice.replace("\"unitAmount\":1", "\"unitAmount\":99999999999999999999"),
                invoice.replace("\"quantity\":1", "\"quantity\":\"1\""),
                invoice.replace("\"USD\"", "\"usd\""),
            ],
        ),
        (
            "PATCH",
            format!("/api/invoices/{draft}"),
            t.key.as_str(),
            r#"{"customerName":"K"}"#.into(),
            vec![
                r#"{"taxRateBps": -1}"#.into(),
                r#"{"lineItems": []}"#.into(),
                r#"{"customerName": 1.5}"#.into(),
                r#"{"lineItems":[{"description":"x","quantity":1,"unitAmount":1e30}]}"#.into(),
            ],
        ),
        (
            "POST",
            "/api/payments".into(),
            t.key.as_str(),
            pay.to_string(),
            vec![
                pay.to_string().replace("1000", "-1000"),
                pay.to_string().replace("1000", "99999999999999999999"),
                pay.to_string().replace("\"tok_visa\"", "7"),
            ],
        ),
        (
            "POST",
            format!("/api/payments/{payment}/refunds"),
            t.key.as_str(),
            r#"{"amount":1}"#.into(),
            vec![
                r#"{"amount": -1}"#.into(),
                r#"{"amount": 1000000}"#.into(),
                r#"{"amount": "1"}"#.into(),
                r#"{"amount": 99999999999999999999}"#.into(),
            ],
        ),
        (
            "POST",
            "/api/webhooks/payments".into(),
            "",
            r#"{"account":"ten_x","events":[]}"#.into(),
            vec![r#"{"id": 1}"#.into(), r#"[]"#.into()],
        ),
    ];
    for (method, path, auth, valid, variants) in endpoints {
        let truncated = valid[..valid.len() / 2].to_owned();
        let unknown_field = format!("{{\"evil\":true,{}", &valid[1..]);
        let huge = format!("{{\"name\":\"{}\"}}", "a".repeat(2 * 1024 * 1024));
        let mut bodies = vec![
            truncated,
            unknown_field,
            huge,
            "null".to_owned(),
            String::new(),
        ];
        bodies.extend(variants);
        for body in bodies {
            let mut request = app
                .client
                .request(method.parse().unwrap(), format!("{}{path}", app.url))
                .header("content-type", "application/json")
                .body(body.clone());
            if !auth.is_empty() {
                request = request.bearer_auth(auth);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let shown = &body[..body.len().min(80)];
            assert!(
                matches!(status, 400 | 401 | 413 | 422),
                "{method} {path} with {shown}: {status}"
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{method} {path}"
            );
        }
    }
    assert_eq!(
        snapshot(app, &t.key, &draft, &payment).await,
        before,
        "refused requests must write nothing"
    );
}
