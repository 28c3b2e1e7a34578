//! Tenants (platform admin): read, list with page/pageSize, and webhook secret rotation with
//! its overlap window.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{problem, spawn_app_with, Backend, TestApp, ADMIN};

both_backends!(tenants_read_and_list_with_pages, rotated_secrets_overlap);

async fn tenants_read_and_list_with_pages(app: &TestApp) {
    let mut ids = Vec::new();
    for name in ["T1", "T2", "T3"] {
        ids.push(app.tenant(name).await.id);
    }
    let one: Value = app
        .get_json(&format!("/api/tenants/{}", ids[1]), ADMIN)
        .await;
    assert_eq!(
        (one["id"].as_str(), one["name"].as_str()),
        (Some(ids[1].as_str()), Some("T2"))
    );
    assert!(one["createdAt"].as_str().unwrap().ends_with('Z'));
    // Secrets are shown only at creation.
    assert!(one.get("webhookSecret").is_none() && one.get("apiKey").is_none());
    let mut seen = Vec::new();
    for page in [1, 2] {
        let listed: Value = app
            .get_json(&format!("/api/tenants?page={page}&pageSize=2"), ADMIN)
            .await;
        assert_eq!(
            (
                &listed["page"],
                &listed["pageSize"],
                &listed["totalItems"],
                &listed["totalPages"]
            ),
            (&json!(page), &json!(2), &json!(3), &json!(2))
        );
        let items = listed["items"].as_array().unwrap();
        assert_eq!(items.len(), if page == 1 { 2 } else { 1 });
        for item in items {
            assert!(item.get("webhookSecret").is_none());
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    let defaults: Value = app.get_json("/api/tenants", ADMIN).await;
    assert_eq!(
        (&defaults["page"], &defaults["pageSize"]),
        (&json!(1), &json!(10))
    );
    for bad in ["page=0", "pageSize=0", "pageSize=101", "page=x"] {
        problem(
            app.get(&format!("/api/tenants?{bad}"), ADMIN)
                .send()
                .await
                .unwrap(),
            400,
            "invalid_request",
        )
        .await;
    }
    // Unknown and malformed ids are 404s; a tenant key is not the platform token.
    let unknown = "ten_01jd6x2c8ef9r4t7bq5n1k3h2m";
    for path in [
        format!("/api/tenants/{unknown}"),
        "/api/tenants/nope".to_owned(),
    ] {
        problem(
            app.get(&path, ADMIN).send().await.unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    problem(
        app.post(
            &format!("/api/tenants/{unknown}/webhook-secret/rotate"),
            ADMIN,
        )
        .send()
        .await
        .unwrap(),
        404,
        "not_found",
    )
    .await;
    let t = app.tenant("T4").await;
    problem(
        app.get("/api/tenants", &t.key).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
}

/// A well-formed event for an unknown payment: counted as rejected, but only once the
/// signature verifies, so the status tells whether the secret was accepted.
async fn send_signed(app: &TestApp, account: &str, secrets: &[&str]) -> reqwest::Response {
    let now = chrono::Utc::now().timestamp();
    let body = json!({"id": format!("evt_gw_{}", uuid::Uuid::now_v7().simple()), "type": "payment.succeeded",
        "account": account, "created": now,
        "data": {"paymentId": "pay_01jd6x2c8ef9r4t7bq5n1k3h2m", "gatewayReference": "ch_1"}})
    .to_string();
    app.signed_webhook(secrets, &body).await
}

async fn rotate(app: &TestApp, tenant: &str) -> Value {
    let response = app
        .post(
            &format!("/api/tenants/{tenant}/webhook-secret/rotate"),
            ADMIN,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn rotated_secrets_overlap(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let accepted = send_signed(app, &t.id, &[&t.secret]).await;
    assert_eq!(accepted.status(), 200);
    let rotated = rotate(app, &t.id).await;
    let new_secret = rotated["webhookSecret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != t.secret);
    let until =
        chrono::DateTime::parse_from_rfc3339(rotated["previousValidUntil"].as_str().unwrap())
            .unwrap();
    let overlap = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(overlap > chrono::Duration::hours(23), "{overlap}");
    // During the overlap both secrets verify, alone or side by side.
    for secrets in [
        vec![t.secret.as_str()],
        vec![new_secret],
        vec![new_secret, t.secret.as_str()],
    ] {
        let response = send_signed(app, &t.id, &secrets).await;
        assert_eq!(response.status(), 200, "{secrets:?}");
        let summary: Value = response.json().await.unwrap();
        assert_eq!(
            (&summary["received"], &summary["rejected"]),
            (&json!(1), &json!(1))
        );
    }
    problem(
        send_signed(app, &t.id, &["whsec_somethingelse"]).await,
        401,
        "invalid_signature",
    )
    .await;
    // A second rotation retires the first secret at once: only one previous secret is kept.
    let again = rotate(app, &t.id).await;
    let newest = again["webhookSecret"].as_str().unwrap();
    assert_eq!(send_signed(app, &t.id, &[newest]).await.status(), 200);
    assert_eq!(send_signed(app, &t.id, &[new_secret]).await.status(), 200);
    problem(
        send_signed(app, &t.id, &[&t.secret]).await,
        401,
        "invalid_signature",
    )
    .await;
}

/// With no overlap configured, the old secret stops verifying at once.
#[actix_web::test]
async fn rotated_secret_without_overlap_is_refused_at_once() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.secret_overlap_hours = 0
    })
    .await;
    let t = app.tenant("Acme").await;
    let rotated = rotate(&app, &t.id).await;
    let new_secret = rotated["webhookSecret"].as_str().unwrap();
    assert_eq!(send_signed(&app, &t.id, &[new_secret]).await.status(), 200);
    problem(
        send_signed(&app, &t.id, &[&t.secret]).await,
        401,
        "invalid_signature",
    )
    .await;
}
