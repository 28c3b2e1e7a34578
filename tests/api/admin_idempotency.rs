//! `Idempotency-Key` on the requests whose responses carry secrets shown once: tenant
//! creation, API key creation and webhook-secret rotation. A retry gets the same secrets
//! back; storage keeps neither the secrets nor the key in the clear.

use reqwest::Response;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{problem, TestApp, ADMIN};
use payrail::store::PLATFORM_SCOPE;

both_backends!(
    tenant_creation_replays_its_secrets,
    api_key_creation_replays_its_key,
    rotation_replays_its_secret,
    concurrent_admin_requests_under_one_key_have_one_effect,
);

const REPLAYED: &str = "Idempotent-Replayed";

async fn create_tenant(app: &TestApp, key: &str, name: &str) -> Response {
    app.post("/api/tenants", ADMIN)
        .header("Idempotency-Key", key)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
}

async fn create_key(app: &TestApp, admin_key: &str, key: &str, name: &str) -> Response {
    app.post("/api/api-keys", admin_key)
        .header("Idempotency-Key", key)
        .json(&json!({"name": name, "role": "operator"}))
        .send()
        .await
        .unwrap()
}

async fn total(app: &TestApp, path: &str, key: &str) -> usize {
    let listed: Value = app.get_json(path, key).await;
    match listed.get("totalItems") {
        Some(n) => n.as_u64().unwrap() as usize,
        None => listed["items"].as_array().unwrap().len(),
    }
}

/// The stored form of an `Idempotency-Key`: keyed with the deployment's hashing key, so a
/// plain SHA-256 of a guessed key finds nothing.
fn digest(app: &TestApp, key: &str) -> String {
    app._state.keys.digest("idempotency key", key.as_bytes())
}

/// The stored response holds no secret in the clear, and is found only under the key's digest.
async fn assert_sealed(app: &TestApp, scope: &str, key: &str, secrets: &[&str]) {
    let db = &app._state.db;
    assert_eq!(db.stored_response(scope, key).await.unwrap(), None);
    let plain_digest = hex::encode(Sha256::digest(key.as_bytes()));
    assert_eq!(
        db.stored_response(scope, &plain_digest).await.unwrap(),
        None
    );
    let stored = db
        .stored_response(scope, &digest(app, key))
        .await
        .unwrap()
        .expect("the response is stored under the key's digest");
    for secret in secrets {
        assert!(
            !stored.body.contains(secret),
            "{secret} stored in the clear"
        );
    }
    assert!(!stored.body.contains("prk_") && !stored.body.contains("whsec_"));
    // Sealed under the master key (with the client's key mixed in): reading the database and
    // guessing the `Idempotency-Key` is not enough to open it.
    let master = app._state.keys.current_id();
    assert!(
        stored.body.starts_with(&format!("pr1.{master}.")),
        "{}",
        stored.body
    );
}

async fn tenant_creation_replays_its_secrets(app: &TestApp) {
    let first = create_tenant(app, "create-acme-7f3a", "Acme").await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get(REPLAYED).is_none());
    let first: Value = first.json().await.unwrap();

    let again = create_tenant(app, "create-acme-7f3a", "Acme").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()[REPLAYED], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "the same tenant, key and secret");
    assert_eq!(total(app, "/api/tenants", ADMIN).await, 1);

    // The replayed key is the real one.
    let key = again["apiKey"]["key"].as_str().unwrap();
    assert_eq!(
        app.get("/api/invoices", key).send().await.unwrap().status(),
        200
    );
    assert_sealed(
        app,
        PLATFORM_SCOPE,
        "create-acme-7f3a",
        &[key, again["webhookSecret"].as_str().unwrap()],
    )
    .await;

    problem(
        create_tenant(app, "create-acme-7f3a", "Acme Ltd").await,
        422,
        "idempotency_key_reused",
    )
    .await;
    // An invalid body under a used key is refused for what it is, and nothing is created.
    problem(
        create_tenant(app, "create-acme-7f3a", "").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(total(app, "/api/tenants", ADMIN).await, 1);
}

async fn api_key_creation_replays_its_key(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let first = create_key(app, &t.key, "ci-key-1", "ci").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = create_key(app, &t.key, "ci-key-1", "ci").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()[REPLAYED], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    let key = again["key"].as_str().unwrap();
    assert_eq!(
        app.get("/api/invoices", key).send().await.unwrap().status(),
        200
    );
    assert_eq!(total(app, "/api/api-keys", &t.key).await, 2);
    assert_sealed(app, &t.id, "ci-key-1", &[key]).await;

    problem(
        create_key(app, &t.key, "ci-key-1", "other").await,
        422,
        "idempotency_key_reused",
    )
    .await;
    // Keys are scoped per tenant (and the platform is a scope of its own)...
    let other = app.tenant("Globex").await;
    assert_eq!(
        create_key(app, &other.key, "ci-key-1", "ci").await.status(),
        201
    );
    assert_eq!(
        create_tenant(app, "ci-key-1", "Initech").await.status(),
        201
    );
    // ...and within a tenant, one key serves one request whatever the endpoint.
    let invoice = app
        .post("/api/invoices", &t.key)
        .header("Idempotency-Key", "shared-key")
        .json(&json!({"customerName": "Jane", "currency": "USD",
            "lineItems": [{"description": "x", "quantity": 1, "unitAmount": 10}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(invoice.status(), 201);
    problem(
        create_key(app, &t.key, "shared-key", "ci").await,
        422,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(total(app, "/api/api-keys", &t.key).await, 2);
}

async fn rotation_replays_its_secret(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let path = format!("/api/tenants/{}/webhook-secret/rotate", t.id);
    let rotate = || {
        app.post(&path, ADMIN)
            .header("Idempotency-Key", "rotate-2026-11")
            .send()
    };
    let first = rotate().await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let again = rotate().await.unwrap();
    assert_eq!(again.headers()[REPLAYED], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    let secret = again["webhookSecret"].as_str().unwrap();
    assert_sealed(app, PLATFORM_SCOPE, "rotate-2026-11", &[secret]).await;

    // Rotated once: the replayed secret is current, the original one merely previous, and a
    // second rotation under a new key retires the original.
    let fresh = app
        .post(&path, ADMIN)
        .header("Idempotency-Key", "rotate-2026-12")
        .send()
        .await
        .unwrap();
    assert!(fresh.headers().get(REPLAYED).is_none());
    let newest: Value = fresh.json().await.unwrap();
    for (secrets, status) in [
        (vec![newest["webhookSecret"].as_str().unwrap()], 200),
        (vec![secret], 200),
        (vec![t.secret.as_str()], 401),
    ] {
        let now = chrono::Utc::now().timestamp();
        let body = json!({"id": "evt_gw_1", "type": "payment.succeeded", "account": t.id,
            "created": now, "data": {"paymentId": "pay_01jd6x2c8ef9r4t7bq5n1k3h2m",
            "gatewayReference": "ch_1"}})
        .to_string();
        let response = app.signed_webhook(&secrets, &body).await;
        assert_eq!(response.status(), status, "{secrets:?}");
    }
    let unknown = app
        .post(
            "/api/tenants/ten_01jd6x2c8ef9r4t7bq5n1k3h2m/webhook-secret/rotate",
            ADMIN,
        )
        .header("Idempotency-Key", "rotate-nobody")
        .send()
        .await
        .unwrap();
    problem(unknown, 404, "not_found").await;
}

/// Many copies of one request at once: one effect; every other copy is refused as in flight
/// or answered with the first one's response.
async fn concurrent_admin_requests_under_one_key_have_one_effect(app: &TestApp) {
    const COPIES: usize = 8;
    let tenants =
        futures::future::join_all((0..COPIES).map(|_| create_tenant(app, "burst-tenant", "Burst")))
            .await;
    let created = settle(tenants).await;
    assert_eq!(total(app, "/api/tenants", ADMIN).await, 1);
    let key = created["apiKey"]["key"].as_str().unwrap().to_owned();

    let keys =
        futures::future::join_all((0..COPIES).map(|_| create_key(app, &key, "burst-key", "ci")))
            .await;
    settle(keys).await;
    assert_eq!(total(app, "/api/api-keys", &key).await, 2);
}

/// Each response is a 201 or a 409 `idempotency_in_flight`, and every 201 carries the same
/// body (the first request's, or its replay).
async fn settle(responses: Vec<Response>) -> Value {
    let mut bodies = Vec::new();
    for response in responses {
        match response.status().as_u16() {
            201 => bodies.push(response.json::<Value>().await.unwrap()),
            409 => {
                problem(response, 409, "idempotency_in_flight").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(!bodies.is_empty());
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    bodies.remove(0)
}
