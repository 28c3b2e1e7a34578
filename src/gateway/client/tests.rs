//! The HTTP gateway client against fake gateways on loopback: the bodies and keys it sends,
//! its retries and what it takes as final, redirects, and its backoff.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use payrail_actors::domain::{PaymentId, RefundId, TenantId};
use serde_json::{json, Value};

use super::*;

/// A fake gateway: answers `fail_status` (503 unless set) to the first `fail_first`
/// requests, then 202, recording each request's Idempotency-Key and body.
#[derive(Default)]
struct Fake {
    fail_first: usize,
    fail_status: Option<u16>,
    /// Answers every request with a 307 to this address instead.
    redirect_to: Option<String>,
    calls: AtomicUsize,
    seen: Mutex<Vec<(Option<String>, Value)>>,
}

async fn answer(fake: web::Data<Fake>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Some(target) = &fake.redirect_to {
        return HttpResponse::TemporaryRedirect()
            .insert_header(("Location", target.as_str()))
            .finish();
    }
    if fake.calls.fetch_add(1, Ordering::SeqCst) < fake.fail_first {
        let code = fake.fail_status.unwrap_or(503);
        let status = actix_web::http::StatusCode::from_u16(code).unwrap();
        return HttpResponse::build(status).finish();
    }
    let key = request
        .headers()
        .get("Idempotency-Key")
        .map(|v| v.to_str().unwrap().to_owned());
    fake.seen
        .lock()
        .unwrap()
        .push((key, serde_json::from_slice(&body).unwrap()));
    HttpResponse::Accepted().json(json!({"reference": "ch_fake"}))
}

async fn start_fake(fail_first: usize) -> (String, Arc<Fake>) {
    start_fake_answering(fail_first, None).await
}

async fn start_fake_answering(fail_first: usize, fail_status: Option<u16>) -> (String, Arc<Fake>) {
    start(Fake {
        fail_first,
        fail_status,
        ..Fake::default()
    })
    .await
}

async fn start(fake: Fake) -> (String, Arc<Fake>) {
    let fake = Arc::new(fake);
    let data = web::Data::from(fake.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::post().to(answer))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());
    (url, fake)
}

fn gateway(url: &str, max_retries: u32) -> HttpGateway {
    let mut config = HttpGatewayConfig::new(format!("{url}/"));
    config.max_retries = max_retries;
    config.backoff_base = Duration::from_millis(5);
    config.request_timeout = Duration::from_secs(2);
    HttpGateway::with_config(config).unwrap()
}

fn charge(source: Option<PaymentSource>) -> ChargeRequest {
    ChargeRequest {
        account: TenantId::new(),
        payment_id: PaymentId::new(),
        amount: 1999,
        currency: "EUR".parse().unwrap(),
        source,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_the_documented_bodies_with_idempotency_keys() {
    let (url, fake) = start_fake(0).await;
    let gateway = gateway(&url, 0);
    let card = charge(Some(PaymentSource::Card {
        number: "4242424242424242".into(),
        exp_month: 12,
        exp_year: 2030,
        cvc: "123".into(),
    }));
    assert_eq!(gateway.create_charge(&card).await.unwrap(), "ch_fake");
    let token = charge(Some(PaymentSource::Token("tok_visa".into())));
    gateway.create_charge(&token).await.unwrap();
    let resend = charge(None);
    gateway.create_charge(&resend).await.unwrap();
    let refund = RefundRequest {
        account: card.account,
        payment_id: card.payment_id,
        refund_id: RefundId::new(),
        amount: 500,
    };
    gateway.create_refund(&refund).await.unwrap();

    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, Some(card.payment_id.to_string()));
    assert_eq!(
        seen[0].1,
        json!({"account": card.account.to_string(), "paymentId": card.payment_id.to_string(),
               "amount": 1999, "currency": "EUR",
               "card": {"number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvc": "123"}})
    );
    assert_eq!(seen[1].1["token"], "tok_visa");
    assert!(seen[1].1.get("card").is_none());
    assert!(seen[2].1.get("card").is_none() && seen[2].1.get("token").is_none());
    assert_eq!(seen[3].0, Some(refund.refund_id.to_string()));
    assert_eq!(
        seen[3].1,
        json!({"account": card.account.to_string(), "paymentId": card.payment_id.to_string(),
               "refundId": refund.refund_id.to_string(), "amount": 500})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_5xx_with_the_same_key_then_gives_up() {
    let (url, fake) = start_fake(2).await;
    let request = charge(Some(PaymentSource::Token("tok_visa".into())));
    assert_eq!(
        gateway(&url, 2).create_charge(&request).await.unwrap(),
        "ch_fake"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3);

    let (url, fake) = start_fake(10).await;
    let result = gateway(&url, 2).create_charge(&request).await;
    assert!(
        matches!(result, Err(GatewayError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        3,
        "one attempt plus two retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_a_request_timeout_but_not_a_refusal() {
    let request = charge(Some(PaymentSource::Token("tok_visa".into())));
    let (url, fake) = start_fake_answering(2, Some(408)).await;
    assert_eq!(
        gateway(&url, 2).create_charge(&request).await.unwrap(),
        "ch_fake"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
    let keys: Vec<_> = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(keys, [Some(request.payment_id.to_string())]);

    let (url, fake) = start_fake_answering(2, Some(402)).await;
    let result = gateway(&url, 2).create_charge(&request).await;
    assert!(
        matches!(result, Err(GatewayError::Rejected { status: 402, .. })),
        "{result:?}"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "a refusal is final");
}

/// A gateway answering with a redirect gets no second request, and the card number goes
/// nowhere else: the answer is a refusal like any other 3xx or 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn does_not_follow_a_redirect() {
    let (elsewhere, other) = start_fake(0).await;
    let (url, _) = start(Fake {
        redirect_to: Some(format!("{elsewhere}/v1/charges")),
        ..Fake::default()
    })
    .await;

    let card = charge(Some(PaymentSource::Card {
        number: "4242424242424242".into(),
        exp_month: 12,
        exp_year: 2030,
        cvc: "123".into(),
    }));
    let result = gateway(&url, 2).create_charge(&card).await;
    assert!(
        matches!(result, Err(GatewayError::Rejected { status: 307, .. })),
        "{result:?}"
    );
    assert_eq!(
        other.calls.load(Ordering::SeqCst),
        0,
        "nothing sent elsewhere"
    );
}

#[test]
fn plain_http_is_flagged_only_off_loopback() {
    for url in [
        "http://gateway.example.com",
        "http://10.1.2.3:8081",
        "HTTP://[2001:db8::1]:80",
    ] {
        assert!(plaintext_to_remote(url), "{url}");
    }
    for url in [
        "https://gateway.example.com",
        "http://127.0.0.1:8081",
        "http://127.9.9.9",
        "http://localhost:9000/",
        "http://[::1]:8081",
    ] {
        assert!(!plaintext_to_remote(url), "{url}");
    }
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate").unwrap();
    let config = HttpGatewayConfig::new("https://127.0.0.1:1").trusting(Some(&path));
    assert!(HttpGateway::with_config(config).is_err());
    let missing =
        HttpGatewayConfig::new("https://127.0.0.1:1").trusting(Some(dir.path().join("absent.pem")));
    assert!(HttpGateway::with_config(missing).is_err());
}

#[test]
fn backoff_grows_and_stays_bounded() {
    let gateway = HttpGateway::new("http://127.0.0.1:1").unwrap();
    for retry in 0..10 {
        let wait = gateway.backoff(retry);
        let cap = Duration::from_millis(DEFAULT_BACKOFF_BASE_MS * 2u64.pow(retry))
            .min(Duration::from_millis(DEFAULT_BACKOFF_MAX_MS));
        assert!(wait >= cap / 2 && wait <= cap, "retry {retry}: {wait:?}");
    }
}
