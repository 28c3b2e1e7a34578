//! Card data never leaves the request it came in: not in an error answer, whatever the shape of
//! the input, and fingerprints that identify a card only within one tenant.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{problem, TestApp};

both_backends!(malformed_card_fields_are_not_echoed);

const NUMBER: &str = "4242424242424242";

/// The problem without its random `requestId`, whose hex digits could hold any short number.
fn client_visible(mut problem: Value) -> String {
    problem["requestId"] = Value::Null;
    problem.to_string()
}
const CVC: &str = "737";

/// Every way a card field can have the wrong shape: the 400 names the problem, never the value.
async fn malformed_card_fields_are_not_echoed(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    let id = invoice["id"].as_str().unwrap();
    let card = |number: Value, cvc: Value| {
        json!({"invoiceId": id, "paymentMethod": {"type": "card", "number": number,
               "expMonth": 12, "expYear": 2030, "cvc": cvc}})
    };
    let number: u64 = NUMBER.parse().unwrap();
    let cvc: u64 = CVC.parse().unwrap();
    let bodies = [
        card(json!(number), json!(CVC)),
        card(json!(NUMBER), json!(cvc)),
        card(json!(number as f64), json!(cvc)),
        card(json!([NUMBER]), json!({"cvc": CVC})),
        card(json!({ NUMBER: CVC }), json!(CVC)),
        json!({"invoiceId": id, "paymentMethod": {"type": "card", "number": NUMBER,
               "expMonth": NUMBER, "expYear": CVC, "cvc": CVC}}),
        json!({"invoiceId": id, "paymentMethod": {"type": NUMBER, "number": NUMBER, "cvc": CVC}}),
        json!({"invoiceId": id, "paymentMethod": {"type": "card", NUMBER: CVC}}),
        json!({"invoiceId": id, "paymentMethod": {"type": "card", "number": NUMBER,
               "expMonth": 12, "expYear": 2030, "cvc": CVC, "pin": CVC}}),
    ];
    for body in bodies {
        let response = app
            .post("/api/payments", &t.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        // Some shapes parse and fail validation instead (422): the same rule holds.
        let (status, code) = match response.status().as_u16() {
            422 => (422, "validation_failed"),
            _ => (400, "invalid_request"),
        };
        let text = client_visible(problem(response, status, code).await);
        for secret in [NUMBER, CVC, "424242"] {
            assert!(!text.contains(secret), "{secret} echoed for {body}: {text}");
        }
    }
    // A body cut off in the middle of the number is a syntax error: no echo either.
    let cut = format!(r#"{{"invoiceId":"{id}","paymentMethod":{{"type":"card","number":"{NUMBER}"#);
    let response = app
        .post("/api/payments", &t.key)
        .header("content-type", "application/json")
        .body(cut)
        .send()
        .await
        .unwrap();
    let text = client_visible(problem(response, 400, "invalid_json").await);
    assert!(!text.contains(NUMBER) && !text.contains("424242"), "{text}");
}
