//! A database that stops answering (frozen behind a proxy that holds every byte): readiness
//! turns 503 within its timeout instead of hanging, writes answer 503 once their query
//! deadline passes and leave nothing behind, and both come back by themselves once the
//! database answers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use payrail::config::Settings;
use secrecy::ExposeSecret as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{problem, spawn_app_with, Backend, TestApp};

/// How long a frozen proxy waits between looks at its switch.
const FROZEN_POLL: Duration = Duration::from_millis(10);

/// Forwards TCP to `target`, holding every byte while `frozen` is set.
async fn proxy(target: String, frozen: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pipe(cr, sw, frozen.clone()));
            tokio::spawn(pipe(sr, cw, frozen.clone()));
        }
    });
    port
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(FROZEN_POLL).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn readyz(client: &reqwest::Client, base: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, started.elapsed())
}

/// The app on the test cluster behind a proxy frozen while `frozen` is set.
async fn app_behind_proxy(frozen: Arc<AtomicBool>, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let base = std::env::var("PAYRAIL_TEST_PG_URL").expect("PAYRAIL_TEST_PG_URL");
    let cluster = url::Url::parse(&base).unwrap();
    let target = format!(
        "{}:{}",
        cluster.host_str().unwrap(),
        cluster.port().unwrap_or(5432)
    );
    let port = proxy(target, frozen.clone()).await;
    spawn_app_with(Backend::Postgres, |s| {
        let mut url = url::Url::parse(s.database_url.as_ref().unwrap().expose_secret()).unwrap();
        url.set_port(Some(port)).unwrap();
        s.database_url = Some(url.to_string().into());
        adjust(s);
    })
    .await
}

async fn ready_again(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if readyz(client, base).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "readiness never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn readiness_follows_a_frozen_database_and_recovers() {
    let frozen = Arc::new(AtomicBool::new(false));
    let app = app_behind_proxy(frozen.clone(), |_| {}).await;
    let client = reqwest::Client::new();
    assert_eq!(readyz(&client, &app.url).await.0, 200);

    frozen.store(true, Ordering::SeqCst);
    let (status, took) = readyz(&client, &app.url).await;
    assert_eq!(status, 503, "a frozen database is not ready");
    assert!(
        took < Duration::from_secs(5),
        "answered in {took:?}, not hung"
    );

    frozen.store(false, Ordering::SeqCst);
    ready_again(&client, &app.url).await;
}

/// A write whose transaction gets no answer is given up after the query deadline: 503 with
/// `Retry-After`, its connection closed (so the held bytes, delivered later, commit nothing),
/// and the next invoice takes the number the abandoned one would have had.
#[actix_web::test]
async fn a_write_to_a_frozen_database_answers_503_and_leaves_nothing() {
    const DEADLINE_MS: u64 = 1_500;
    let frozen = Arc::new(AtomicBool::new(false));
    let app = app_behind_proxy(frozen.clone(), |s| s.db_query_deadline_ms = DEADLINE_MS).await;
    let tenant = app.tenant("Frozen").await;
    let warm = app.invoice(&tenant.key, 1_000, true).await;
    assert_eq!(warm["number"], "INV-000001");

    frozen.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let response = app
        .post("/api/invoices", &tenant.key)
        .json(
            &serde_json::json!({"customerName": "Held", "currency": "USD", "finalize": true,
                                  "lineItems": [{"description": "Seat", "quantity": 1,
                                                 "unitAmount": 700}]}),
        )
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 503, "unavailable").await;
    assert!(
        took >= Duration::from_millis(DEADLINE_MS) && took < Duration::from_secs(8),
        "answered in {took:?}: the query deadline is {DEADLINE_MS} ms"
    );

    frozen.store(false, Ordering::SeqCst);
    let client = reqwest::Client::new();
    ready_again(&client, &app.url).await;
    let next = app.invoice(&tenant.key, 1_000, true).await;
    assert_eq!(
        next["number"], "INV-000002",
        "gap-free numbering after the abandoned write"
    );
    let list: serde_json::Value = app.get_json("/api/invoices", &tenant.key).await;
    let customers: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["customerName"].as_str().unwrap())
        .collect();
    assert_eq!(
        customers.len(),
        2,
        "the abandoned write committed: {customers:?}"
    );
    assert!(!customers.contains(&"Held"));
}
