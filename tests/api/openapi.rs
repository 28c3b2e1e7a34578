//! The OpenAPI document: every route the contract lists, with its error responses, every `$ref`
//! resolving, every documented operation actually routed, real bodies matching their schemas,
//! and Swagger UI served from the binary.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, TestApp, ADMIN};

/// The contract's routes: method, path, success status, and the error statuses it can answer.
const ROUTES: &[(&str, &str, u16, &[u16])] = &[
    ("post", "/api/tenants", 201, &[400, 401, 409, 413, 422, 503]),
    ("get", "/api/tenants", 200, &[400, 401]),
    ("get", "/api/tenants/{id}", 200, &[401, 404]),
    ("get", "/api/tenants/{id}/volumes", 200, &[401, 404]),
    (
        "post",
        "/api/tenants/{id}/webhook-secret/rotate",
        200,
        &[400, 401, 404, 409, 413, 422, 503],
    ),
    (
        "post",
        "/api/api-keys",
        201,
        &[400, 401, 403, 409, 413, 422, 429],
    ),
    ("get", "/api/api-keys", 200, &[401, 403, 429]),
    ("delete", "/api/api-keys/{id}", 204, &[401, 403, 404, 429]),
    (
        "post",
        "/api/webhook-endpoints",
        201,
        &[400, 401, 403, 409, 413, 422, 429, 503],
    ),
    ("get", "/api/webhook-endpoints", 200, &[401, 429]),
    ("get", "/api/webhook-endpoints/{id}", 200, &[401, 404, 429]),
    (
        "patch",
        "/api/webhook-endpoints/{id}",
        200,
        &[400, 401, 403, 404, 413, 422, 429, 503],
    ),
    (
        "delete",
        "/api/webhook-endpoints/{id}",
        204,
        &[401, 403, 404, 429],
    ),
    (
        "post",
        "/api/webhook-endpoints/{id}/secret/rotate",
        200,
        &[400, 401, 403, 404, 409, 422, 429, 503],
    ),
    (
        "get",
        "/api/webhook-endpoints/{id}/attempts",
        200,
        &[400, 401, 404, 429],
    ),
    (
        "post",
        "/api/webhook-endpoints/{id}/replay",
        202,
        &[400, 401, 403, 404, 409, 422, 429, 503],
    ),
    (
        "post",
        "/api/events/{id}/redeliver",
        202,
        &[400, 401, 403, 404, 409, 422, 429, 503],
    ),
    (
        "post",
        "/api/invoices",
        201,
        &[400, 401, 403, 409, 413, 422, 429, 503],
    ),
    ("get", "/api/invoices", 200, &[400, 401, 429]),
    ("get", "/api/invoices/{id}", 200, &[401, 404, 429]),
    (
        "patch",
        "/api/invoices/{id}",
        200,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    (
        "post",
        "/api/invoices/{id}/finalize",
        200,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    (
        "post",
        "/api/invoices/{id}/void",
        200,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    (
        "post",
        "/api/invoices/{id}/mark-uncollectible",
        200,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    ("get", "/api/invoices/{id}/timeline", 200, &[401, 404, 429]),
    (
        "post",
        "/api/payments",
        201,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    ("get", "/api/payments", 200, &[400, 401, 429]),
    ("get", "/api/payments/{id}", 200, &[401, 404, 429]),
    ("get", "/api/payments/{id}/timeline", 200, &[401, 404, 429]),
    (
        "post",
        "/api/payments/{id}/refunds",
        201,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    ("get", "/api/events", 200, &[400, 401, 429]),
    ("get", "/api/events/stream", 200, &[400, 401, 429, 503]),
    ("post", "/api/webhooks/payments", 200, &[400, 401, 413, 503]),
    ("get", "/api/webhooks/intake", 200, &[401, 429]),
    ("get", "/api/openapi.json", 200, &[]),
    ("get", "/healthz", 200, &[]),
    ("get", "/readyz", 200, &[503]),
    ("get", "/metrics", 200, &[]),
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/api/openapi.json", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Every operation of the document as `(method, path, operation)`.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                found.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    found
}

/// The `code` values a problem response declares: its schema is `Problem` with `code`
/// narrowed to an enum.
fn problem_codes(response: &Value) -> Option<Vec<String>> {
    let schema = &response["content"]["application/problem+json"]["schema"];
    let parts = schema["allOf"].as_array()?;
    if parts.first()?["$ref"] != "#/components/schemas/Problem" {
        return None;
    }
    let codes: Vec<String> = parts
        .get(1)?
        .pointer("/properties/code/enum")?
        .as_array()?
        .iter()
        .map(|c| c.as_str().map(str::to_owned))
        .collect::<Option<_>>()?;
    (!codes.is_empty()).then_some(codes)
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    refs.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, refs);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[actix_web::test]
async fn openapi_lists_every_route_with_its_errors() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let ops = operations(&doc);
    // The document and the contract's route list are the same set.
    let mut documented: Vec<_> = ops.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    let mut expected: Vec<_> = ROUTES
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);
    let mut operation_ids: Vec<_> = ops
        .iter()
        .map(|(m, p, op)| {
            op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {p}: no operationId"))
                .to_owned()
        })
        .collect();
    operation_ids.sort();
    operation_ids.dedup();
    assert_eq!(
        operation_ids.len(),
        ops.len(),
        "operationIds must be unique"
    );
    for (method, path, ok, errors) in ROUTES {
        let op = &doc["paths"][*path][*method];
        assert!(
            op["responses"][ok.to_string()].is_object(),
            "{method} {path}: no {ok}"
        );
        assert!(op["summary"].is_string(), "{method} {path}: no summary");
        for status in *errors {
            let response = &op["responses"][status.to_string()];
            let codes = problem_codes(response)
                .unwrap_or_else(|| panic!("{method} {path}: {status} is not a problem response"));
            let description = response["description"].as_str().unwrap_or_default();
            for code in &codes {
                assert!(
                    description.contains(&format!("`{code}`")),
                    "{method} {path}: {status} lists {code} but does not describe it"
                );
            }
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("code: `")),
                "{method} {path}: {status} names no code"
            );
            if *status == 429 || *status == 503 {
                assert!(
                    response["headers"]["Retry-After"].is_object(),
                    "{method} {path}: {status} without Retry-After"
                );
            }
        }
        // Every POST but the gateway's webhooks (deduplicated by event id) takes a key.
        if *method == "post" && !path.starts_with("/api/webhooks") {
            let params = op["parameters"].as_array().unwrap();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
                "{method} {path}: Idempotency-Key missing"
            );
            for (status, code) in [
                (409, "idempotency_in_flight"),
                (422, "idempotency_key_reused"),
            ] {
                let description = op["responses"][status.to_string()]["description"].as_str();
                assert!(
                    description.is_some_and(|d| d.contains(code)),
                    "{method} {path}: {code} undocumented"
                );
            }
        }
        if path.contains("{id}") {
            let params = op["parameters"].as_array().unwrap();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "id" && p["in"] == "path"),
                "{method} {path}: id parameter missing"
            );
        }
        // Every problem response of an operation carries a stable code, whatever the route.
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(response["content"]["application/problem+json"].is_object());
            }
        }
    }
    // Codes the contract names appear somewhere in the document.
    let text = doc.to_string();
    for code in [
        "invalid_request",
        "invalid_json",
        "unauthenticated",
        "invalid_signature",
        "stale_signature",
        "forbidden",
        "not_found",
        "invalid_state",
        "idempotency_in_flight",
        "version_conflict",
        "payload_too_large",
        "validation_failed",
        "amount_exceeds_remaining",
        "idempotency_key_reused",
        "rate_limited",
        "overloaded",
        "shutting_down",
    ] {
        assert!(text.contains(&format!("`{code}`")), "{code} undocumented");
    }
}

#[actix_web::test]
async fn openapi_refs_resolve_and_security_schemes_exist() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = document(&app).await;
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} points outside the document"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for (_, _, op) in operations(&doc) {
        for requirement in op["security"].as_array().into_iter().flatten() {
            for name in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(name), "unknown scheme {name}");
            }
        }
    }
    // Request bodies of writes are typed, and unknown fields are refused (documented or not).
    for (method, path) in [
        ("post", "/api/invoices"),
        ("patch", "/api/invoices/{id}"),
        ("post", "/api/payments"),
        ("post", "/api/payments/{id}/refunds"),
        ("post", "/api/tenants"),
        ("post", "/api/api-keys"),
        ("post", "/api/webhooks/payments"),
    ] {
        let body = &doc["paths"][path][method]["requestBody"]["content"]["application/json"];
        assert!(
            body["schema"].is_object(),
            "{method} {path}: no body schema"
        );
    }
}

/// Each documented operation is served: without credentials it answers anything but the
/// router's own 404/405.
#[actix_web::test]
async fn openapi_operations_are_all_routed() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = document(&app).await;
    for (method, path, _) in operations(&doc) {
        let url = format!(
            "{}{}",
            app.url,
            path.replace("{id}", "inv_01jd6x2c8ef9r4t7bq5n1k3h2m")
        );
        let request = app
            .client
            .request(method.to_uppercase().parse().unwrap(), url);
        let status = request.send().await.unwrap().status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} is documented but not routed ({status})"
        );
    }
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

/// A real body has exactly the schema's properties, and every required one.
fn assert_matches(doc: &Value, name: &str, body: &Value) {
    let schema = schema(doc, name);
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has no properties"));
    let mut expected: Vec<_> = properties.keys().cloned().collect();
    let mut actual: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected, "{name} differs from a real body");
    for required in schema["required"].as_array().into_iter().flatten() {
        assert!(body.get(required.as_str().unwrap()).is_some());
    }
}

#[actix_web::test]
async fn openapi_schemas_match_real_responses() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = document(&app).await;
    let t = app.tenant("Acme").await;
    let invoice = app.invoice(&t.key, 1_000, true).await;
    assert_matches(&doc, "Invoice", &invoice);
    assert_matches(&doc, "LineItem", &invoice["lineItems"][0]);
    let payment = app.card_payment(&t.key, &invoice).await;
    assert_matches(&doc, "Payment", &payment);
    assert_matches(&doc, "CardSummary", &payment["paymentMethod"]);
    let created: Value = app
        .post("/api/tenants", ADMIN)
        .json(&json!({"name": "Other"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_matches(&doc, "KeyCreated", &created["apiKey"]);
    let tenant: Value = app
        .get_json(
            &format!("/api/tenants/{}", created["id"].as_str().unwrap()),
            ADMIN,
        )
        .await;
    assert_matches(&doc, "Tenant", &tenant);
    let events: Value = app.get_json("/api/events", &t.key).await;
    assert_matches(&doc, "EventPage", &events);
    assert_matches(&doc, "Event", &events["items"][0]);
    let keys: Value = app.get_json("/api/api-keys", &t.key).await;
    assert_matches(&doc, "ApiKey", &keys["items"][0]);
    let problem: Value = app.get_json("/api/invoices/inv_nope", &t.key).await;
    let mut problem_keys: Vec<_> = problem.as_object().unwrap().keys().cloned().collect();
    problem_keys.sort();
    assert_eq!(
        problem_keys,
        ["code", "detail", "requestId", "status", "title", "type"]
    );
}

#[actix_web::test]
async fn openapi_swagger_ui_and_operations_endpoints_answer() {
    let app = spawn_app(Backend::Sqlite).await;
    let ui = app
        .client
        .get(format!("{}/swagger-ui/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = ui.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"));
    let init = app
        .client
        .get(format!("{}/swagger-ui/swagger-initializer.js", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/api/openapi.json"), "{init}");
    let health = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("payrail_http_requests_total")
            && metrics.contains("payrail_commit_batches_total")
    );
}
