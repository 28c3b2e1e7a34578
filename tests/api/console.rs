//! The operator console: its assets served from the binary with a strict policy, the two
//! read-only endpoints it needs (tenant volumes, webhook intake), and the whole console in a
//! real headless Chromium driven by Playwright (`tests/python/console_test.py`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, spawn_app_with, Backend, ADMIN};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The browser run's budget; it takes about 20 s.
const BROWSER_RUN_LIMIT: Duration = Duration::from_secs(100);

#[actix_web::test]
async fn console_assets_are_served_from_the_binary_under_a_strict_policy() {
    let app = spawn_app(Backend::Sqlite).await;
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/js/main.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        (
            "/console/vendor/uplot/uPlot.esm.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty());
    }
    let page = app
        .client
        .get(format!("{}/console", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Nothing is loaded from anywhere but this server.
    assert!(!page.contains("http://") && !page.contains("https://"));
    assert!(page.contains(r#"<script type="module" src="/console/js/main.js">"#));
    for missing in [
        "/console/js/nope.js",
        "/console/../Cargo.toml",
        "/console/index.html/x",
    ] {
        let response = app
            .client
            .get(format!("{}{missing}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{missing}");
    }
}

#[actix_web::test]
async fn tenant_volumes_count_what_the_tenant_holds() {
    let app = spawn_app(Backend::Sqlite).await;
    let (acme, other) = (app.tenant("Acme").await, app.tenant("Other").await);
    for amount in [100, 200] {
        app.invoice(&acme.key, amount, true).await;
    }
    let invoice = app.invoice(&acme.key, 300, true).await;
    let paid = app
        .pay(
            &acme.key,
            invoice["id"].as_str().unwrap(),
            "4242424242424242",
            None,
        )
        .await;
    assert_eq!(paid.status(), 201);
    let path = format!("/api/tenants/{}/volumes", acme.id);
    app.eventually(
        &format!("/api/invoices/{}", invoice["id"].as_str().unwrap()),
        &acme.key,
        |v| v["status"] == "paid",
    )
    .await;
    let volumes: Value = app.get_json(&path, ADMIN).await;
    let log: Value = app.get_json("/api/events?limit=100", &acme.key).await;
    assert_eq!(
        volumes,
        json!({"tenantId": acme.id, "invoices": 3, "payments": 1, "refunds": 0,
               "events": log["items"].as_array().unwrap().len()})
    );
    let other_volumes: Value = app
        .get_json(&format!("/api/tenants/{}/volumes", other.id), ADMIN)
        .await;
    assert_eq!(
        (
            other_volumes["invoices"].as_i64(),
            other_volumes["events"].as_i64()
        ),
        (Some(0), Some(1)),
        "only its first key's event: {other_volumes}"
    );
    // Platform admin only; an unknown or malformed tenant is 404.
    let as_tenant = app.get(&path, &acme.key).send().await.unwrap();
    problem(as_tenant, 401, "unauthenticated").await;
    for id in ["ten_01jd6x2c8ef9r4t7bq5n1k3h2m", "nope"] {
        let response = app
            .get(&format!("/api/tenants/{id}/volumes"), ADMIN)
            .send()
            .await
            .unwrap();
        problem(response, 404, "not_found").await;
    }
}

#[actix_web::test]
async fn webhook_intake_counts_each_tenants_outcomes() {
    let app = spawn_app(Backend::Sqlite).await;
    let (acme, other) = (app.tenant("Acme").await, app.tenant("Other").await);
    // Events about payments that don't exist: received, and rejected.
    let events: Vec<Value> = (0..3)
        .map(|i| {
            json!({"id": format!("evt_gw_{i}"), "type": "payment.succeeded",
                        "data": {"paymentId": "pay_01jd6x2c8ef9r4t7bq5n1k3h2m"}})
        })
        .collect();
    let body = json!({"account": acme.id, "events": events}).to_string();
    let answer: Value = app
        .signed_webhook(&[&acme.secret], &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (answer["received"].as_u64(), answer["rejected"].as_u64()),
        (Some(3), Some(3))
    );

    let intake: Value = app.get_json("/api/webhooks/intake", &acme.key).await;
    assert_eq!(intake["bucketSeconds"], 10);
    let buckets = intake["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 90);
    let sum = |buckets: &[Value], field: &str| -> u64 {
        buckets.iter().map(|b| b[field].as_u64().unwrap()).sum()
    };
    assert_eq!(
        ["received", "applied", "duplicates", "ignored", "rejected"].map(|f| sum(buckets, f)),
        [3, 0, 0, 0, 3]
    );
    assert!(
        buckets.last().unwrap()["received"].as_u64().unwrap() == 3
            || buckets[buckets.len() - 2]["received"].as_u64().unwrap() == 3
    );
    let starts: Vec<i64> = buckets
        .iter()
        .map(|b| {
            chrono::DateTime::parse_from_rfc3339(b["start"].as_str().unwrap())
                .unwrap()
                .timestamp()
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[1] - w[0] == 10));
    // Another tenant's intake is its own.
    let theirs: Value = app.get_json("/api/webhooks/intake", &other.key).await;
    assert_eq!(sum(theirs["buckets"].as_array().unwrap(), "received"), 0);
    let anonymous = app
        .client
        .get(format!("{}/api/webhooks/intake", app.url))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401, "unauthenticated").await;
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The console in headless Chromium: sign-in (a wrong key first), the platform view, invoices
/// created through the API, filters and paging, an invoice whose payment's webhooks reach its
/// timeline live, payments, an outbound webhook endpoint with its attempts log (filtered and
/// paged), webhook intake, system charts, keyboard-only navigation, an axe accessibility check
/// and sign-out. Screenshots go to `target/console-artefacts/`.
#[actix_web::test]
async fn console_in_a_real_browser() {
    let python = std::env::var("PAYRAIL_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PAYRAIL_TEST_PYTHON is not set: run the suite with scripts/test, which builds the \
             Python environment with Playwright (tests/python/requirements.txt)"
        )
    });
    assert!(
        Path::new(&python).exists(),
        "PAYRAIL_TEST_PYTHON={python} does not exist: run scripts/test to create it"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package (scripts/test does, as root)"
    );
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.stream_heartbeat_ms = 2_000;
        // The endpoints scenario subscribes a plain-HTTP receiver on 127.0.0.1.
        s.outbound.allow_http = true;
        s.outbound.allow_private_targets = true;
    })
    .await;
    let artefacts = repo_path("target/console-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let mut child = tokio::process::Command::new(&python)
        .arg(repo_path("tests/python/console_test.py"))
        .env("PAYRAIL_URL", &app.url)
        .env("PAYRAIL_ADMIN_TOKEN", ADMIN)
        .env("PAYRAIL_CHROMIUM", CHROMIUM)
        .env("PAYRAIL_ARTEFACTS", &artefacts)
        .env(
            "PAYRAIL_AXE",
            repo_path("tests/python/vendor/axe-core/axe.min.js"),
        )
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(BROWSER_RUN_LIMIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the browser run took over {BROWSER_RUN_LIMIT:?}"))
        .unwrap();
    assert!(
        status.success(),
        "the browser scenarios failed ({status}); screenshots in {}",
        artefacts.display()
    );
}
