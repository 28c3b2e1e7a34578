//! The REST API (actix-web): one module per resource, thin handlers that extract, call the
//! engine and map the result. Auth, errors, request ids and metrics live in their own modules.

pub mod api_keys;
pub mod auth;
pub mod constraints;
pub mod errors;
pub mod events;
pub mod idempotency;
pub mod intake;
pub mod invoices;
pub mod json_body;
pub mod methods;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod openapi_text;
pub mod ops;
pub mod payments;
pub mod redact;
pub mod schemas;
pub mod stream;
pub mod tenants;
pub mod views;
pub mod volumes;
pub mod webhook_deliveries;
pub mod webhook_endpoints;
pub mod webhook_schemas;
pub mod webhooks;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use payrail_actors::ports::{Clock, Gateway};
use payrail_actors::Engine;
use secrecy::SecretString;

use crate::store::Db;
use errors::ApiError;

/// Request bodies over this are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// Limits and secrets the HTTP layer needs.
#[derive(Clone)]
pub struct HttpSettings {
    pub admin_token: Option<SecretString>,
    /// Request budgets per key and per tenant, failed-authentication budgets.
    pub limits: auth::Limits,
    pub signature_tolerance_secs: i64,
    /// How long a rotated-out webhook secret still verifies.
    pub secret_overlap: Duration,
    /// Where the gateway should send webhooks for new tenants.
    pub webhook_url: String,
    pub stream: stream::StreamSettings,
}

pub struct AppState {
    pub engine: Engine,
    pub db: Db,
    pub gateway: Arc<dyn Gateway>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<crate::keys::Keys>,
    pub settings: HttpSettings,
    pub limiter: auth::RateLimiter,
    pub secrets: webhooks::SecretCache,
    /// Idempotency keys of admin requests running on this node.
    pub in_flight: Arc<idempotency::InFlight>,
    pub metrics: metrics::HttpMetrics,
    pub draining: Arc<AtomicBool>,
    pub streams: stream::Streams,
    pub intake: intake::Intake,
    /// Outbound webhooks: settings, and the dispatcher's wake-up when endpoints change.
    pub outbound: crate::outbound::Outbound,
}

impl AppState {
    pub fn new(
        engine: Engine,
        db: Db,
        gateway: Arc<dyn Gateway>,
        clock: Arc<dyn Clock>,
        keys: Arc<crate::keys::Keys>,
        settings: HttpSettings,
        outbound: crate::outbound::Outbound,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            limiter: auth::RateLimiter::new(&settings.limits),
            streams: stream::Streams::new(settings.stream),
            intake: intake::Intake::default(),
            outbound,
            engine,
            db,
            gateway,
            clock,
            keys,
            settings,
            secrets: webhooks::SecretCache::default(),
            in_flight: Arc::default(),
            metrics: metrics::HttpMetrics::new()?,
            draining: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// Runs a storage job in a task of its own, so a client disconnect (which drops the handler's
/// future) can never cancel a database call halfway.
pub async fn detached<T, F>(job: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    actix_web::rt::spawn(job)
        .await
        .map_err(|e| ApiError::Internal(format!("storage task failed: {e}")))?
}

/// Registers every route of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(BODY_LIMIT_BYTES))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _| ApiError::InvalidRequest(err.to_string()).into()),
        )
        .app_data(
            web::PathConfig::default().error_handler(|_, _| ApiError::NotFound("resource").into()),
        )
        .configure(openapi::services)
        .service(openapi::swagger_ui())
        .configure(crate::console::routes)
        .default_service(web::to(methods::unrouted));
}
