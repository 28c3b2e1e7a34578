//! Request plumbing: malformed ids in any path are 404s (never 500s), and `X-Request-Id` is
//! echoed when valid and generated otherwise.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{problem, TestApp, ADMIN};

both_backends!(
    oversized_bodies_are_refused_everywhere,
    malformed_ids_are_not_found_everywhere,
    request_ids_are_echoed_or_generated
);

async fn malformed_ids_are_not_found_everywhere(app: &TestApp) {
    let t = app.tenant("Acme").await;
    // Ids of the right shape but another type, wrong lengths, bad characters, encodings.
    let bad_ids = [
        "nope",
        "inv_",
        "inv_01jd6x2c8ef9r4t7bq5n1k3h2",
        "inv_01jd6x2c8ef9r4t7bq5n1k3h2mm",
        "inv_01JD6X2C8EF9R4T7BQ5N1K3H2U",
        "ten_01jd6x2c8ef9r4t7bq5n1k3h2m",
        "pay_01jd6x2c8ef9r4t7bq5n1k3h2m",
        "key_01jd6x2c8ef9r4t7bq5n1k3h2m",
        "%FF%FE",
        "inv_%00",
        "..%2F..",
    ];
    let tenant_routes = [
        ("GET", "/api/invoices/{id}"),
        ("PATCH", "/api/invoices/{id}"),
        ("POST", "/api/invoices/{id}/finalize"),
        ("POST", "/api/invoices/{id}/void"),
        ("POST", "/api/invoices/{id}/mark-uncollectible"),
        ("GET", "/api/invoices/{id}/timeline"),
        ("GET", "/api/payments/{id}"),
        ("GET", "/api/payments/{id}/timeline"),
        ("POST", "/api/payments/{id}/refunds"),
        ("DELETE", "/api/api-keys/{id}"),
    ];
    let admin_routes = [
        ("GET", "/api/tenants/{id}"),
        ("POST", "/api/tenants/{id}/webhook-secret/rotate"),
    ];
    let routes = tenant_routes
        .iter()
        .map(|r| (r, t.key.as_str()))
        .chain(admin_routes.iter().map(|r| (r, ADMIN)));
    for ((method, path), key) in routes {
        for id in bad_ids {
            // An id of the right type for the route would be a real lookup, not a malformed one.
            if path.contains(&id[..id.len().min(3)]) && id.len() == 30 {
                continue;
            }
            let url = format!("{}{}", app.url, path.replace("{id}", id));
            let mut request = app
                .client
                .request(method.parse().unwrap(), url)
                .bearer_auth(key);
            if *method != "GET" && *method != "DELETE" {
                request = request.json(&json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            assert_eq!(status, 404, "{method} {path} with {id}");
            problem(response, 404, "not_found").await;
        }
    }
    // Ids in bodies and queries: an unknown invoice to pay is a 404, a bad filter a 400.
    problem(
        app.pay(&t.key, "not-an-invoice", "4242424242424242", None)
            .await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.get("/api/payments?invoiceId=nope", &t.key)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    problem(
        app.get("/api/invoices?limit=5&startingAfter=nope", &t.key)
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
}

async fn request_ids_are_echoed_or_generated(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let header = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // A valid id is echoed, on successes and on problems (inside the body too).
    for id in ["abc-123", "req_01.X", &"a".repeat(128)] {
        let ok = app
            .get("/api/invoices", &t.key)
            .header("X-Request-Id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(header(&ok).as_deref(), Some(id));
        let missing = app
            .get("/api/invoices/inv_nope", &t.key)
            .header("X-Request-Id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&missing).as_deref(), Some(id));
        let body = problem(missing, 404, "not_found").await;
        assert_eq!(body["requestId"], id);
    }
    // Absent or invalid: a fresh one, different each time, also in problem bodies.
    let mut seen = Vec::new();
    for bad in [
        None,
        Some("has space"),
        Some(""),
        Some("semi;colon"),
        Some(&"a".repeat(129) as &str),
    ] {
        let mut request = app.get("/api/invoices/inv_nope", &t.key);
        if let Some(bad) = bad {
            request = request.header("X-Request-Id", bad);
        }
        let response = request.send().await.unwrap();
        let generated = header(&response).unwrap();
        assert!(
            !generated.is_empty() && Some(generated.as_str()) != bad,
            "{bad:?}"
        );
        let body: Value = problem(response, 404, "not_found").await;
        assert_eq!(body["requestId"], generated.as_str());
        seen.push(generated);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    // Unauthenticated requests, unknown routes and operations endpoints carry one too.
    for path in [
        "/api/invoices",
        "/api/nowhere",
        "/healthz",
        "/metrics",
        "/api/openapi.json",
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert!(header(&response).is_some_and(|h| !h.is_empty()), "{path}");
    }
    let created = app
        .post("/api/tenants", ADMIN)
        .header("X-Request-Id", "create-1")
        .json(&json!({"name": "B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&created).as_deref(), Some("create-1"));
}

async fn oversized_bodies_are_refused_everywhere(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let draft = app.invoice(&t.key, 100, false).await;
    let id = draft["id"].as_str().unwrap();
    let big = format!("{{\"customerName\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    for (method, path, key) in [
        ("POST", "/api/invoices".to_owned(), t.key.as_str()),
        ("PATCH", format!("/api/invoices/{id}"), &t.key),
        ("POST", format!("/api/invoices/{id}/finalize"), &t.key),
        ("POST", "/api/payments".to_owned(), &t.key),
        ("POST", "/api/api-keys".to_owned(), &t.key),
        ("POST", "/api/tenants".to_owned(), ADMIN),
        ("POST", "/api/webhooks/payments".to_owned(), ""),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.url))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        problem(response, 413, "payload_too_large").await;
    }
    // Nothing was changed by the refused requests.
    let now: Value = app.get_json(&format!("/api/invoices/{id}"), &t.key).await;
    assert_eq!(
        (now["status"].as_str(), now["version"].as_u64()),
        (Some("draft"), draft["version"].as_u64())
    );
}
