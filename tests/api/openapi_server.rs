//! The server accepts and refuses what the OpenAPI document says: a method the document does not
//! give a path answers 405 with `Allow`, and an integral JSON number is an integer wherever the
//! document declares one.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, Backend, TestApp, ADMIN};

const ALL_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"];

async fn document(app: &TestApp) -> Value {
    app.get_json("/api/openapi.json", ADMIN).await
}

/// A well-formed id for a templated path, so the path names a resource that could exist.
fn concrete(path: &str) -> String {
    let id = if path.starts_with("/api/tenants/") {
        "ten_01jd6x2c8ef9r4t7bq5n1k3h2m"
    } else if path.starts_with("/api/api-keys/") {
        "key_01jd6x2c8ef9r4t7bq5n1k3h2m"
    } else if path.starts_with("/api/payments/") {
        "pay_01jd6x2c8ef9r4t7bq5n1k3h2m"
    } else if path.starts_with("/api/webhook-endpoints/") {
        "we_01jd6x2c8ef9r4t7bq5n1k3h2m"
    } else if path.starts_with("/api/events/") {
        "evt_01jd6x2c8ef9r4t7bq5n1k3h2m"
    } else {
        "inv_01jd6x2c8ef9r4t7bq5n1k3h2m"
    };
    path.replace("{id}", id)
}

#[actix_web::test]
async fn openapi_undocumented_methods_answer_405_with_allow() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = document(&app).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let documented: Vec<String> = ALL_METHODS
            .iter()
            .filter(|m| item.get(m.to_lowercase()).is_some())
            .map(|m| m.to_string())
            .collect();
        assert!(!documented.is_empty(), "{path}");
        for method in ALL_METHODS {
            if documented.iter().any(|m| m == method) {
                continue;
            }
            let response = app
                .client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{}", app.url, concrete(path)),
                )
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            let allow = response
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = problem(response, 405, "method_not_allowed").await;
            assert_eq!(
                allow.as_deref(),
                Some(documented.join(", ").as_str()),
                "{method} {path}"
            );
            assert!(body["detail"].as_str().unwrap().contains(method));
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} method/path pairs checked");
}

#[actix_web::test]
async fn openapi_unknown_paths_and_malformed_ids_stay_404() {
    let app = spawn_app(Backend::Sqlite).await;
    for (method, path) in [
        (Method::DELETE, "/api/invoices/inv_nope"),
        (Method::PUT, "/api/payments/refunds"),
        (Method::POST, "/api/payments/inv_01jd6x2c8ef9r4t7bq5n1k3h2m"),
        (Method::GET, "/api/nothing-here"),
        (Method::TRACE, "/healthz/"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert!(response.headers().get("allow").is_none(), "{method} {path}");
        problem(response, 404, "not_found").await;
    }
}

/// `3.0` is the integer 3 (JSON Schema's reading); `3.5` is no integer and is refused.
#[actix_web::test]
async fn openapi_integral_numbers_are_integers() {
    let app = spawn_app(Backend::Sqlite).await;
    let t = app.tenant("Acme").await;
    let response = app
        .post("/api/invoices", &t.key)
        .json(&json!({
            "customerName": "Jane Doe", "currency": "USD", "taxRateBps": 1000.0, "finalize": true,
            "lineItems": [{"description": "Seat", "quantity": 3.0, "unitAmount": 1e3}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let invoice: Value = response.json().await.unwrap();
    assert_eq!(
        (&invoice["total"], &invoice["lineItems"][0]["quantity"]),
        (&json!(3300), &json!(3))
    );
    let id = invoice["id"].as_str().unwrap();
    let payment = app
        .post("/api/payments", &t.key)
        .json(&json!({"invoiceId": id, "amount": 300.0, "paymentMethod": {
            "type": "card", "number": "4242424242424242", "expMonth": 12.0, "expYear": 2040.0,
            "cvc": "123"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(payment.status(), 201);
    let payment: Value = payment.json().await.unwrap();
    assert_eq!(
        (&payment["amount"], &payment["paymentMethod"]["expMonth"]),
        (&json!(300), &json!(12))
    );
    for body in [
        json!({"customerName": "J", "currency": "USD",
               "lineItems": [{"description": "Seat", "quantity": 3.5, "unitAmount": 1000}]}),
        json!({"customerName": "J", "currency": "USD", "taxRateBps": 1e19,
               "lineItems": [{"description": "Seat", "quantity": 3, "unitAmount": 1000}]}),
    ] {
        let refused = app
            .post("/api/invoices", &t.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(refused, 400, "invalid_request").await;
    }
    let duplicate = app
        .post("/api/invoices", &t.key)
        .header("content-type", "application/json")
        .body(r#"{"customerName":"J","customerName":"K","currency":"USD","lineItems":[{"description":"S","quantity":1.0,"unitAmount":1}]}"#)
        .send()
        .await
        .unwrap();
    problem(duplicate, 400, "invalid_request").await;
    // Nothing of the refused requests was written.
    let page: Value = app.get_json("/api/invoices", &t.key).await;
    assert_eq!(page["totalItems"], 1);
}

/// U+0000 in request text is refused alike on both backends (PostgreSQL cannot store it), and
/// nothing is written.
async fn text_with_nul_is_refused(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let line = json!([{"description": "Seat", "quantity": 1, "unitAmount": 100}]);
    for body in [
        json!({"customerName": "Jane\u{0}", "currency": "USD", "lineItems": line}),
        json!({"customerName": "Jane", "currency": "USD", "lineItems": line,
               "metadata": {"order\u{0}": "42"}}),
    ] {
        let refused = app
            .post("/api/invoices", &t.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(refused, 400, "invalid_request").await;
    }
    let tenant = app
        .post("/api/tenants", ADMIN)
        .json(&json!({"name": "A\u{0}cme"}))
        .send()
        .await
        .unwrap();
    problem(tenant, 400, "invalid_request").await;
    for query in [
        "/api/invoices?customer=a%00b",
        "/api/events?subjectId=a%00b",
    ] {
        let refused = app.get(query, &t.key).send().await.unwrap();
        problem(refused, 400, "invalid_request").await;
    }
    let page: Value = app.get_json("/api/invoices", &t.key).await;
    assert_eq!(page["totalItems"], 0);
    let tenants: Value = app.get_json("/api/tenants", ADMIN).await;
    assert_eq!(tenants["totalItems"], 1);
}

mod nul {
    crate::both_backends!(text_with_nul_is_refused);
    use super::text_with_nul_is_refused;
}
