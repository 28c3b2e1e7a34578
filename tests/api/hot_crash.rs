//! `kill -9` while webhooks settle many payments of one invoice, the hottest entity there is:
//! its actor pipelines many units per commit, and a crash can cut that pipeline anywhere.
//! Afterwards every acknowledged webhook is durable and applied once, the invoice holds exactly
//! its payments' money, and the projections equal a replay of the events.

use std::collections::HashSet;
use std::time::Duration;

use payrail_actors::domain::{InvoiceStatus, PaymentStatus, TenantId};
use rand::Rng;
use reqwest::Client;
use serde_json::{json, Value};

use crate::helpers::{sign_all, Backend};
use crate::process::{
    all_events, all_payment_rows, check_streams, database, rebuild_projections, run_until_killed,
    tenant, Engine,
};

const PAYMENTS: usize = 120;
const AMOUNT: i64 = 1_000;
const KILLS: usize = 6;

/// The built-in simulator charges but never reports: its webhooks are due in an hour, so every
/// outcome comes from the webhooks this test sends.
const QUIET_SIMULATOR: [(&str, &str); 2] = [
    ("PAYRAIL_SIMULATOR__WEBHOOK_DELAY_MIN_MS", "3600000"),
    ("PAYRAIL_SIMULATOR__WEBHOOK_DELAY_MAX_MS", "3600000"),
];

struct Hot {
    account: String,
    key: String,
    secret: String,
    invoice: String,
    payments: Vec<String>,
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

async fn seed(client: &Client, url: &str) -> Hot {
    let t = tenant(client, url).await;
    let key = t["apiKey"]["key"].as_str().unwrap().to_owned();
    let total = AMOUNT * PAYMENTS as i64;
    let body = json!({"customerName": "Hot", "currency": "USD", "finalize": true,
                      "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": total}]});
    let invoice = json_of(
        client
            .post(format!("{url}/api/invoices"))
            .bearer_auth(&key)
            .json(&body),
    )
    .await;
    let invoice = invoice["id"].as_str().unwrap().to_owned();
    let pays = (0..PAYMENTS).map(|_| {
        let body = json!({"invoiceId": invoice, "amount": AMOUNT,
                          "paymentMethod": {"type": "card", "token": "tok_visa"}});
        let request = client
            .post(format!("{url}/api/payments"))
            .bearer_auth(&key)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 201);
            let payment: Value = response.json().await.unwrap();
            payment["id"].as_str().unwrap().to_owned()
        }
    });
    let payments = futures::future::join_all(pays).await;
    Hot {
        account: t["id"].as_str().unwrap().to_owned(),
        key,
        secret: t["webhookSecret"].as_str().unwrap().to_owned(),
        invoice,
        payments,
    }
}

/// Every payment's success, each sent twice at once; answers the event ids acknowledged.
async fn settle_all(client: &Client, url: &str, hot: &Hot) -> HashSet<String> {
    let now = chrono::Utc::now().timestamp();
    let sends = hot.payments.iter().flat_map(|payment| {
        let id = format!("evt_hot_{payment}");
        let body = json!({"id": id, "type": "payment.succeeded", "account": hot.account,
                          "created": now, "data": {"paymentId": payment}})
        .to_string();
        let signature = sign_all(&[&hot.secret], now, &body);
        [0, 1].map(|_| {
            let request = client
                .post(format!("{url}/api/webhooks/payments"))
                .header("content-type", "application/json")
                .header("Payrail-Signature", signature.clone())
                .body(body.clone());
            let id = id.clone();
            async move {
                let response = request.send().await.ok()?;
                (response.status() == 200).then_some(id)
            }
        })
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .collect()
}

pub async fn hot_invoice_crash_safety(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = database(backend, dir.path()).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut engine = Engine::start_with(&url, None, &QUIET_SIMULATOR).await;
    let hot = seed(&client, &engine.url).await;
    let mut acknowledged = HashSet::new();
    let mut rng = crate::helpers::seeded_rng(&format!("hot invoice kill -9 {backend:?}"));
    for round in 0..KILLS {
        let kill_after = Duration::from_millis(rng.random_range(5..120));
        println!("round {round}: kill -9 after {kill_after:?}");
        let engine_url = engine.url.clone();
        let sends = settle_all(&client, &engine_url, &hot);
        acknowledged.extend(run_until_killed(engine, kill_after, sends).await);
        engine = Engine::start_with(&url, None, &QUIET_SIMULATOR).await;
    }
    // Once more without a crash: every event is now applied or a duplicate.
    let last = settle_all(&client, &engine.url, &hot).await;
    assert_eq!(last.len(), PAYMENTS, "every webhook answered 200");

    let tenant_id: TenantId = hot.account.parse().unwrap();
    check_streams(&db, tenant_id).await;
    let durable: HashSet<String> = all_events(&db, tenant_id)
        .await
        .into_iter()
        .filter_map(|e| e.gateway_event_id)
        .collect();
    for id in &acknowledged {
        assert!(durable.contains(id), "acknowledged {id} is not durable");
    }
    let invoice = json_of(
        client
            .get(format!("{}/api/invoices/{}", engine.url, hot.invoice))
            .bearer_auth(&hot.key),
    )
    .await;
    assert_eq!(invoice["amountPaid"], AMOUNT * PAYMENTS as i64);
    assert_eq!(invoice["amountPending"], 0);
    assert_eq!(invoice["status"], InvoiceStatus::Paid.as_str());

    engine.kill9();
    let invoice_id = hot.invoice.parse().unwrap();
    let invoice_before = db.get_invoice(tenant_id, invoice_id).await.unwrap();
    let payments_before = all_payment_rows(&db, tenant_id).await;
    assert_eq!(payments_before.len(), PAYMENTS);
    assert!(payments_before
        .iter()
        .all(|p| p.status == PaymentStatus::Succeeded));
    rebuild_projections(&url);
    assert_eq!(
        invoice_before,
        db.get_invoice(tenant_id, invoice_id).await.unwrap(),
        "the invoice projection must equal a replay"
    );
    assert_eq!(
        payments_before,
        all_payment_rows(&db, tenant_id).await,
        "payment projections must equal a replay"
    );
}
