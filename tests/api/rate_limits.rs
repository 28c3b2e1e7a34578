//! Per-key rate limiting: a key over its budget gets 429 `rate_limited` with `Retry-After`,
//! while other keys keep working.

use crate::helpers::{problem, spawn_app_with, Backend};

const BURST: u32 = 3;

#[actix_web::test]
async fn rate_limit_applies_per_key_with_retry_after() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.rate_limit_per_sec = 1;
        settings.rate_limit_burst = BURST;
    })
    .await;
    // Tenants are created with the platform token, which is not rate limited.
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    // The burst passes; the next request is refused (allow one refill on a slow machine).
    let mut passed = 0;
    let limited = loop {
        let response = app.get("/api/invoices", &a.key).send().await.unwrap();
        if response.status() != 200 {
            break response;
        }
        passed += 1;
        assert!(passed <= BURST + 1, "never rate limited");
    };
    assert!(passed >= BURST, "limited after {passed}");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    problem(limited, 429, "rate_limited").await;
    // Writes are limited too, and nothing is created.
    problem(
        app.post("/api/invoices", &a.key)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap(),
        429,
        "rate_limited",
    )
    .await;
    // Another key is unaffected.
    for _ in 0..BURST {
        let response = app.get("/api/invoices", &b.key).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // The budget refills.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let response = app.get("/api/invoices", &a.key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let listed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(listed["totalItems"], 0);
}
