//! Payments through the gateway simulator under chaos: every webhook delivered three times,
//! reordered and concurrently over 1,000 payments; the gateway down while payments are
//! submitted; clients dropping their connections mid-request.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use payrail::gateway::{start_simulator, SimulatorConfig};
use payrail_actors::domain::TenantId;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Backend, TestApp};

const PAYMENTS: usize = 1_000;
const PAYMENTS_PER_INVOICE: usize = 4;

fn card_for(i: usize) -> &'static str {
    match i % 4 {
        0 => "4000000000000002",
        1 => "4000000000000259",
        _ => "4242424242424242",
    }
}

/// Every payment of the tenant, all pages.
async fn all_payments(app: &TestApp, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let body: Value = app
            .get_json(&format!("/api/payments?page={page}&pageSize=100"), key)
            .await;
        let items = body["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        out.extend(items);
    }
    out
}

async fn wait_settled(app: &TestApp, key: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let body: Value = app
            .get_json("/api/payments?status=processing&pageSize=1", key)
            .await;
        if body["totalItems"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "payments still processing: {}",
            body["totalItems"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn chaos(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.simulator = SimulatorConfig {
            duplicate_rate: 1.0,
            duplicate_copies: 2,
            reorder_window: 16,
            webhook_delay_max_ms: 40,
            late_failure_delay_ms: 50,
            seed: 42,
            ..SimulatorConfig::default()
        };
    })
    .await;
    let t = app.tenant("Acme").await;
    let mut invoices = Vec::new();
    for _ in 0..PAYMENTS / PAYMENTS_PER_INVOICE {
        invoices.push(
            app.invoice(&t.key, 1_000, true).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // 3,300 per invoice in four payments of 825.
    let submissions = (0..PAYMENTS).map(|i| {
        let invoice = invoices[i / PAYMENTS_PER_INVOICE].clone();
        let (app, key) = (&app, &t.key);
        async move {
            let response = app.pay(key, &invoice, card_for(i), Some(825)).await;
            assert_eq!(response.status(), 201);
            let payment: Value = response.json().await.unwrap();
            (payment["id"].as_str().unwrap().to_owned(), i)
        }
    });
    let card_of: HashMap<String, usize> = futures::stream::iter(submissions)
        .buffer_unordered(16)
        .collect()
        .await;
    wait_settled(&app, &t.key, Duration::from_secs(120)).await;
    // Late stale failures follow the successes. `wait_idle` returns once every scheduled
    // delivery, late ones and copies included, has been answered by the engine, so what
    // follows judges the state after them, not after a guess at how long they take.
    let simulator = app.simulator.as_ref().unwrap();
    assert!(simulator.wait_idle(Duration::from_secs(30)).await);
    assert_eq!(
        simulator.stats().webhooks_given_up,
        0,
        "a webhook was never answered"
    );

    let payments = all_payments(&app, &t.key).await;
    assert_eq!(payments.len(), PAYMENTS);
    let mut paid_per_invoice: HashMap<String, i64> = HashMap::new();
    for p in &payments {
        // Every charge the gateway created for the payment, under whatever key.
        assert_eq!(
            simulator.charges_for_payment(p["id"].as_str().unwrap()),
            1,
            "payment {} charged more or less than once",
            p["id"]
        );
        let i = card_of[p["id"].as_str().unwrap()];
        let expected = if i.is_multiple_of(4) {
            "failed"
        } else {
            "succeeded"
        };
        assert_eq!(p["status"], expected, "payment {i} with {}", card_for(i));
        if expected == "succeeded" {
            *paid_per_invoice
                .entry(p["invoiceId"].as_str().unwrap().to_owned())
                .or_default() += 825;
        } else {
            assert_eq!(p["failureCode"], "card_declined");
        }
    }
    for id in &invoices {
        let inv: Value = app.get_json(&format!("/api/invoices/{id}"), &t.key).await;
        let paid = paid_per_invoice.get(id).copied().unwrap_or(0);
        assert_eq!(inv["amountPaid"], paid);
        assert_eq!(inv["amountPending"], 0);
        assert!(inv["amountPaid"].as_i64().unwrap() <= inv["total"].as_i64().unwrap());
        assert_eq!(inv["status"] == "paid", paid == 3_300);
    }
    // Each gateway event applied once; each payment has exactly one event per state change.
    let tenant: TenantId = t.id.parse().unwrap();
    let db = &app._state.db;
    let mut gateway_ids = HashSet::new();
    let mut per_stream: HashMap<String, Vec<&'static str>> = HashMap::new();
    let mut after = None;
    loop {
        let page = db
            .list_events(tenant, None, None, 100, after)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.sequence);
        for stored in page {
            if let Some(id) = &stored.event.gateway_event_id {
                assert!(
                    gateway_ids.insert(id.clone()),
                    "gateway event {id} applied twice"
                );
            }
            per_stream
                .entry(stored.event.stream.to_string())
                .or_default()
                .push(stored.event.event_type());
        }
    }
    for p in &payments {
        let types = &per_stream[p["id"].as_str().unwrap()];
        let outcome = if p["status"] == "succeeded" {
            "payment.succeeded"
        } else {
            "payment.failed"
        };
        // A `payment.processing` reordered behind the outcome is stale and ignored: then the
        // payment goes straight to its outcome. Never twice, never backwards.
        let in_order = vec!["payment.attempted", "payment.processing", outcome];
        let overtaken = vec!["payment.attempted", outcome];
        assert!(
            types == &in_order || types == &overtaken,
            "{}: {types:?}",
            p["id"]
        );
    }
    let duplicates = app
        ._state
        .engine
        .metrics()
        .webhook_duplicates
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        duplicates >= PAYMENTS as u64,
        "three deliveries per event must show as duplicates ({duplicates})"
    );
}

pub async fn gateway_down_then_back(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let simulator = start_simulator(&bind, SimulatorConfig::default())
        .await
        .unwrap();
    let app = spawn_app_with(backend, |s| s.gateway_url = Some(format!("http://{bind}"))).await;
    let t = app.tenant("Acme").await;
    simulator.stop().await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    let id = invoice["id"].as_str().unwrap();
    let mut payments = Vec::new();
    for _ in 0..3 {
        let response = app.pay(&t.key, id, "4242424242424242", Some(1_000)).await;
        assert_eq!(response.status(), 201);
        payments.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Not a fixed wait: the engine has tried each charge and retried it before we judge.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.metric("payrail_gateway_retries_total").await < payments.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine never retried the charges"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in &payments {
        let payment: Value = app.get_json(&format!("/api/payments/{p}"), &t.key).await;
        assert_eq!(
            payment["status"], "processing",
            "never failed without the gateway saying so"
        );
    }
    // The gateway comes back knowing nothing: the engine's retries meet `unknown_account`,
    // register the account again by themselves, and complete every payment.
    let simulator = start_simulator(&bind, SimulatorConfig::default())
        .await
        .unwrap();
    for p in &payments {
        app.eventually(&format!("/api/payments/{p}"), &t.key, |v| {
            v["status"] == "succeeded"
        })
        .await;
        assert_eq!(simulator.charges_for_payment(p), 1);
    }
    let inv: Value = app.get_json(&format!("/api/invoices/{id}"), &t.key).await;
    assert_eq!(
        (inv["amountPaid"].as_i64(), inv["amountPending"].as_i64()),
        (Some(3_000), Some(0))
    );
}

pub async fn disconnects_strand_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 100_000, true).await;
    let id = invoice["id"].as_str().unwrap().to_owned();
    let url = app.url.clone();
    let attempts = (0..300u64).map(|i| {
        let (url, key, id) = (url.clone(), t.key.clone(), id.clone());
        async move {
            // Most clients give up after 1-32 ms and drop the connection mid-request; every
            // fifth waits, so some payments are committed however slow the machine is.
            let patience = if i % 5 == 0 { 10_000 } else { 1 + i % 32 };
            let client = reqwest::Client::builder().timeout(Duration::from_millis(patience)).build().unwrap();
            let body = json!({"invoiceId": id, "amount": 10, "paymentMethod": {"type": "card", "number": "4242424242424242", "expMonth": 12, "expYear": 2040, "cvc": "123"}});
            let _ = client.post(format!("{url}/api/payments")).bearer_auth(&key).json(&body).send().await;
        }
    });
    futures::stream::iter(attempts)
        .buffer_unordered(50)
        .collect::<Vec<()>>()
        .await;
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the process must survive disconnects");
    // Requests whose clients left still run to completion server-side: wait until the set of
    // payments stops growing before judging it.
    let mut last = usize::MAX;
    loop {
        wait_settled(&app, &t.key, Duration::from_secs(60)).await;
        let count = all_payments(&app, &t.key).await.len();
        if count == last {
            break;
        }
        last = count;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let payments = all_payments(&app, &t.key).await;
    assert!(!payments.is_empty());
    let simulator = app.simulator.as_ref().unwrap();
    for p in &payments {
        assert_eq!(p["status"], "succeeded");
        assert_eq!(
            simulator.charges_for_payment(p["id"].as_str().unwrap()),
            1,
            "every committed payment reaches the gateway exactly once"
        );
    }
    let inv: Value = app.get_json(&format!("/api/invoices/{id}"), &t.key).await;
    assert_eq!(inv["amountPaid"], 10 * payments.len() as i64);
    assert_eq!(
        inv["amountPending"], 0,
        "a departed caller stranded a reservation"
    );
}
