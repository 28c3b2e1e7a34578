//! Secrets and card data at rest, checked as an attacker with a copy of the database would:
//! every byte of the SQLite files and a `pg_dump`, searched for each secret, key and card
//! number the run handled. Also fingerprints (keyed, per tenant) and master-key rotation.

use std::process::Command;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{TestApp, ADMIN};

both_backends!(
    a_database_dump_holds_no_secret_and_no_card,
    card_fingerprints_are_keyed_and_per_tenant
);

const CARD: &str = "4242424242424242";

/// The whole stored database as bytes: the SQLite file with its WAL, or `pg_dump`'s output.
fn dump(app: &TestApp) -> Vec<u8> {
    if let Some(path) = app.db_url.strip_prefix("sqlite://") {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
                bytes.extend(b);
            }
        }
        assert!(!bytes.is_empty(), "no SQLite file at {path}");
        return bytes;
    }
    let output = Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .arg(&app.db_url)
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn a_database_dump_holds_no_secret_and_no_card(app: &TestApp) {
    let mut secrets: Vec<String> = Vec::new();
    let created: Value = app
        .client
        .post(format!("{}/api/tenants", app.url))
        .bearer_auth(ADMIN)
        .header("Idempotency-Key", "tenant-1")
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let admin_key = created["apiKey"]["key"].as_str().unwrap().to_owned();
    secrets.push(admin_key.clone());
    secrets.push(created["webhookSecret"].as_str().unwrap().to_owned());
    let rotated: Value = app
        .client
        .post(format!(
            "{}/api/tenants/{id}/webhook-secret/rotate",
            app.url
        ))
        .bearer_auth(ADMIN)
        .header("Idempotency-Key", "rotate-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    secrets.push(rotated["webhookSecret"].as_str().unwrap().to_owned());
    let key: Value = app
        .post("/api/api-keys", &admin_key)
        .header("Idempotency-Key", "key-1")
        .json(&json!({"name": "ci", "role": "operator"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    secrets.push(key["key"].as_str().unwrap().to_owned());
    let invoice = app.invoice(&admin_key, 1_000, true).await;
    let invoice_id = invoice["id"].as_str().unwrap();
    for idempotency in ["pay-1", "pay-2"] {
        let payment: Value = app
            .post("/api/payments", &admin_key)
            .header("Idempotency-Key", idempotency)
            .json(
                &json!({"invoiceId": invoice_id, "amount": 400, "paymentMethod": {"type": "card",
                   "number": CARD, "expMonth": 12, "expYear": 2040, "cvc": "123"}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pid = payment["id"].as_str().unwrap().to_owned();
        app.eventually(&format!("/api/payments/{pid}"), &admin_key, |p| {
            p["status"] != "processing"
        })
        .await;
    }
    let bytes = dump(app);
    assert!(contains(&bytes, &id), "the dump is the database's");
    for secret in &secrets {
        // The key id part of an API key is stored (it is how a key is looked up); its secret
        // part, and every webhook secret, never are.
        let hidden = secret.rsplit('_').next().unwrap();
        assert!(!contains(&bytes, hidden), "{secret} stored in the clear");
    }
    for card in [CARD, "424242424242"] {
        assert!(!contains(&bytes, card), "card digits {card} stored");
    }
}

async fn card_fingerprint(app: &TestApp, key: &str) -> String {
    let invoice = app.invoice(key, 1_000, true).await;
    let payment: Value = app
        .pay(key, invoice["id"].as_str().unwrap(), CARD, Some(100))
        .await
        .json()
        .await
        .unwrap();
    payment["paymentMethod"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Stable within a tenant, unlinkable across tenants, and not the digest under a key anyone
/// could read out of the binary.
async fn card_fingerprints_are_keyed_and_per_tenant(app: &TestApp) {
    use hmac::{Hmac, Mac};
    let (a, b) = (app.tenant("Acme").await, app.tenant("Globex").await);
    let first = card_fingerprint(app, &a.key).await;
    assert_eq!(card_fingerprint(app, &a.key).await, first);
    assert_ne!(card_fingerprint(app, &b.key).await, first);
    let mut constant = Hmac::<sha2::Sha256>::new_from_slice(b"payrail-card-fingerprint").unwrap();
    constant.update(CARD.as_bytes());
    let unkeyed = hex::encode(&constant.finalize().into_bytes()[..8]);
    assert_ne!(first, unkeyed);
}

/// `payrail rotate-master-key` on the embedded default: the key file gains a new key, every
/// secret is re-sealed under it, the old key is retired, and a restarted server still verifies
/// the tenant's webhooks.
#[actix_web::test]
async fn rotating_the_master_key_reseals_every_secret() {
    use payrail::config::Settings;
    use payrail::server::{self, Running};
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        data_dir: dir.path().display().to_string(),
        admin_token: Some(ADMIN.to_owned().into()),
        ..Settings::default()
    };
    let start = |settings: &Settings| {
        let settings = settings.clone();
        async move {
            let running = server::start(&settings).await.unwrap();
            let url = running.url();
            let Running { server, state, .. } = running;
            actix_web::rt::spawn(server);
            (url, state)
        }
    };
    let (url, state) = start(&settings).await;
    let client = reqwest::Client::new();
    let tenant: Value = client
        .post(format!("{url}/api/tenants"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_id = state.keys.current_id().to_owned();
    let rotated = payrail::rotation::rotate_master_key(&settings)
        .await
        .unwrap();
    assert_ne!(rotated.key_id, old_id);
    assert_eq!(rotated.resealed_tenants, 1);
    assert!(rotated.retired_older_keys);
    let file = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert_eq!(file.lines().count(), 1);
    // A restarted server, which has only the new key, opens the re-sealed secret: a webhook
    // signed with it verifies.
    let (url, _state) = start(&settings).await;
    let secret = tenant["webhookSecret"].as_str().unwrap();
    let body = json!({"id": "evt_gw_1", "type": "payment.succeeded", "account": tenant["id"],
                      "data": {"paymentId": "pay_01jd6x2c8ef9r4t7bq5n1k3h2m"}})
    .to_string();
    let signature = crate::helpers::sign_all(&[secret], chrono::Utc::now().timestamp(), &body);
    let answer = client
        .post(format!("{url}/api/webhooks/payments"))
        .header("content-type", "application/json")
        .header("Payrail-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}
