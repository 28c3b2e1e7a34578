//! A database that stops answering (frozen behind a proxy that holds every byte): readiness
//! turns 503 within its timeout instead of hanging, and comes back by itself once the
//! database answers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{spawn_app_with, Backend};

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

#[actix_web::test]
async fn readiness_follows_a_frozen_database_and_recovers() {
    let frozen = Arc::new(AtomicBool::new(false));
    let base = std::env::var("PAYRAIL_TEST_PG_URL").expect("PAYRAIL_TEST_PG_URL");
    let cluster = url::Url::parse(&base).unwrap();
    let target = format!(
        "{}:{}",
        cluster.host_str().unwrap(),
        cluster.port().unwrap_or(5432)
    );
    let port = proxy(target, frozen.clone()).await;
    let app = spawn_app_with(Backend::Postgres, |s| {
        let mut url = url::Url::parse(s.database_url.as_ref().unwrap().expose_secret()).unwrap();
        url.set_port(Some(port)).unwrap();
        s.database_url = Some(url.to_string().into());
    })
    .await;
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if readyz(&client, &app.url).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "readiness never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
