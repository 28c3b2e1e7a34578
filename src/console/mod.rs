//! The operator console at `/console`: a static single-page app compiled into the binary. It
//! holds no server-side state and no privileges of its own: the browser signs in with a tenant
//! API key or the platform admin token (kept in session storage) and calls the public API with
//! it. Assets are served with a strict Content-Security-Policy (same origin only, no inline
//! script), so nothing outside this server is ever loaded.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

/// Where the console is served.
pub const CONSOLE_PATH: &str = "/console";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// One compiled-in file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $content_type:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("assets/", $path)),
        }),*]
    };
}

static ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "console.css" => "text/css; charset=utf-8",
    "js/main.js" => "text/javascript; charset=utf-8",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/dom.js" => "text/javascript; charset=utf-8",
    "js/events.js" => "text/javascript; charset=utf-8",
    "js/charts.js" => "text/javascript; charset=utf-8",
    "js/metrics.js" => "text/javascript; charset=utf-8",
    "js/platform.js" => "text/javascript; charset=utf-8",
    "js/invoices.js" => "text/javascript; charset=utf-8",
    "js/invoice.js" => "text/javascript; charset=utf-8",
    "js/payments.js" => "text/javascript; charset=utf-8",
    "js/endpoints.js" => "text/javascript; charset=utf-8",
    "js/intake.js" => "text/javascript; charset=utf-8",
    "js/system.js" => "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.esm.js" => "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.min.css" => "text/css; charset=utf-8",
    "vendor/uplot/LICENSE" => "text/plain; charset=utf-8",
];

/// Registers `/console` (the app) and `/console/{file}` (its assets).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(CONSOLE_PATH, web::get().to(index))
        .route("/console/{file:.+}", web::get().to(file));
}

async fn index() -> HttpResponse {
    serve("index.html")
}

async fn file(req: HttpRequest) -> HttpResponse {
    let path = req.match_info().query("file");
    serve(path)
}

fn serve(path: &str) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found");
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(asset.content_type)
        // Assets change only with the binary; revalidating each load keeps an upgrade visible.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ));
    response.body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_named_once_and_not_empty() {
        for (i, asset) in ASSETS.iter().enumerate() {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            assert!(
                ASSETS[i + 1..].iter().all(|a| a.path != asset.path),
                "{} listed twice",
                asset.path
            );
        }
    }
}
