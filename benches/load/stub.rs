//! The stub server (this bench executable run as `--role stub`): `POST /noop` answers a tiny
//! JSON body without any work — the HTTP ceiling baseline — and `/v1/*` fakes the payment
//! gateway: it accepts every account and charge and never sends a webhook, so every webhook the
//! engine sees comes from the load generator. `GET /stats/charged` counts the payments it has
//! accepted a charge for, so the seed can wait for all of them.

use std::collections::HashSet;
use std::sync::Mutex;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

/// The payments the stub has accepted a charge for (re-sent charges count once).
type Charged = web::Data<Mutex<HashSet<String>>>;

/// Same worker count as the engine's HTTP server (one per core).
const STUB_WORKERS: usize = 2;

async fn noop(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true}))
}

async fn charge(charged: Charged, body: web::Json<serde_json::Value>) -> HttpResponse {
    let payment = body
        .get("paymentId")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    if let Ok(mut charged) = charged.lock() {
        charged.insert(payment.to_owned());
    }
    HttpResponse::Accepted().json(json!({"reference": reference_for(payment)}))
}

/// How many payments have had a charge accepted (`GET /stats/charged`).
async fn charged_count(charged: Charged) -> HttpResponse {
    let n = charged.lock().map_or(0, |c| c.len());
    HttpResponse::Ok().json(json!({"payments": n}))
}

async fn accepted(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Accepted().json(json!({"reference": "rf_stub"}))
}

/// The charge reference the fake gateway gives a payment (webhooks must carry the same one).
pub fn reference_for(payment_id: &str) -> String {
    format!("ch_{payment_id}")
}

pub fn serve(port: u16) -> anyhow::Result<()> {
    let charged: Charged = web::Data::new(Mutex::new(HashSet::new()));
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(charged.clone())
                .route("/noop", web::post().to(noop))
                .route("/stats/charged", web::get().to(charged_count))
                .route("/v1/charges", web::post().to(charge))
                .route("/v1/accounts", web::post().to(accepted))
                .route("/v1/refunds", web::post().to(accepted))
        })
        .workers(STUB_WORKERS)
        .bind(("127.0.0.1", port))?
        .run()
        .await
    })?;
    Ok(())
}
