//! Authentication, roles and tenant isolation: keys and roles are enforced, another tenant's id
//! answers 404 `not_found` on every endpoint that takes one, changes nothing, and lists never
//! show another tenant's rows.

use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{problem, TestApp};

both_backends!(
    authentication_roles_and_tenant_isolation,
    every_id_endpoint_hides_other_tenants,
    lists_show_only_own_rows
);

/// `prk_<keyId>_<secret>` → `keyId`.
pub fn key_id(key: &str) -> String {
    key["prk_".len().."prk_".len() + 30].to_owned()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

async fn every_id_endpoint_hides_other_tenants(app: &TestApp) {
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    let draft = app.invoice(&a.key, 100, false).await;
    let open = app.invoice(&a.key, 100, true).await;
    let (draft_id, open_id) = (draft["id"].as_str().unwrap(), open["id"].as_str().unwrap());
    let payment = json_of(
        app.pay(&a.key, open_id, "4242424242424242", Some(100))
            .await,
    )
    .await;
    let payment_id = payment["id"].as_str().unwrap();
    let a_key_id = key_id(&a.key);
    let patch = json!({"customerName": "Mallory"});
    let refund = json!({"amount": 1});
    // (method, path, body) with B's admin key: every one must be a 404, never a 403.
    let requests: Vec<(&str, String, Option<&Value>)> = vec![
        ("GET", format!("/api/invoices/{draft_id}"), None),
        ("PATCH", format!("/api/invoices/{draft_id}"), Some(&patch)),
        ("POST", format!("/api/invoices/{draft_id}/finalize"), None),
        ("POST", format!("/api/invoices/{open_id}/void"), None),
        (
            "POST",
            format!("/api/invoices/{open_id}/mark-uncollectible"),
            None,
        ),
        ("GET", format!("/api/invoices/{open_id}/timeline"), None),
        ("GET", format!("/api/payments/{payment_id}"), None),
        ("GET", format!("/api/payments/{payment_id}/timeline"), None),
        (
            "POST",
            format!("/api/payments/{payment_id}/refunds"),
            Some(&refund),
        ),
        ("DELETE", format!("/api/api-keys/{a_key_id}"), None),
    ];
    for (method, path, body) in &requests {
        let mut request = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.url))
            .bearer_auth(&b.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let body = problem(request.send().await.unwrap(), 404, "not_found").await;
        // The answer must not reveal that the id exists elsewhere.
        let text = body.to_string();
        assert!(!text.contains(&a.id), "{method} {path}: {text}");
    }
    // Paying another tenant's invoice is a 404 as well.
    problem(
        app.pay(&b.key, open_id, "4242424242424242", None).await,
        404,
        "not_found",
    )
    .await;
    // Nothing changed on A's side.
    let draft_now = json_of(
        app.get(&format!("/api/invoices/{draft_id}"), &a.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (
            draft_now["status"].as_str(),
            draft_now["customerName"].as_str()
        ),
        (Some("draft"), Some("Jane Doe"))
    );
    let open_now = json_of(
        app.get(&format!("/api/invoices/{open_id}"), &a.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(open_now["status"], "void");
    assert_ne!(open_now["status"], "uncollectible");
    let payment_now = json_of(
        app.get(&format!("/api/payments/{payment_id}"), &a.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(payment_now["amountRefunded"], 0);
    // A's key still works: B could not revoke it.
    assert_eq!(
        app.get("/api/invoices", &a.key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn lists_show_only_own_rows(app: &TestApp) {
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    let a_invoice = app.invoice(&a.key, 100, true).await;
    let a_invoice_id = a_invoice["id"].as_str().unwrap().to_owned();
    let a_payment = json_of(
        app.pay(&a.key, &a_invoice_id, "4242424242424242", None)
            .await,
    )
    .await;
    let a_payment_id = a_payment["id"].as_str().unwrap().to_owned();
    let a_extra_key = json_of(
        app.post("/api/api-keys", &a.key)
            .json(&json!({"name": "ci", "role": "operator"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let a_ids = [
        a_invoice_id.clone(),
        a_payment_id.clone(),
        key_id(&a.key),
        a_extra_key["id"].as_str().unwrap().to_owned(),
        a.id.clone(),
    ];
    // B has rows of its own, so an empty list proves nothing by accident.
    let b_invoice = app.invoice(&b.key, 200, true).await;
    let b_invoice_id = b_invoice["id"].as_str().unwrap();
    let b_payment = json_of(
        app.pay(&b.key, b_invoice_id, "4242424242424242", None)
            .await,
    )
    .await;
    let b_key_id = key_id(&b.key);
    let own = [
        b_invoice_id,
        b_payment["id"].as_str().unwrap(),
        b_key_id.as_str(),
    ];
    for path in [
        "/api/invoices",
        "/api/invoices?limit=100",
        "/api/invoices?customer=jane",
        "/api/payments",
        &format!("/api/payments?invoiceId={a_invoice_id}"),
        "/api/events?limit=100",
        &format!("/api/events?subjectId={a_invoice_id}"),
        &format!("/api/events?subjectId={a_payment_id}"),
        "/api/api-keys",
    ] {
        let response = app.get(path, &b.key).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let listed: Value = response.json().await.unwrap();
        let text = listed.to_string();
        for id in &a_ids {
            assert!(!text.contains(id.as_str()), "{path} shows A's {id}: {text}");
        }
        for item in listed["items"].as_array().unwrap() {
            let subject = item["subjectId"].as_str().or(item["id"].as_str()).unwrap();
            assert!(
                own.contains(&subject) || item["invoiceId"] == b_invoice_id,
                "{path}: unexpected {item}"
            );
        }
    }
    // B's own lists are not empty.
    let invoices = json_of(app.get("/api/invoices", &b.key).send().await.unwrap()).await;
    assert_eq!(invoices["totalItems"], 1);
    let payments = json_of(app.get("/api/payments", &b.key).send().await.unwrap()).await;
    assert_eq!(payments["totalItems"], 1);
    let keys = json_of(app.get("/api/api-keys", &b.key).send().await.unwrap()).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
}

async fn authentication_roles_and_tenant_isolation(app: &TestApp) {
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    let invoice = app.invoice(&a.key, 100, true).await;
    let id = invoice["id"].as_str().unwrap();
    problem(
        app.client
            .get(format!("{}/api/invoices", app.url))
            .send()
            .await
            .unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    problem(
        app.get("/api/invoices", "prk_key_bogus_secret")
            .send()
            .await
            .unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    problem(
        app.post("/api/tenants", &a.key)
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    for path in [
        format!("/api/invoices/{id}"),
        format!("/api/invoices/{id}/timeline"),
    ] {
        problem(
            app.get(&path, &b.key).send().await.unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    problem(
        app.post(&format!("/api/invoices/{id}/void"), &b.key)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    problem(
        app.pay(&b.key, id, "4242424242424242", None).await,
        404,
        "not_found",
    )
    .await;
    let listed: Value = app.get_json("/api/invoices", &b.key).await;
    assert_eq!(listed["totalItems"], 0);
    problem(
        app.get("/api/invoices/inv_notanid", &a.key)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    // Roles: a viewer reads but cannot write; an operator cannot void or manage keys.
    let viewer: Value = app
        .post("/api/api-keys", &a.key)
        .json(&json!({"name": "v", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer_key = viewer["key"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/invoices/{id}"), viewer_key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    problem(
        app.post("/api/invoices", viewer_key)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let operator_key = &app.api_key(&a.key, "o", "operator").await;
    problem(
        app.post(&format!("/api/invoices/{id}/void"), operator_key)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    problem(
        app.get("/api/api-keys", operator_key).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    // Revocation is effective at once.
    let revoke = app
        .client
        .delete(format!(
            "{}/api/api-keys/{}",
            app.url,
            viewer["id"].as_str().unwrap()
        ))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    problem(
        app.get("/api/invoices", viewer_key).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    let listed: Value = app.get_json("/api/api-keys", &a.key).await;
    assert!(!serde_json::to_string(&listed).unwrap().contains(viewer_key));
}
