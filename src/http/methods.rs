//! Requests no route takes. A documented path asked with a method it does not serve answers 405
//! `method_not_allowed` with `Allow` listing the methods the OpenAPI document gives it; anything
//! else is 404 `not_found`. The document is the router's list of routes (see `openapi`), so the
//! two cannot disagree.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::errors::{problem_response, ApiError};
use super::openapi::{document, path_id_fits};

/// Every method a path item can document, in the order `Allow` lists them.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE",
];

/// A documented path: its template, segments (`None` for a `{parameter}`) and the methods it
/// serves.
struct KnownPath {
    template: String,
    segments: Vec<Option<String>>,
    methods: Vec<&'static str>,
}

impl KnownPath {
    /// Whether `path` names a resource of this template: literal segments equal, and each
    /// parameter a value the server could find (a malformed id names nothing).
    fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/');
        let all_match = self
            .segments
            .iter()
            .all(|segment| match (segment, parts.next()) {
                (Some(literal), Some(part)) => literal == part,
                (None, Some(part)) => path_id_fits(&self.template, part),
                (_, None) => false,
            });
        all_match && parts.next().is_none()
    }
}

fn known_paths() -> &'static [KnownPath] {
    static PATHS: OnceLock<Vec<KnownPath>> = OnceLock::new();
    PATHS.get_or_init(|| {
        document()
            .paths
            .paths
            .iter()
            .map(|(template, item)| KnownPath {
                template: template.clone(),
                segments: template
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect(),
                methods: METHODS
                    .into_iter()
                    .zip([
                        &item.get,
                        &item.post,
                        &item.put,
                        &item.patch,
                        &item.delete,
                        &item.head,
                        &item.options,
                        &item.trace,
                    ])
                    .filter_map(|(method, operation)| operation.is_some().then_some(method))
                    .collect(),
            })
            .collect()
    })
}

/// The methods `path` is documented with, in a stable order; empty for an unknown path.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let served: Vec<&'static str> = known_paths()
        .iter()
        .filter(|known| known.matches(path))
        .flat_map(|known| known.methods.iter().copied())
        .collect();
    METHODS
        .iter()
        .copied()
        .filter(|method| served.contains(method))
        .collect()
}

/// The router's default service: 405 with `Allow` for a known path, else 404.
pub async fn unrouted(req: HttpRequest) -> HttpResponse {
    let methods = allowed_methods(req.path());
    if methods.is_empty() || methods.contains(&req.method().as_str()) {
        // A documented method that still found no route (e.g. a parameter the route's pattern
        // refuses) is an unknown resource.
        return ApiError::NotFound("route").error_response();
    }
    let status = StatusCode::METHOD_NOT_ALLOWED;
    let allow = methods.join(", ");
    let mut response = problem_response(
        status,
        "method_not_allowed",
        "Method not allowed",
        format!("{} is not served here; allowed: {allow}", req.method()),
        Vec::new(),
    );
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        let id = payrail_actors::domain::InvoiceId::new().to_string();
        assert_eq!(allowed_methods("/api/invoices"), ["GET", "POST"]);
        assert_eq!(
            allowed_methods(&format!("/api/invoices/{id}")),
            ["GET", "PATCH"]
        );
        assert_eq!(
            allowed_methods(&format!("/api/invoices/{id}/void")),
            ["POST"]
        );
        assert_eq!(allowed_methods("/healthz"), ["GET"]);
        let pay = format!("/api/payments/{id}");
        for unknown in [
            "/api/invoices/",
            "/api/invoices//void",
            "/api/invoices/inv_x",
            "/api/payments/refunds",
            &pay,
            "/healthz/",
            "/nope",
            "",
        ] {
            assert!(allowed_methods(unknown).is_empty(), "{unknown}");
        }
    }
}
