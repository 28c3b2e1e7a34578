//! Two engine instances on one PostgreSQL database: optimistic concurrency, not locks, keeps a
//! stale copy of an actor from corrupting a stream.

use payrail::config::Settings;
use payrail::server::{self, Running};
use payrail::store::testing;
use payrail_actors::domain::{StreamId, TenantId};
use reqwest::Client;
use serde_json::{json, Value};

use crate::helpers::ADMIN;

async fn instance(url: &str) -> (String, actix_web::web::Data<payrail::http::AppState>) {
    instance_with(url, |_| {}).await
}

async fn instance_with(
    url: &str,
    adjust: impl FnOnce(&mut Settings),
) -> (String, actix_web::web::Data<payrail::http::AppState>) {
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: Some(url.to_owned().into()),
        db_pool_size: 4,
        admin_token: Some(ADMIN.to_owned().into()),
        // Two instances on one database share its keys.
        master_key: Some(crate::process::TEST_MASTER_KEY.to_owned().into()),
        hashing_key: Some(crate::process::TEST_HASHING_KEY.to_owned().into()),
        ..Settings::default()
    };
    adjust(&mut settings);
    let running = server::start(&settings).await.unwrap();
    let base = running.url();
    let Running { state, server, .. } = running;
    actix_web::rt::spawn(server);
    (base, state)
}

async fn patch(client: &Client, base: &str, key: &str, id: &str, name: &str) -> reqwest::Response {
    client
        .patch(format!("{base}/api/invoices/{id}"))
        .bearer_auth(key)
        .json(&json!({"customerName": name}))
        .send()
        .await
        .unwrap()
}

pub async fn stale_writer_gets_a_conflict() {
    let (_db, url) = testing::fresh_postgres().await.unwrap();
    let (a, state) = instance(&url).await;
    let (b, _) = instance(&url).await;
    let client = Client::new();
    let t: Value = client
        .post(format!("{a}/api/tenants"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = t["apiKey"]["key"].as_str().unwrap();
    let body = json!({"customerName": "v1", "currency": "USD", "lineItems": [{"description": "x", "quantity": 1, "unitAmount": 10}]});
    let invoice: Value = client
        .post(format!("{a}/api/invoices"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = invoice["id"].as_str().unwrap();
    assert_eq!(patch(&client, &a, key, id, "v2 from a").await.status(), 200);
    assert_eq!(patch(&client, &b, key, id, "v3 from b").await.status(), 200);
    // A's actor still holds version 2: its write is refused, and it reloads.
    let stale = patch(&client, &a, key, id, "lost").await;
    assert_eq!(stale.status(), 409);
    let problem: Value = stale.json().await.unwrap();
    assert_eq!(problem["code"], "version_conflict");
    let retried = patch(&client, &a, key, id, "v4 from a").await;
    assert_eq!(retried.status(), 200);
    let latest: Value = retried.json().await.unwrap();
    assert_eq!(latest["version"], 4);
    let tenant: TenantId = t["id"].as_str().unwrap().parse().unwrap();
    let stream = StreamId::Invoice(id.parse().unwrap());
    let events = payrail_actors::ports::EventStore::load_stream(&state.db, tenant, stream)
        .await
        .unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4], "no event lost or duplicated");
    let names: Vec<String> = events
        .iter()
        .map(|e| {
            e.data.data_json().unwrap()["customerName"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["v1", "v2 from a", "v3 from b", "v4 from a"]);
    // Every series docs/api.md lists, including the PostgreSQL pool.
    let metrics = client
        .get(format!("{a}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "payrail_http_requests_total",
        "payrail_http_request_duration_seconds",
        "payrail_webhook_events_total",
        "payrail_active_actors",
        "payrail_audit_queue_depth",
        "payrail_commit_batch_units",
        "payrail_commit_duration_microseconds_total",
        "payrail_db_pool_connections",
        "payrail_audit_writer_queued",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    // PostgreSQL's two audit writers each report their share, and the shares add up.
    let value = |line: &str| line.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap();
    let total = |name: &str| {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} ")));
        value(line.unwrap_or_else(|| panic!("{name} missing")))
    };
    for (per_writer, all) in [
        (
            "payrail_audit_writer_batches_total",
            "payrail_commit_batches_total",
        ),
        (
            "payrail_audit_writer_units_total",
            "payrail_commit_units_total",
        ),
    ] {
        let shares: Vec<u64> = metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{per_writer}{{writer=")))
            .map(value)
            .collect();
        assert_eq!(shares.len(), 2, "{per_writer}: {shares:?}");
        assert_eq!(shares.iter().sum::<u64>(), total(all), "{per_writer}");
        assert!(total(all) > 0, "{all}");
    }
}

/// The same tenant-creation request sent to two nodes at once: neither node sees the other's
/// key in flight, so the database decides. One tenant exists afterwards, and every answer
/// that isn't a 409 carries its key and secret.
pub async fn one_idempotency_key_across_two_nodes() {
    let (_db, url) = testing::fresh_postgres().await.unwrap();
    let (a, state) = instance(&url).await;
    let (b, _) = instance(&url).await;
    let client = Client::new();
    let sends = (0..12).map(|i| {
        let base = if i % 2 == 0 { &a } else { &b };
        client
            .post(format!("{base}/api/tenants"))
            .bearer_auth(ADMIN)
            .header("Idempotency-Key", "two-nodes")
            .json(&json!({"name": "Acme"}))
            .send()
    });
    let mut bodies = Vec::new();
    for response in futures::future::join_all(sends).await {
        let response = response.unwrap();
        match response.status().as_u16() {
            201 => bodies.push(response.json::<Value>().await.unwrap()),
            409 => {}
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let (tenants, total) = state.db.list_tenants(1, 10).await.unwrap();
    assert_eq!(total, 1, "{tenants:?}");
    let key = bodies[0]["apiKey"]["key"].as_str().unwrap();
    for base in [&a, &b] {
        let listed = client
            .get(format!("{base}/api/invoices"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200);
    }
}

/// A webhook reaching a node whose payment actor is stale (the other node applied an outcome)
/// is decided again on the reloaded payment: the gateway gets 200, never a conflict.
pub async fn a_stale_node_applies_a_webhook_after_reloading() {
    let (_db, url) = testing::fresh_postgres().await.unwrap();
    // The simulators never deliver during the test: the test sends every webhook itself.
    let quiet = |s: &mut Settings| {
        s.simulator.webhook_delay_min_ms = 600_000;
        s.simulator.webhook_delay_max_ms = 600_000;
    };
    let (a, _) = instance_with(&url, quiet).await;
    let (b, _) = instance_with(&url, quiet).await;
    let client = Client::new();
    let t: Value = client
        .post(format!("{a}/api/tenants"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (key, account) = (
        t["apiKey"]["key"].as_str().unwrap(),
        t["id"].as_str().unwrap(),
    );
    let secret = t["webhookSecret"].as_str().unwrap();
    let invoice: Value = client
        .post(format!("{a}/api/invoices"))
        .bearer_auth(key)
        .json(
            &json!({"customerName": "Jane", "currency": "USD", "finalize": true,
                      "lineItems": [{"description": "x", "quantity": 1, "unitAmount": 1000}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payment: Value = client
        .post(format!("{a}/api/payments"))
        .bearer_auth(key)
        .json(
            &json!({"invoiceId": invoice["id"], "paymentMethod": {"type": "card",
               "number": "4242424242424242", "expMonth": 12, "expYear": 2040, "cvc": "123"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = payment["id"].as_str().unwrap();
    // A's actor holds the payment once the gateway's charge reference is recorded.
    let mut reference = Value::Null;
    for _ in 0..200 {
        let p: Value = client
            .get(format!("{a}/api/payments/{pid}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !p["gatewayReference"].is_null() {
            reference = p["gatewayReference"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(!reference.is_null(), "the charge was recorded");
    let hook = |base: String, id: &str, kind: &str| {
        let body = json!({"id": id, "type": kind, "account": account,
                          "data": {"paymentId": pid, "gatewayReference": reference,
                                   "amount": 1000, "currency": "USD"}})
        .to_string();
        let signature = crate::helpers::sign_all(&[secret], chrono::Utc::now().timestamp(), &body);
        client
            .post(format!("{base}/api/webhooks/payments"))
            .header("content-type", "application/json")
            .header("Payrail-Signature", signature)
            .body(body)
            .send()
    };
    // B applies `succeeded`; A's actor, still at `processing`, does not know.
    let first = hook(b.clone(), "evt_gw_1", "payment.succeeded")
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["applied"], 1, "{first}");
    // A would apply a late `failed` to its stale payment; its write meets B's, it reloads, and
    // on the durable truth (`succeeded`) the failure is stale: ignored, answered 200.
    let second = hook(a.clone(), "evt_gw_2", "payment.failed").await.unwrap();
    assert_eq!(second.status(), 200, "{:?}", second.text().await);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["ignored"], 1, "{second}");
    let settled: Value = client
        .get(format!("{b}/api/payments/{pid}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settled["status"], "succeeded");
}
