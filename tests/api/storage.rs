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
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: Some(url.to_owned().into()),
        db_pool_size: 4,
        admin_token: Some(ADMIN.to_owned().into()),
        // Two instances on one database share its keys.
        master_key: Some(crate::process::TEST_MASTER_KEY.to_owned().into()),
        hashing_key: Some(crate::process::TEST_HASHING_KEY.to_owned().into()),
        ..Settings::default()
    };
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
    // Every series API.md lists, including the PostgreSQL pool.
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
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
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
