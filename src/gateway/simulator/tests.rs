//! The simulator over real loopback HTTP: `HttpGateway` calls it, a tiny actix-web receiver in the
//! test records and verifies the webhooks it sends. Here: the harness, scripted outcomes,
//! idempotency and accounts; the chaos knobs' tests are in `tests/chaos.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use payrail_actors::domain::{Currency, PaymentId, PaymentSource, RefundId, TenantId};
use payrail_actors::ports::{
    AccountRegistration, ChargeRequest, Gateway, GatewayError, RefundRequest,
};
use serde_json::Value;

use super::{start_simulator, SimulatorConfig, SimulatorHandle};
use crate::gateway::client::{HttpGateway, HttpGatewayConfig};
use crate::gateway::signature::{verify, DEFAULT_TOLERANCE_SECS};

mod chaos;

const SECRET: &str = "whsec_test_one";
const OTHER_SECRET: &str = "whsec_test_two";
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// One webhook request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    batched: bool,
    account: String,
    events: Vec<Value>,
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    requests: AtomicUsize,
    bad_signatures: AtomicUsize,
    /// Answer 500 to this many requests first.
    fail_first: usize,
}

struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Value> {
        self.received().into_iter().flat_map(|r| r.events).collect()
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

async fn hook(
    state: web::Data<ReceiverState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    if n < state.fail_first {
        return HttpResponse::InternalServerError().finish();
    }
    let header = request
        .headers()
        .get("Payrail-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    if verify(
        header,
        &body,
        &[SECRET, OTHER_SECRET],
        now,
        DEFAULT_TOLERANCE_SECS,
    )
    .is_err()
    {
        state.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::Unauthorized().finish();
    }
    let value: Value = serde_json::from_slice(&body).unwrap();
    let received = match value.get("events") {
        Some(events) => Received {
            batched: true,
            account: value["account"].as_str().unwrap().to_owned(),
            events: events.as_array().unwrap().clone(),
        },
        None => Received {
            batched: false,
            account: value["account"].as_str().unwrap().to_owned(),
            events: vec![value],
        },
    };
    state.received.lock().unwrap().push(received);
    HttpResponse::Ok().json(serde_json::json!({"received": 1}))
}

async fn start_receiver(fail_first: usize) -> Receiver {
    let state = Arc::new(ReceiverState {
        fail_first,
        ..ReceiverState::default()
    });
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hook", web::post().to(hook))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/hook", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver {
        url,
        state,
        server: handle,
    }
}

fn quiet_config() -> SimulatorConfig {
    SimulatorConfig {
        webhook_delay_min_ms: 20,
        webhook_delay_max_ms: 30,
        retry_backoff_base_ms: 10,
        retry_backoff_max_ms: 50,
        late_failure_delay_ms: 50,
        workers: 1,
        seed: 7,
        ..SimulatorConfig::default()
    }
}

fn client(url: &str) -> HttpGateway {
    let mut config = HttpGatewayConfig::new(url);
    config.request_timeout = Duration::from_secs(2);
    config.max_retries = 1;
    config.backoff_base = Duration::from_millis(10);
    HttpGateway::with_config(config).unwrap()
}

/// Simulator + receiver + one registered account.
async fn setup(
    config: SimulatorConfig,
    fail_first: usize,
) -> (SimulatorHandle, Receiver, HttpGateway, TenantId) {
    let simulator = start_simulator("127.0.0.1:0", config).await.unwrap();
    let receiver = start_receiver(fail_first).await;
    let gateway = client(simulator.url());
    let account = TenantId::new();
    register(&gateway, account, &receiver.url, SECRET).await;
    (simulator, receiver, gateway, account)
}

async fn register(gateway: &HttpGateway, account: TenantId, url: &str, secret: &str) {
    gateway
        .register_account(&AccountRegistration {
            account,
            webhook_url: url.to_owned(),
            webhook_secret: secret.to_owned(),
        })
        .await
        .unwrap();
}

fn card(number: &str) -> Option<PaymentSource> {
    Some(PaymentSource::Card {
        number: number.to_owned(),
        exp_month: 12,
        exp_year: 2030,
        cvc: "123".to_owned(),
    })
}

fn token(name: &str) -> Option<PaymentSource> {
    Some(PaymentSource::Token(name.to_owned()))
}

fn charge(
    account: TenantId,
    payment_id: PaymentId,
    source: Option<PaymentSource>,
) -> ChargeRequest {
    ChargeRequest {
        account,
        payment_id,
        amount: 3300,
        currency: "USD".parse::<Currency>().unwrap(),
        source,
    }
}

/// Event types per payment id, in arrival order.
fn types_by_payment(events: &[Value]) -> HashMap<String, Vec<String>> {
    let mut by_payment: HashMap<String, Vec<String>> = HashMap::new();
    for event in events {
        let payment = event["data"]["paymentId"].as_str().unwrap().to_owned();
        let kind = event["type"].as_str().unwrap().to_owned();
        by_payment.entry(payment).or_default().push(kind);
    }
    by_payment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_cards_produce_the_scripted_webhook_sequences() {
    let (simulator, receiver, gateway, account) = setup(quiet_config(), 0).await;
    let cases = [
        (
            card("4242424242424242"),
            vec!["payment.processing", "payment.succeeded"],
        ),
        (
            card("4000000000000002"),
            vec!["payment.processing", "payment.failed"],
        ),
        (
            card("4000000000009995"),
            vec!["payment.processing", "payment.failed"],
        ),
        (
            card("4000000000000259"),
            vec!["payment.processing", "payment.succeeded", "payment.failed"],
        ),
        (
            card("5555555555554444"),
            vec!["payment.processing", "payment.succeeded"],
        ),
        (
            token("tok_visa"),
            vec!["payment.processing", "payment.succeeded"],
        ),
        (
            token("tok_chargeDeclined"),
            vec!["payment.processing", "payment.failed"],
        ),
        (
            token("tok_insufficientFunds"),
            vec!["payment.processing", "payment.failed"],
        ),
        (
            token("tok_lateFailure"),
            vec!["payment.processing", "payment.succeeded", "payment.failed"],
        ),
    ];
    let mut expected = HashMap::new();
    let mut references = HashMap::new();
    for (source, sequence) in cases {
        let payment = PaymentId::new();
        let reference = gateway
            .create_charge(&charge(account, payment, source))
            .await
            .unwrap();
        assert!(reference.starts_with("ch_"), "{reference}");
        expected.insert(payment.to_string(), sequence);
        references.insert(payment.to_string(), reference);
    }
    assert!(
        simulator.wait_idle(IDLE_TIMEOUT).await,
        "deliveries did not finish"
    );

    let events = receiver.events();
    let by_payment = types_by_payment(&events);
    for (payment, sequence) in &expected {
        assert_eq!(&by_payment[payment], sequence, "payment {payment}");
    }
    let mut ids = std::collections::HashSet::new();
    for event in &events {
        let id = event["id"].as_str().unwrap();
        assert!(id.starts_with("evt_gw_"), "{id}");
        assert!(ids.insert(id.to_owned()), "event id {id} delivered twice");
        assert_eq!(event["account"], account.to_string());
        assert!(event["created"].as_i64().unwrap() > 1_700_000_000);
        let data = &event["data"];
        let payment = data["paymentId"].as_str().unwrap();
        assert_eq!(data["gatewayReference"], references[payment].as_str());
        assert_eq!(data["amount"], 3300);
        assert_eq!(data["currency"], "USD");
        if event["type"] == "payment.failed" {
            assert!(data["failureCode"].is_string() && data["failureMessage"].is_string());
        }
    }
    let codes: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "payment.failed")
        .map(|e| e["data"]["failureCode"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == "insufficient_funds").count(),
        2
    );
    assert_eq!(codes.iter().filter(|c| **c == "card_declined").count(), 4);
    // Nothing a receiver sees carries a card number.
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("4242424242424242") && !all.contains("4000000000000259"));
    assert_eq!(receiver.state.bad_signatures.load(Ordering::SeqCst), 0);
    assert!(receiver.received().iter().all(|r| !r.batched));
    let stats = simulator.stats();
    assert_eq!(stats.charges_created, 9);
    assert_eq!(stats.events_delivered, 20);
    assert_eq!(stats.webhooks_given_up, 0);
    simulator.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_are_idempotent_and_unknown_resends_are_reported() {
    let (simulator, receiver, gateway, account) = setup(quiet_config(), 0).await;
    let payment = PaymentId::new();
    let first = gateway
        .create_charge(&charge(account, payment, card("4242424242424242")))
        .await
        .unwrap();
    let again = gateway
        .create_charge(&charge(account, payment, card("4242424242424242")))
        .await
        .unwrap();
    let resent = gateway
        .create_charge(&charge(account, payment, None))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(first, resent);
    assert_eq!(simulator.creations_for(&payment.to_string()), 1);

    let unknown = gateway
        .create_charge(&charge(account, PaymentId::new(), None))
        .await;
    assert_eq!(unknown, Err(GatewayError::UnknownCharge));

    // The same key with a different amount is refused for good.
    let mut changed = charge(account, payment, token("tok_visa"));
    changed.amount = 1;
    assert!(matches!(
        gateway.create_charge(&changed).await,
        Err(GatewayError::Rejected { status: 422, .. })
    ));
    // So is a card that fails the Luhn check.
    assert!(matches!(
        gateway
            .create_charge(&charge(account, PaymentId::new(), card("4242424242424241")))
            .await,
        Err(GatewayError::Rejected { status: 400, .. })
    ));

    assert!(simulator.wait_idle(IDLE_TIMEOUT).await);
    let stats = simulator.stats();
    assert_eq!(stats.charges_created, 1);
    assert_eq!(stats.charges_received, 6);
    assert_eq!(stats.events_delivered, 2, "one processing and one outcome");
    assert_eq!(receiver.events().len(), 2);
    simulator.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_idempotent_and_report_by_webhook() {
    let (simulator, receiver, gateway, account) = setup(quiet_config(), 0).await;
    let payment = PaymentId::new();
    gateway
        .create_charge(&charge(account, payment, token("tok_visa")))
        .await
        .unwrap();
    let refund = RefundRequest {
        account,
        payment_id: payment,
        refund_id: RefundId::new(),
        amount: 1000,
    };
    let reference = gateway.create_refund(&refund).await.unwrap();
    assert!(reference.starts_with("rf_"));
    assert_eq!(gateway.create_refund(&refund).await.unwrap(), reference);
    let too_much = RefundRequest {
        refund_id: RefundId::new(),
        amount: 5000,
        ..refund.clone()
    };
    gateway.create_refund(&too_much).await.unwrap();
    let unknown = RefundRequest {
        payment_id: PaymentId::new(),
        refund_id: RefundId::new(),
        ..refund.clone()
    };
    assert!(matches!(
        gateway.create_refund(&unknown).await,
        Err(GatewayError::Rejected { status: 404, .. })
    ));
    assert!(simulator.wait_idle(IDLE_TIMEOUT).await);

    let events = receiver.events();
    let refunds: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("refund."))
        .collect();
    assert_eq!(refunds.len(), 2);
    let ok = refunds
        .iter()
        .find(|e| e["type"] == "refund.succeeded")
        .unwrap();
    assert_eq!(ok["data"]["refundId"], refund.refund_id.to_string());
    assert_eq!(ok["data"]["paymentId"], payment.to_string());
    assert_eq!(ok["data"]["amount"], 1000);
    let failed = refunds
        .iter()
        .find(|e| e["type"] == "refund.failed")
        .unwrap();
    assert_eq!(failed["data"]["refundId"], too_much.refund_id.to_string());
    assert_eq!(simulator.stats().refunds_created, 2);
    simulator.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gives_up_as_unavailable_when_nothing_listens() {
    // Bind and drop a listener to get a port nobody serves.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = client(&format!("http://127.0.0.1:{port}"));
    let result = gateway
        .create_charge(&charge(
            TenantId::new(),
            PaymentId::new(),
            token("tok_visa"),
        ))
        .await;
    assert!(
        matches!(result, Err(GatewayError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_for_unregistered_accounts_are_rejected() {
    let simulator = start_simulator("127.0.0.1:0", quiet_config())
        .await
        .unwrap();
    let gateway = client(simulator.url());
    let result = gateway
        .create_charge(&charge(
            TenantId::new(),
            PaymentId::new(),
            token("tok_visa"),
        ))
        .await;
    assert_eq!(result, Err(GatewayError::UnknownAccount));
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registering_an_account_signs_with_the_latest_secret() {
    let (simulator, receiver, gateway, account) = setup(quiet_config(), 0).await;
    let rotated = "whsec_rotated_only";
    register(&gateway, account, &receiver.url, rotated).await;
    gateway
        .create_charge(&charge(account, PaymentId::new(), token("tok_visa")))
        .await
        .unwrap();
    // The receiver knows only the old secrets, so every attempt is refused until given up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.events().is_empty());
    assert!(receiver.state.bad_signatures.load(Ordering::SeqCst) >= 2);
    simulator.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_needs_an_http_url_and_a_secret() {
    let simulator = start_simulator("127.0.0.1:0", quiet_config())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let register = |account: &str, url: &str, secret: &str| {
        http.post(format!("{}/v1/accounts", simulator.url()))
            .json(&serde_json::json!({
                "account": account, "webhookUrl": url, "webhookSecret": secret,
            }))
            .send()
    };
    for (account, url, secret) in [
        ("acct", "ftp://127.0.0.1/hooks", SECRET),
        ("acct", "not a url", SECRET),
        ("acct", "http://127.0.0.1/hooks", ""),
        ("", "http://127.0.0.1/hooks", SECRET),
    ] {
        let status = register(account, url, secret).await.unwrap().status();
        assert_eq!(status, 400, "{account:?} {url:?} {secret:?}");
    }
    let status = register("acct", "http://127.0.0.1/hooks", SECRET)
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    simulator.stop().await;
}
