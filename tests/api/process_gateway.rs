//! The real binary and its gateway as child processes: `kill -9` between a payment's commit and
//! its charge sends each committed payment to the gateway exactly once, and `payrail gateway` on
//! its own serves `payrail serve` and the CLI.

use std::process::Stdio;
use std::time::{Duration, Instant};

use payrail_actors::domain::TenantId;
use rand::Rng;
use reqwest::Client;
use serde_json::{json, Value};

use crate::helpers::{Backend, ADMIN};
use crate::process::{database, free_port, invoice_body, payrail_command, tenant, Engine};

/// `kill -9` between a payment's commit and its gateway call: after restart every committed
/// payment reaches the gateway exactly once, re-sent from durable state with the same key.
pub async fn crash_between_commit_and_charge(backend: Backend) {
    use payrail::gateway::{start_simulator, SimulatorConfig};
    let simulator = start_simulator("127.0.0.1:0", SimulatorConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = database(backend, dir.path()).await;
    let env = [
        ("PAYRAIL_GATEWAY_URL", simulator.url()),
        ("PAYRAIL_RECOVERY_MIN_AGE_SECS", "0"),
    ];
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut engine = Engine::start_with(&url, None, &env).await;
    let t = tenant(&client, &engine.url).await;
    let key = t["apiKey"]["key"].as_str().unwrap().to_owned();
    let tenant_id: TenantId = t["id"].as_str().unwrap().parse().unwrap();
    let body = json!({"customerName": "Big", "currency": "USD", "finalize": true,
                      "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": 1_000_000}]});
    let invoice: Value = client
        .post(format!("{}/api/invoices", engine.url))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rng =
        crate::helpers::seeded_rng(&format!("crash between commit and charge {backend:?}"));
    for round in 0..5 {
        let kill_after = Duration::from_millis(rng.random_range(20..150));
        println!("round {round}: kill -9 after {kill_after:?}");
        let engine_url = engine.url.clone();
        let runs = (0..40).map(|_| {
            let pay = json!({"invoiceId": invoice["id"], "amount": 10, "paymentMethod": {"type": "card", "token": "tok_visa"}});
            client.post(format!("{engine_url}/api/payments")).bearer_auth(&key).json(&pay).send()
        });
        let writes = futures::future::join_all(runs);
        tokio::pin!(writes);
        tokio::select! {
            _ = &mut writes => {}
            _ = tokio::time::sleep(kill_after) => {}
        }
        engine.kill9();
        engine = Engine::start_with(&url, None, &env).await;
    }
    // A last round runs to completion, so there is always committed work to check.
    let pay = json!({"invoiceId": invoice["id"], "amount": 10, "paymentMethod": {"type": "card", "token": "tok_visa"}});
    for _ in 0..5 {
        let response = client
            .post(format!("{}/api/payments", engine.url))
            .bearer_auth(&key)
            .json(&pay)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = loop {
        let (payments, total) = db
            .list_payments(tenant_id, None, None, 1, 100)
            .await
            .unwrap();
        let mut all = payments;
        let mut page = 2;
        while (all.len() as u64) < total {
            all.extend(
                db.list_payments(tenant_id, None, None, page, 100)
                    .await
                    .unwrap()
                    .0,
            );
            page += 1;
        }
        if all.iter().all(|p| p.gateway_reference.is_some()) {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "payments never reached the gateway"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!committed.is_empty());
    for payment in &committed {
        assert_eq!(
            simulator.charges_for_payment(&payment.id.to_string()),
            1,
            "{} must reach the gateway exactly once",
            payment.id
        );
    }
    println!(
        "commit/charge crashes {backend:?}: {} committed payments, each charged once",
        committed.len()
    );
    drop(engine);
}

/// `payrail gateway` on its own, with `payrail serve` pointed at it: a payment completes.
pub async fn standalone_gateway() {
    let port = free_port();
    let mut gateway = payrail_command()
        .args(["gateway", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gateway_url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = database(Backend::Sqlite, dir.path()).await;
    let client = Client::new();
    // The gateway process may take a moment to listen; tenant creation registers with it.
    let engine =
        Engine::start_with(&url, None, &[("PAYRAIL_GATEWAY_URL", gateway_url.as_str())]).await;
    let mut tenant_body = Value::Null;
    for _ in 0..100 {
        let response = client
            .post(format!("{}/api/tenants", engine.url))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "Acme"}))
            .send()
            .await
            .unwrap();
        if response.status() == 201 {
            tenant_body = response.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = tenant_body["apiKey"]["key"]
        .as_str()
        .expect("tenant created once the gateway listens")
        .to_owned();
    let paid = pays_an_invoice(&client, &engine.url, &key).await;
    // A tenant made by the CLI is registered with the external gateway too, so it can be paid.
    let output = payrail_command()
        .args(["tenants", "create", "--name", "Globex"])
        .env("DATABASE_URL", &url)
        .env("PAYRAIL_GATEWAY_URL", &gateway_url)
        .env("PAYRAIL_PUBLIC_URL", &engine.url)
        .output()
        .unwrap();
    let cli_tenant: Option<Value> = serde_json::from_slice(&output.stdout).ok();
    let cli_paid = match cli_tenant.as_ref().and_then(|t| t["apiKey"].as_str()) {
        Some(cli_key) => pays_an_invoice(&client, &engine.url, cli_key).await,
        None => false,
    };
    let _ = gateway.kill();
    let _ = gateway.wait();
    assert!(
        paid,
        "a payment never completed through the standalone gateway"
    );
    assert!(output.status.success(), "{output:?}");
    assert!(cli_paid, "a CLI-made tenant's payment never completed");
}

/// Creates an invoice, pays it with `tok_visa` and waits (5 s at most) for it to be paid.
async fn pays_an_invoice(client: &Client, engine: &str, key: &str) -> bool {
    let invoice: Value = client
        .post(format!("{engine}/api/invoices"))
        .bearer_auth(key)
        .json(&invoice_body("Jane"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pay =
        json!({"invoiceId": invoice["id"], "paymentMethod": {"type": "card", "token": "tok_visa"}});
    let payment = client
        .post(format!("{engine}/api/payments"))
        .bearer_auth(key)
        .json(&pay)
        .send()
        .await
        .unwrap();
    assert_eq!(payment.status(), 201);
    let path = format!("{engine}/api/invoices/{}", invoice["id"].as_str().unwrap());
    for _ in 0..200 {
        let current: Value = client
            .get(&path)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if current["status"] == "paid" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}
