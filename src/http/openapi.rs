//! The OpenAPI 3.1 document, built from the route table and the error codes in `errors.rs`.

use serde_json::{json, Map, Value};

/// Every route: method, path, summary, success status, and the error statuses it can answer.
pub const ROUTES: &[(&str, &str, &str, u16, &[u16])] = &[
    (
        "post",
        "/api/tenants",
        "Create a tenant (platform admin)",
        201,
        &[400, 401, 413, 422],
    ),
    (
        "get",
        "/api/tenants",
        "List tenants (platform admin)",
        200,
        &[400, 401],
    ),
    (
        "get",
        "/api/tenants/{id}",
        "Get a tenant (platform admin)",
        200,
        &[401, 404],
    ),
    (
        "post",
        "/api/tenants/{id}/webhook-secret/rotate",
        "Rotate the webhook secret",
        200,
        &[401, 404],
    ),
    (
        "post",
        "/api/api-keys",
        "Create an API key",
        201,
        &[400, 401, 403, 413, 422, 429],
    ),
    (
        "get",
        "/api/api-keys",
        "List API keys",
        200,
        &[401, 403, 429],
    ),
    (
        "delete",
        "/api/api-keys/{id}",
        "Revoke an API key",
        204,
        &[401, 403, 404, 429],
    ),
    (
        "post",
        "/api/invoices",
        "Create an invoice",
        201,
        &[400, 401, 403, 409, 413, 422, 429, 503],
    ),
    (
        "get",
        "/api/invoices",
        "List invoices",
        200,
        &[400, 401, 429],
    ),
    (
        "get",
        "/api/invoices/{id}",
        "Get an invoice",
        200,
        &[401, 404, 429],
    ),
    (
        "patch",
        "/api/invoices/{id}",
        "Edit a draft invoice",
        200,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    (
        "post",
        "/api/invoices/{id}/finalize",
        "Finalize a draft",
        200,
        &[401, 403, 404, 409, 422, 429, 503],
    ),
    (
        "post",
        "/api/invoices/{id}/void",
        "Void an invoice (admin)",
        200,
        &[401, 403, 404, 409, 422, 429, 503],
    ),
    (
        "post",
        "/api/invoices/{id}/mark-uncollectible",
        "Mark uncollectible",
        200,
        &[401, 403, 404, 409, 422, 429, 503],
    ),
    (
        "get",
        "/api/invoices/{id}/timeline",
        "Invoice timeline",
        200,
        &[401, 404, 429],
    ),
    (
        "post",
        "/api/payments",
        "Create a payment",
        201,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    (
        "get",
        "/api/payments",
        "List payments",
        200,
        &[400, 401, 429],
    ),
    (
        "get",
        "/api/payments/{id}",
        "Get a payment",
        200,
        &[401, 404, 429],
    ),
    (
        "get",
        "/api/payments/{id}/timeline",
        "Payment timeline",
        200,
        &[401, 404, 429],
    ),
    (
        "post",
        "/api/payments/{id}/refunds",
        "Refund a payment",
        201,
        &[400, 401, 403, 404, 409, 413, 422, 429, 503],
    ),
    ("get", "/api/events", "Audit log", 200, &[400, 401, 429]),
    (
        "post",
        "/api/webhooks/payments",
        "Gateway webhooks",
        200,
        &[400, 401, 413, 503],
    ),
    ("get", "/api/openapi.json", "This document", 200, &[]),
    ("get", "/healthz", "Liveness", 200, &[]),
    ("get", "/readyz", "Readiness", 200, &[503]),
    ("get", "/metrics", "Prometheus metrics", 200, &[]),
];

/// Stable error codes by status, documented on every error response.
const CODES: &[(u16, &str)] = &[
    (400, "invalid_request, invalid_json"),
    (401, "unauthenticated, invalid_signature, stale_signature"),
    (403, "forbidden"),
    (404, "not_found"),
    (409, "invalid_state, idempotency_in_flight, version_conflict"),
    (413, "payload_too_large"),
    (422, "validation_failed, amount_exceeds_remaining, refund_exceeds_captured, idempotency_key_reused"),
    (429, "rate_limited"),
    (503, "overloaded, shutting_down, unavailable"),
];

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, ok, errors) in ROUTES {
        let mut responses = Map::new();
        responses.insert(ok.to_string(), json!({"description": "Success"}));
        for status in *errors {
            let codes = CODES
                .iter()
                .find(|(s, _)| s == status)
                .map_or("", |(_, c)| c);
            responses.insert(
                status.to_string(),
                json!({
                    "description": format!("Problem details; code: {codes}"),
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
                }),
            );
        }
        let mut operation = json!({"summary": summary, "responses": responses});
        if path.contains("{id}") {
            operation["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Payrail API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "code", "detail", "requestId"],
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"},
                        "status": {"type": "integer"}, "code": {"type": "string"},
                        "detail": {"type": "string"}, "requestId": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object", "properties": {
                            "field": {"type": "string"}, "message": {"type": "string"}}}}
                    }
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}]
    })
}
