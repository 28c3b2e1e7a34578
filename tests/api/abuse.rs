//! Bounded abuse: failed authentications spend a budget per client address and per key id
//! (then 429 before any database work), unknown key ids are remembered briefly, and a tenant's
//! keys share one request budget.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use payrail_actors::domain::ApiKeyId;
use reqwest::{Client, Response};
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app_with, Backend, TestApp, ADMIN};

/// Failed authentications a client address or key id may make before it is refused.
const FAILURE_BURST: u32 = 3;
/// Requests a tenant's keys may make together at once.
const TENANT_BURST: u32 = 6;

/// A client whose requests come from `ip` (any 127.x.y.z address reaches the server).
fn client_from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get_as(app: &TestApp, client: &Client, key: &str) -> Response {
    client
        .get(format!("{}/api/invoices", app.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// A well-formed key whose id the server has never issued.
fn unknown_key() -> String {
    format!("prk_{}_{}", ApiKeyId::new(), "0".repeat(48))
}

/// `Retry-After` of a 429 `rate_limited` problem, checked to be a sane number of seconds.
async fn refused(response: Response) -> u64 {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3_600).contains(&retry_after), "{retry_after}");
    problem(response, 429, "rate_limited").await;
    retry_after
}

async fn strict_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, |settings| {
        settings.auth_failure_burst = FAILURE_BURST;
        // One failure forgiven per minute: nothing refills while the test runs.
        settings.auth_failure_per_min = 1;
    })
    .await
}

#[actix_web::test]
async fn failed_authentications_are_limited_per_client_address() {
    let app = strict_app().await;
    let t = app.tenant("Acme").await;
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    // Garbage and unknown key ids (a different one each time) count alike.
    for key in ["garbage".to_owned(), unknown_key(), unknown_key()] {
        problem(get_as(&app, &a, &key).await, 401, "unauthenticated").await;
    }
    let lookups = app
        .metric("payrail_auth_failures_total{reason=\"unknown_key\"}")
        .await;
    // Spent: even the right key is refused from that address, before the store is asked.
    refused(get_as(&app, &a, &t.key).await).await;
    refused(get_as(&app, &a, &unknown_key()).await).await;
    assert_eq!(lookups, 2);
    assert_eq!(
        app.metric("payrail_auth_failures_total{reason=\"unknown_key\"}")
            .await,
        lookups
    );
    // A made-up X-Forwarded-For does not buy a new address unless configuration trusts it.
    let spoofed = a
        .get(format!("{}/api/invoices", app.url))
        .bearer_auth(&t.key)
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    refused(spoofed).await;
    // Another address is unaffected: its good key works and a bad one is a plain 401.
    assert_eq!(get_as(&app, &b, &t.key).await.status(), 200);
    problem(
        get_as(&app, &b, &unknown_key()).await,
        401,
        "unauthenticated",
    )
    .await;
    assert!(
        app.metric("payrail_rate_limited_total{scope=\"address\"}")
            .await
            >= 3
    );
}

#[actix_web::test]
async fn wrong_admin_tokens_spend_the_same_budget() {
    let app = strict_app().await;
    let c = client_from("127.0.0.4");
    let create = |token: &str| {
        c.post(format!("{}/api/tenants", app.url))
            .bearer_auth(token)
            .json(&json!({"name": "Acme"}))
            .send()
    };
    for _ in 0..FAILURE_BURST {
        problem(
            create("not-the-token").await.unwrap(),
            401,
            "unauthenticated",
        )
        .await;
    }
    refused(create(ADMIN).await.unwrap()).await;
    // The platform admin elsewhere is unaffected.
    assert_eq!(
        client_from("127.0.0.5")
            .post(format!("{}/api/tenants", app.url))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "Acme"}))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
}

#[actix_web::test]
async fn failed_authentications_are_limited_per_key_id() {
    let app = strict_app().await;
    let t = app.tenant("Acme").await;
    let spare = app.api_key(&t.key, "spare", "viewer").await;
    // Guesses at one key's secret from many addresses, each under its own budget.
    let (id_part, _) = t.key.rsplit_once('_').unwrap();
    let guess = format!("{id_part}_{}", "f".repeat(48));
    for i in 0..FAILURE_BURST {
        let from = client_from(&format!("127.0.1.{}", i + 1));
        problem(get_as(&app, &from, &guess).await, 401, "unauthenticated").await;
    }
    let fresh = client_from("127.0.1.100");
    refused(get_as(&app, &fresh, &guess).await).await;
    // The key id is refused whatever the secret, until its budget refills; the tenant's other
    // keys and unknown key ids from that address are not.
    refused(get_as(&app, &fresh, &t.key).await).await;
    assert_eq!(get_as(&app, &fresh, &spare).await.status(), 200);
    problem(
        get_as(&app, &fresh, &unknown_key()).await,
        401,
        "unauthenticated",
    )
    .await;
    assert!(
        app.metric("payrail_rate_limited_total{scope=\"key_id\"}")
            .await
            >= 2
    );
}

#[actix_web::test]
async fn unknown_key_ids_are_remembered_without_asking_the_store_again() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let key = unknown_key();
    for i in 0..3 {
        let from = client_from(&format!("127.0.2.{}", i + 1));
        problem(get_as(&app, &from, &key).await, 401, "unauthenticated").await;
    }
    assert_eq!(
        app.metric("payrail_auth_failures_total{reason=\"unknown_key\"}")
            .await,
        1
    );
    assert_eq!(
        app.metric("payrail_auth_failures_total{reason=\"unknown_key_cached\"}")
            .await,
        2
    );
}

#[actix_web::test]
async fn a_tenants_keys_share_one_budget() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.rate_limit_per_sec = 1;
        settings.rate_limit_burst = 100;
        settings.tenant_rate_limit_per_sec = 1;
        settings.tenant_rate_limit_burst = TENANT_BURST;
    })
    .await;
    let started = Instant::now();
    let t = app.tenant("Acme").await;
    let other = app.tenant("Other").await;
    // Minting keys spends the tenant's budget like any other request.
    let mut keys = vec![t.key.clone()];
    for i in 0..3 {
        let minted = app
            .post("/api/api-keys", &t.key)
            .json(&json!({"name": format!("k{i}"), "role": "viewer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(minted.status(), 201);
        keys.push(
            minted.json::<Value>().await.unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut passed = 3;
    let mut limited = None;
    for i in 0..40 {
        let response = app
            .get("/api/invoices", &keys[i % keys.len()])
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            limited = Some(response);
            break;
        }
        passed += 1;
    }
    let limited = limited.expect("a tenant's keys together were never limited");
    // At most one refill per second may have happened while the test ran.
    let refills = started.elapsed().as_secs() as u32 + 1;
    assert!(
        (TENANT_BURST..=TENANT_BURST + refills).contains(&passed),
        "{passed} requests passed"
    );
    refused(limited).await;
    assert_eq!(
        app.get("/api/invoices", &other.key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        app.metric("payrail_rate_limited_total{scope=\"tenant\"}")
            .await
            >= 1
    );
}
