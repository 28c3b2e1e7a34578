//! The stub server (this bench executable run as `--role stub`): `POST /noop` answers a tiny
//! JSON body without any work — the HTTP ceiling baseline — and `/v1/*` fakes the payment
//! gateway: it accepts every account and charge and never sends a webhook, so every webhook the
//! engine sees comes from the load generator.

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

/// Same worker count as the engine's HTTP server (one per core).
const STUB_WORKERS: usize = 2;

async fn noop(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true}))
}

async fn charge(body: web::Json<serde_json::Value>) -> HttpResponse {
    let payment = body
        .get("paymentId")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    HttpResponse::Accepted().json(json!({"reference": reference_for(payment)}))
}

async fn accepted(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Accepted().json(json!({"reference": "rf_stub"}))
}

/// The charge reference the fake gateway gives a payment (webhooks must carry the same one).
pub fn reference_for(payment_id: &str) -> String {
    format!("ch_{payment_id}")
}

pub fn serve(port: u16) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .route("/noop", web::post().to(noop))
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
