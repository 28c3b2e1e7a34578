//! The HTTP API end to end: the real server, real storage on both backends, the built-in
//! gateway simulator sending signed webhooks over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

use helpers::{problem, TestApp};
use serde_json::{json, Value};

both_backends!(
    pays_an_invoice_and_shows_the_timeline,
    declined_and_late_failing_cards,
    idempotency_replays_and_refuses_reuse,
    malformed_input_is_refused_and_writes_nothing,
    lists_paginate_and_filter,
    refunds_reach_the_invoice,
    racing_payments_collect_once,
);

async fn pays_an_invoice_and_shows_the_timeline(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    assert_eq!(invoice["number"], "INV-000001");
    assert_eq!(
        (invoice["total"].as_i64(), invoice["status"].as_str()),
        (Some(3_300), Some("open"))
    );
    let id = invoice["id"].as_str().unwrap();
    let partial = app.pay(&t.key, id, "4242424242424242", Some(1_300)).await;
    assert_eq!(partial.status(), 201);
    let rest = app.pay(&t.key, id, "4242424242424242", None).await;
    assert_eq!(rest.status(), 201);
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["amount"], 2_000);
    assert_eq!(rest["paymentMethod"]["last4"], "4242");
    let paid = app
        .eventually(&format!("/api/invoices/{id}"), &t.key, |v| {
            v["status"] == "paid"
        })
        .await;
    assert_eq!(
        (
            paid["amountPaid"].as_i64(),
            paid["amountRemaining"].as_i64()
        ),
        (Some(3_300), Some(0))
    );
    let timeline: Vec<Value> = app
        .get_json(&format!("/api/invoices/{id}/timeline"), &t.key)
        .await;
    let types: Vec<&str> = timeline
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"invoice.created"));
    assert_eq!(types.last(), Some(&"invoice.paid"));
    assert_eq!(
        types.iter().filter(|t| **t == "payment.succeeded").count(),
        2
    );
    let sequences: Vec<i64> = timeline
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "timeline must be oldest first"
    );
    // The card number is never returned or stored in events.
    assert!(!serde_json::to_string(&timeline)
        .unwrap()
        .contains("4242424242424242"));
}

async fn declined_and_late_failing_cards(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    let id = invoice["id"].as_str().unwrap();
    for (card, code) in [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
    ] {
        let payment: Value = app.pay(&t.key, id, card, None).await.json().await.unwrap();
        let pid = payment["id"].as_str().unwrap();
        let failed = app
            .eventually(&format!("/api/payments/{pid}"), &t.key, |v| {
                v["status"] == "failed"
            })
            .await;
        assert_eq!(failed["failureCode"], code);
    }
    let reopened: Value = app.get_json(&format!("/api/invoices/{id}"), &t.key).await;
    assert_eq!(reopened["amountPending"], 0);
    let late: Value = app
        .pay(&t.key, id, "4000000000000259", None)
        .await
        .json()
        .await
        .unwrap();
    let pid = late["id"].as_str().unwrap();
    app.eventually(&format!("/api/payments/{pid}"), &t.key, |v| {
        v["status"] == "succeeded"
    })
    .await;
    // The stale failure arrives later and must be ignored.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let after: Value = app.get_json(&format!("/api/payments/{pid}"), &t.key).await;
    assert_eq!(after["status"], "succeeded");
    let invoice: Value = app.get_json(&format!("/api/invoices/{id}"), &t.key).await;
    assert_eq!(invoice["status"], "paid");
}

async fn idempotency_replays_and_refuses_reuse(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let body = json!({"customerName": "Jane", "currency": "USD", "lineItems": [{"description": "x", "quantity": 1, "unitAmount": 10}]});
    let first = app
        .post("/api/invoices", &t.key)
        .header("Idempotency-Key", "abc")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = app
        .post("/api/invoices", &t.key)
        .header("Idempotency-Key", "abc")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    let other = json!({"customerName": "John", "currency": "USD", "lineItems": [{"description": "x", "quantity": 1, "unitAmount": 10}]});
    let reused = app
        .post("/api/invoices", &t.key)
        .header("Idempotency-Key", "abc")
        .json(&other)
        .send()
        .await
        .unwrap();
    problem(reused, 422, "idempotency_key_reused").await;
    let bad = app
        .post("/api/invoices", &t.key)
        .header("Idempotency-Key", "")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(bad, 400, "invalid_request").await;
    let listed: Value = app.get_json("/api/invoices", &t.key).await;
    assert_eq!(listed["totalItems"], 1);
    // Concurrent requests under one key: exactly one effect.
    let runs = (0..10).map(|_| {
        app.post("/api/invoices", &t.key)
            .header("Idempotency-Key", "par")
            .json(&body)
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let listed: Value = app.get_json("/api/invoices", &t.key).await;
    assert_eq!(listed["totalItems"], 2);
}

async fn malformed_input_is_refused_and_writes_nothing(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let send = |body: String| {
        app.post("/api/invoices", &t.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    problem(
        send("{\"customerName\": \"J".into()).await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    problem(
        send("{\"customerName\": 5, \"currency\": \"USD\", \"lineItems\": []}".into())
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let unknown = json!({"customerName": "J", "currency": "USD", "lineItems": [{"description": "x", "quantity": 1, "unitAmount": 1}], "evil": true});
    problem(
        send(unknown.to_string()).await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let negative = json!({"customerName": "J", "currency": "USD", "lineItems": [{"description": "x", "quantity": 1, "unitAmount": -5}]});
    let body = problem(
        send(negative.to_string()).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "lineItems[0].unitAmount");
    let huge = json!({"customerName": "J", "currency": "USD", "lineItems": [{"description": "x", "quantity": 2, "unitAmount": i64::MAX}]});
    problem(
        send(huge.to_string()).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    problem(
        send("{\"customerName\": 99999999999999999999999}".into())
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let big = format!("{{\"customerName\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    problem(send(big).await.unwrap(), 413, "payload_too_large").await;
    let invoice = app.invoice(&t.key, 100, true).await;
    let id = invoice["id"].as_str().unwrap();
    let pay = app.post("/api/payments", &t.key).json(&json!({"invoiceId": id, "amount": -1, "paymentMethod": {"type": "card", "token": "tok_visa"}})).send().await.unwrap();
    problem(pay, 422, "validation_failed").await;
    let luhn = app.pay(&t.key, id, "4242424242424241", None).await;
    problem(luhn, 422, "validation_failed").await;
    let over = app
        .pay(&t.key, id, "4242424242424242", Some(1_000_000))
        .await;
    problem(over, 422, "amount_exceeds_remaining").await;
    let listed: Value = app.get_json("/api/invoices", &t.key).await;
    assert_eq!(
        listed["totalItems"], 1,
        "refused requests must write nothing"
    );
    let payments: Value = app.get_json("/api/payments", &t.key).await;
    assert_eq!(payments["totalItems"], 0);
    problem(
        app.get("/api/invoices?pageSize=0", &t.key)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    problem(
        app.get("/api/invoices?status=weird", &t.key)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
}

async fn lists_paginate_and_filter(app: &TestApp) {
    let t = app.tenant("Acme").await;
    for i in 0..12 {
        app.invoice(&t.key, 100 + i, i % 3 == 0).await;
    }
    let page: Value = app
        .get_json("/api/invoices?page=3&pageSize=5", &t.key)
        .await;
    assert_eq!(
        (page["totalItems"].as_i64(), page["totalPages"].as_i64()),
        (Some(12), Some(3))
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let empty: Value = app
        .get_json("/api/invoices?page=9&pageSize=5", &t.key)
        .await;
    assert_eq!(empty["items"].as_array().unwrap().len(), 0);
    let open: Value = app
        .get_json("/api/invoices?status=open&pageSize=100", &t.key)
        .await;
    assert_eq!(open["totalItems"], 4);
    let by_total: Value = app
        .get_json(
            "/api/invoices?sort=total&minTotal=340&maxTotal=350&pageSize=100",
            &t.key,
        )
        .await;
    let totals: Vec<i64> = by_total["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["total"].as_i64().unwrap())
        .collect();
    assert!(
        !totals.is_empty()
            && totals.windows(2).all(|w| w[0] <= w[1])
            && totals.iter().all(|t| (340..=350).contains(t)),
        "{totals:?}"
    );
    let combined: Value = app
        .get_json(
            "/api/invoices?status=draft&customer=JANE&currency=USD&pageSize=100",
            &t.key,
        )
        .await;
    assert_eq!(combined["totalItems"], 8);
    // Cursor mode walks every invoice exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/invoices?limit=5&startingAfter={c}"),
            None => "/api/invoices?limit=5".into(),
        };
        let page: Value = app.get_json(&path, &t.key).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        if page["hasMore"] != true {
            break;
        }
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (12, 12));
    let events: Value = app
        .get_json("/api/events?type=invoice.created&limit=5", &t.key)
        .await;
    assert_eq!(events["items"].as_array().unwrap().len(), 5);
    assert_eq!(events["hasMore"], true);
}

async fn refunds_reach_the_invoice(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    let id = invoice["id"].as_str().unwrap();
    let payment: Value = app
        .pay(&t.key, id, "4242424242424242", None)
        .await
        .json()
        .await
        .unwrap();
    let pid = payment["id"].as_str().unwrap();
    app.eventually(&format!("/api/payments/{pid}"), &t.key, |v| {
        v["status"] == "succeeded"
    })
    .await;
    let refund = app
        .post(&format!("/api/payments/{pid}/refunds"), &t.key)
        .json(&json!({"amount": 1_000, "reason": "requested_by_customer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refund.status(), 201);
    let refund: Value = refund.json().await.unwrap();
    assert_eq!(refund["status"], "pending");
    let over = app
        .post(&format!("/api/payments/{pid}/refunds"), &t.key)
        .json(&json!({"amount": 2_301}))
        .send()
        .await
        .unwrap();
    problem(over, 422, "refund_exceeds_captured").await;
    let after = app
        .eventually(&format!("/api/payments/{pid}"), &t.key, |v| {
            v["status"] == "partially_refunded"
        })
        .await;
    assert_eq!(after["amountRefunded"], 1_000);
    let invoice = app
        .eventually(&format!("/api/invoices/{id}"), &t.key, |v| {
            v["amountRefunded"] == 1_000
        })
        .await;
    assert_eq!(invoice["status"], "paid");
    let timeline: Vec<Value> = app
        .get_json(&format!("/api/payments/{pid}/timeline"), &t.key)
        .await;
    let types: Vec<&str> = timeline
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"refund.created") && types.contains(&"refund.succeeded"),
        "{types:?}"
    );
}

async fn racing_payments_collect_once(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    let id = invoice["id"].as_str().unwrap();
    let runs = (0..6).map(|_| app.pay(&t.key, id, "4242424242424242", Some(3_300)));
    let statuses: Vec<u16> = futures::future::join_all(runs)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s == 201 || *s == 422));
}

mod process;
mod process_gateway;
mod shutdown;

#[actix_web::test]
async fn sqlite_crash_safety_under_kill_9() {
    process::crash_safety(helpers::Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_crash_safety_under_kill_9() {
    process::crash_safety(helpers::Backend::Postgres).await;
}

#[actix_web::test]
async fn sqlite_sigterm_drains_and_exits_zero() {
    shutdown::sigterm_drains(helpers::Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_sigterm_drains_and_exits_zero() {
    shutdown::sigterm_drains(helpers::Backend::Postgres).await;
}

#[actix_web::test]
async fn sqlite_sigterm_commits_what_departed_callers_left() {
    shutdown::sigterm_commits_what_departed_callers_left(helpers::Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_sigterm_commits_what_departed_callers_left() {
    shutdown::sigterm_commits_what_departed_callers_left(helpers::Backend::Postgres).await;
}

#[actix_web::test]
async fn secrets_never_reach_the_logs() {
    process::secrets_stay_out_of_logs().await;
}

mod hot_crash;

#[actix_web::test]
async fn sqlite_hot_invoice_survives_kill_9() {
    hot_crash::hot_invoice_crash_safety(helpers::Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_hot_invoice_survives_kill_9() {
    hot_crash::hot_invoice_crash_safety(helpers::Backend::Postgres).await;
}

mod gateway;
mod gateway_tls;

#[actix_web::test]
async fn sqlite_delivery_chaos_over_1000_payments() {
    gateway::chaos(helpers::Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_delivery_chaos_over_1000_payments() {
    gateway::chaos(helpers::Backend::Postgres).await;
}

#[actix_web::test]
async fn sqlite_gateway_down_then_back() {
    gateway::gateway_down_then_back(helpers::Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_gateway_down_then_back() {
    gateway::gateway_down_then_back(helpers::Backend::Postgres).await;
}

#[actix_web::test]
async fn sqlite_disconnects_strand_nothing() {
    gateway::disconnects_strand_nothing(helpers::Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_disconnects_strand_nothing() {
    gateway::disconnects_strand_nothing(helpers::Backend::Postgres).await;
}

#[actix_web::test]
async fn sqlite_crash_between_commit_and_charge() {
    process_gateway::crash_between_commit_and_charge(helpers::Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_crash_between_commit_and_charge() {
    process_gateway::crash_between_commit_and_charge(helpers::Backend::Postgres).await;
}

mod storage;

#[actix_web::test]
async fn postgres_stale_writer_gets_a_conflict() {
    storage::stale_writer_gets_a_conflict().await;
}

#[actix_web::test]
async fn postgres_one_idempotency_key_across_two_nodes() {
    storage::one_idempotency_key_across_two_nodes().await;
}

#[actix_web::test]
async fn postgres_stale_node_applies_a_webhook_after_reloading() {
    storage::a_stale_node_applies_a_webhook_after_reloading().await;
}

#[actix_web::test]
async fn standalone_gateway_process_completes_payments() {
    process_gateway::standalone_gateway().await;
}

mod abuse;
mod admin_idempotency;
mod card_data;
mod console;
mod events;
mod frozen_storage;
mod invoices;
mod isolation;
mod malformed;
mod metrics_labels;
mod openapi;
mod openapi_server;
mod openapi_tools;
mod outbound;
mod outbound_crash;
mod outbound_lease;
mod outbound_policy;
mod outbound_rebinding;
mod outbound_receiver;
mod outbound_rounds;
mod outbound_ssrf;
mod rate_limits;
mod refund_recovery;
mod requests;
mod schemathesis_report;
mod secrets_at_rest;
mod sse;
mod stream;
mod tenants;
mod webhook_auth;
mod webhook_bodies;
