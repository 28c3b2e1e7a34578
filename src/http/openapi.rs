//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and the
//! views' `ToSchema` derives. One list of handlers feeds both the document and the router, so a
//! route can't be served without being documented.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::web;
use payrail_actors::domain::{ApiKeyId, EndpointId, EventId, InvoiceId, PaymentId, TenantId};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::AllOfBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type,
};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::constraints::{typeid_pattern, IDEMPOTENCY_KEY_PATTERN};
use super::errors::{Problem, PROBLEM_JSON};
use super::idempotency::{HEADER as IDEMPOTENCY_HEADER, KEY_MAX_CHARS};
use super::openapi_text::NulFreeRequestText;
use super::{
    api_keys, events, intake, invoices, ops, payments, stream, tenants, volumes,
    webhook_deliveries, webhook_endpoints, webhooks,
};

/// Where the document is served; Swagger UI loads it from here.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";
/// Security scheme names used by the handlers' annotations.
pub const API_KEY_SCHEME: &str = "apiKey";
pub const ADMIN_TOKEN_SCHEME: &str = "adminToken";

macro_rules! api {
    ($($module:ident :: $handler:ident),* $(,)?) => {
        #[derive(OpenApi)]
        #[openapi(
            info(
                title = "Payrail API",
                description = "Multi-tenant invoicing and payments. Errors are RFC 9457 problem \
                    details (`application/problem+json`) with a stable `code`; every response \
                    carries `X-Request-Id`."
            ),
            paths(webhooks::receive, $($module::$handler),*),
            components(schemas(Problem)),
            modifiers(&SecuritySchemes, &SharedParameters, &NulFreeRequestText),
            tags(
                (name = "tenants", description = "Tenant management (platform admin token)"),
                (name = "api-keys", description = "Tenant API keys (tenant admin)"),
                (name = "invoices", description = "Invoices and their state machine"),
                (name = "payments", description = "Payments and refunds"),
                (name = "events", description = "The tenant's audit log"),
                (name = "webhooks", description = "Outcomes reported by the payment gateway"),
                (name = "webhook-endpoints", description = "Events to tenants: outbound webhooks (Standard Webhooks)"),
                (name = "operations", description = "Health, readiness, metrics, this document"),
            )
        )]
        pub struct ApiDoc;

        /// Registers every documented handler with the router. The gateway's webhooks, the
        /// hottest route by far, come first: the router tries routes in order, and each route
        /// with a path parameter before it costs a regex match per request.
        pub fn services(cfg: &mut web::ServiceConfig) {
            cfg.service(webhooks::receive);
            $(cfg.service($module::$handler);)*
        }
    };
}

api!(
    tenants::create,
    tenants::list,
    tenants::get,
    tenants::rotate,
    volumes::get,
    api_keys::create,
    api_keys::list,
    api_keys::revoke,
    invoices::create,
    invoices::list,
    invoices::get,
    invoices::update,
    invoices::finalize,
    invoices::void,
    invoices::mark_uncollectible,
    invoices::timeline,
    payments::create,
    payments::list,
    payments::get,
    payments::timeline,
    payments::refund,
    events::list,
    stream::subscribe,
    webhook_endpoints::create,
    webhook_endpoints::list,
    webhook_endpoints::get,
    webhook_endpoints::update,
    webhook_endpoints::remove,
    webhook_endpoints::rotate,
    webhook_deliveries::attempts,
    webhook_deliveries::replay,
    webhook_deliveries::redeliver,
    intake::get,
    ops::healthz,
    ops::readyz,
    ops::metrics,
    ops::openapi,
);

/// How every POST documents its optional `Idempotency-Key` header.
pub const IDEMPOTENCY_KEY: &str = "1-255 printable ASCII chars, scoped per tenant (the platform \
    admin is a scope of its own); replays the first answer for 24 h. Use a random value (a UUID): \
    where the answer holds a secret, the stored copy is encrypted under this key.";

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The document as served, built once: [`document`] with what utoipa's types cannot state.
pub fn served_document() -> &'static serde_json::Value {
    static SERVED: OnceLock<serde_json::Value> = OnceLock::new();
    SERVED.get_or_init(|| {
        let document = serde_json::to_value(document()).unwrap_or_default();
        with_created_links(super::openapi_text::with_items(document))
    })
}

/// Swagger UI at `/swagger-ui/`, reading the document from [`DOCUMENT_PATH`]. Its assets are
/// vendored into the binary at build time.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/swagger-ui/{_:.*}").config(Config::new([DOCUMENT_PATH]))
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            API_KEY_SCHEME,
            bearer("A tenant API key: `prk_<keyId>_<secret>`"),
        );
        components.add_security_scheme(
            ADMIN_TOKEN_SCHEME,
            bearer("The platform admin token (`PAYRAIL_ADMIN_TOKEN`)"),
        );
    }
}

/// Which TypeID a path's `{id}` is, by the path it is under, and its parser.
type PathId = (&'static str, &'static str, fn(&str) -> bool);
const PATH_IDS: [PathId; 6] = [
    ("/api/tenants/{id}", TenantId::PREFIX, parses::<TenantId>),
    ("/api/api-keys/{id}", ApiKeyId::PREFIX, parses::<ApiKeyId>),
    ("/api/invoices/{id}", InvoiceId::PREFIX, parses::<InvoiceId>),
    ("/api/payments/{id}", PaymentId::PREFIX, parses::<PaymentId>),
    (
        "/api/webhook-endpoints/{id}",
        EndpointId::PREFIX,
        parses::<EndpointId>,
    ),
    ("/api/events/{id}", EventId::PREFIX, parses::<EventId>),
];

fn parses<T: std::str::FromStr>(raw: &str) -> bool {
    raw.parse::<T>().is_ok()
}

fn path_id(template: &str) -> Option<&'static PathId> {
    PATH_IDS
        .iter()
        .find(|(under, _, _)| template.starts_with(under))
}

/// Whether `segment` can be the `{id}` of a documented path `template`: a well-formed id of its
/// type (a malformed one is an unknown resource), or any segment where no TypeID is named.
pub fn path_id_fits(template: &str, segment: &str) -> bool {
    match path_id(template) {
        Some((_, _, valid)) => valid(segment),
        None => !segment.is_empty(),
    }
}

/// What a created resource's `id` is the path `{id}` of, stated as OpenAPI links on the
/// creating operation's answer: the operation (path of a POST, status) and the operations
/// taking the id. Tools follow them from a creation to what it enables (Schemathesis' stateful
/// phase does; it infers no link from a `201` whose body is an `allOf`, as `EndpointCreated` is).
type CreatedLink = (&'static str, &'static str, &'static [&'static str]);
const CREATED_LINKS: [CreatedLink; 1] = [(
    "/api/webhook-endpoints",
    "201",
    &[
        "getWebhookEndpoint",
        "updateWebhookEndpoint",
        "deleteWebhookEndpoint",
        "rotateWebhookEndpointSecret",
        "listWebhookAttempts",
        "replayWebhookEndpoint",
    ],
)];

/// [`CREATED_LINKS`] added to the document's JSON: utoipa (5.5) writes a link's `operationId`
/// as `operation_id`, which no tool reads.
fn with_created_links(mut document: serde_json::Value) -> serde_json::Value {
    for (path, status, targets) in CREATED_LINKS {
        let response = document
            .get_mut("paths")
            .and_then(|paths| paths.get_mut(path))
            .and_then(|item| item.get_mut("post"))
            .and_then(|post| post.get_mut("responses"))
            .and_then(|responses| responses.get_mut(status))
            .and_then(|response| response.as_object_mut());
        // A response that is gone fails `created_links_name_documented_operations`.
        let Some(response) = response else {
            continue;
        };
        let links: serde_json::Map<String, serde_json::Value> = targets
            .iter()
            .map(|target| {
                let link = serde_json::json!({
                    "operationId": target,
                    "parameters": {"id": "$response.body#/id"},
                    "description": "The created resource's `id`",
                });
                ((*target).to_owned(), link)
            })
            .collect();
        response.insert("links".into(), links.into());
    }
    document
}

/// Parameters many handlers declare, given the exact shape the server checks: the
/// `Idempotency-Key` header and the TypeID in a path.
struct SharedParameters;

impl Modify for SharedParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let id_prefix = path_id(path).map(|(_, prefix, _)| *prefix);
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                constrain_parameters(operation, id_prefix);
            }
        }
    }
}

fn constrain_parameters(operation: &mut Operation, id_prefix: Option<&str>) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let schema = match (&parameter.parameter_in, parameter.name.as_str()) {
            (ParameterIn::Header, IDEMPOTENCY_HEADER) => ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(KEY_MAX_CHARS))
                .pattern(Some(IDEMPOTENCY_KEY_PATTERN)),
            (ParameterIn::Path, "id") => match id_prefix {
                Some(prefix) => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(typeid_pattern(prefix))),
                None => continue,
            },
            _ => continue,
        };
        parameter.schema = Some(schema.build().into());
    }
}

/// One problem response: the `Problem` schema with `code` narrowed to the codes it may carry,
/// and `Retry-After` where the server sends it.
fn problem(status: u16, codes: &[&str]) -> BTreeMap<String, RefOr<Response>> {
    let list: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
    let narrowed = ObjectBuilder::new().property(
        "code",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes.iter().copied())),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("Problem"))
        .item(narrowed);
    let mut response = ResponseBuilder::new()
        .description(format!("Problem details; code: {}", list.join(", ")))
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Schema::AllOf(schema.build())))
                .build(),
        );
    if status == 429 || status == 503 {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    BTreeMap::from([(status.to_string(), response.build().into())])
}

/// Marker types for the problem responses handlers list in `responses(...)`; each names the
/// stable codes it documents.
macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident = $status:literal [$($code:literal),+];)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    problem($status, &[$($code),+])
                }
            }
        )*

        /// Every `(status, code)` some response documents.
        pub const DOCUMENTED_CODES: &[(u16, &str)] = &[$($(($status, $code)),+),*];
    };
}

problems! {
    /// Malformed JSON, a wrong field type or an unknown field, or a bad header.
    BadRequest = 400 ["invalid_request", "invalid_json"];
    /// A bad query parameter or header (e.g. `Idempotency-Key`).
    InvalidParameter = 400 ["invalid_request"];
    Unauthenticated = 401 ["unauthenticated"];
    /// A webhook whose signature or account does not verify.
    SignatureRefused = 401 ["invalid_signature", "stale_signature"];
    Forbidden = 403 ["forbidden"];
    /// Absent, malformed id, or another tenant's.
    NotFound = 404 ["not_found"];
    /// The state machine forbids it, or the same idempotency key is still running.
    Conflict = 409 ["invalid_state", "idempotency_in_flight", "version_conflict"];
    /// The same idempotency key is still running.
    InFlight = 409 ["idempotency_in_flight"];
    /// The state machine forbids it (editing a non-draft).
    StateConflict = 409 ["invalid_state", "version_conflict"];
    PayloadTooLarge = 413 ["payload_too_large"];
    /// Field rules, or an idempotency key reused with a different body.
    Unprocessable = 422 ["validation_failed", "idempotency_key_reused"];
    /// Field rules only.
    Invalid = 422 ["validation_failed"];
    /// Field rules, a refused webhook target, or an idempotency key reused.
    UrlRefused = 422 ["validation_failed", "invalid_url", "idempotency_key_reused"];
    /// An idempotency key reused with a different request.
    KeyReused = 422 ["idempotency_key_reused"];
    /// Field rules, or more than the invoice's remaining balance.
    PaymentRefused = 422 ["validation_failed", "amount_exceeds_remaining", "idempotency_key_reused"];
    /// Field rules, or more than the payment's captured amount.
    RefundRefused = 422 ["validation_failed", "refund_exceeds_captured", "idempotency_key_reused"];
    /// Too many requests for this API key.
    RateLimited = 429 ["rate_limited"];
    /// Storage unreachable, engine queues full, or draining.
    Unavailable = 503 ["overloaded", "shutting_down", "unavailable"];
    /// A bug; the cause is logged with the request id, never sent.
    Internal = 500 ["internal"];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::errors::ApiError;

    #[test]
    fn every_error_code_is_documented_with_its_status() {
        for err in ApiError::every_variant() {
            let (status, code, _) = err.parts();
            assert!(
                DOCUMENTED_CODES.contains(&(status.as_u16(), code)),
                "{code} ({status}) is not documented"
            );
        }
        let known: Vec<_> = ApiError::every_variant()
            .iter()
            .map(|e| (e.parts().0.as_u16(), e.parts().1))
            .collect();
        for documented in DOCUMENTED_CODES {
            assert!(known.contains(documented), "{documented:?} is never sent");
        }
    }

    /// Fails to compile when a variant is added: add it to `ApiError::every_variant` too, so
    /// its code gets documented.
    #[allow(dead_code)]
    fn every_variant_is_listed(err: &ApiError) {
        use ApiError as E;
        match err {
            E::InvalidJson(_)
            | E::InvalidRequest(_)
            | E::Unauthenticated
            | E::InvalidSignature(_)
            | E::StaleSignature
            | E::Forbidden
            | E::NotFound(_)
            | E::InvalidState(_)
            | E::VersionConflict
            | E::IdempotencyInFlight
            | E::Validation(_)
            | E::InvalidUrl(_)
            | E::AmountExceedsRemaining { .. }
            | E::RefundExceedsCaptured { .. }
            | E::IdempotencyKeyReused
            | E::PayloadTooLarge
            | E::RateLimited { .. }
            | E::Overloaded
            | E::ShuttingDown
            | E::Unavailable(_)
            | E::Internal(_) => {}
        }
    }

    #[test]
    fn idempotency_header_is_optional_and_not_null() {
        let json = serde_json::to_value(document()).unwrap();
        let params = &json["paths"]["/api/invoices"]["post"]["parameters"];
        let header = params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap();
        assert_eq!(
            (&header["in"], &header["required"]),
            (&"header".into(), &false.into())
        );
        assert_eq!(header["schema"]["type"], "string");
    }

    #[test]
    fn created_links_name_documented_operations() {
        let json = served_document();
        let ids: Vec<&serde_json::Value> = json["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|operation| &operation["operationId"])
            .collect();
        for (path, status, targets) in CREATED_LINKS {
            let links = &json["paths"][path]["post"]["responses"][status]["links"];
            for target in targets {
                assert_eq!(links[target]["operationId"], *target, "{path} {status}");
                assert!(
                    ids.contains(&&(*target).into()),
                    "{target} is not documented"
                );
            }
        }
    }

    #[test]
    fn document_is_openapi_3_1() {
        let json = serde_json::to_value(document()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
    }
}
