//! The built-in gateway simulator: an actix-web app speaking the gateway API of docs/api.md
//! (`/v1/accounts`, `/v1/charges`, `/v1/refunds`) that answers with scripted outcomes per test
//! card and reports them through signed webhooks, with optional chaos (delays, duplicates,
//! reordering, batching, dropped attempts). Mount it with `configure` or run it with
//! `start_simulator` / `run_standalone`.

mod config;
mod delivery;
mod handlers;
mod model;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use config::{SimulatorConfig, MAX_BATCH_EVENTS};
pub use model::{EventData, GatewayEvent};
pub use state::SimulatorStats;

use state::{lock, Shared};

/// Largest request body the simulator reads.
const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// How long a stopping server waits for in-flight requests.
const SHUTDOWN_TIMEOUT_SECS: u64 = 2;

/// The simulator's state and its delivery worker. Cheap to clone; the worker stops with `stop()`
/// or when the last clone is dropped.
#[derive(Clone)]
pub struct SimulatorState {
    shared: Arc<Shared>,
    worker: Arc<WorkerGuard>,
}

/// Aborts the delivery worker (and with it every in-flight delivery) when dropped.
struct WorkerGuard(Mutex<Option<JoinHandle<()>>>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if let Some(handle) = lock(&self.0).take() {
            handle.abort();
        }
    }
}

impl SimulatorState {
    /// Creates the state and spawns its delivery worker on the current Tokio runtime.
    pub fn new(config: SimulatorConfig) -> Self {
        let config = config.normalized();
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let shared = Arc::new(Shared::new(config, sender));
        let worker = tokio::spawn(delivery::run_worker(shared.clone(), receiver));
        Self {
            shared,
            worker: Arc::new(WorkerGuard(Mutex::new(Some(worker)))),
        }
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> SimulatorStats {
        self.shared.counters.snapshot()
    }

    /// Charge idempotency key → number of charges created under it (1 when idempotency holds).
    pub fn creations_by_key(&self) -> HashMap<String, u32> {
        lock(&self.shared.ledger).creations_by_key.clone()
    }

    pub fn creations_for(&self, key: &str) -> u32 {
        lock(&self.shared.ledger)
            .creations_by_key
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Charges created for `payment_id`, under whatever idempotency keys they came with.
    pub fn charges_for_payment(&self, payment_id: &str) -> u32 {
        lock(&self.shared.ledger)
            .charges_by_payment
            .get(payment_id)
            .copied()
            .unwrap_or(0)
    }

    /// Events scheduled but not yet delivered or given up (pending stale follow-ups included).
    pub fn pending_events(&self) -> usize {
        self.shared.outstanding.load(Ordering::Acquire)
    }

    /// Waits until every scheduled event is delivered or given up; `false` on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.pending_events() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the delivery worker and every delivery in flight.
    pub fn stop_deliveries(&self) {
        if let Some(handle) = lock(&self.worker.0).take() {
            handle.abort();
        }
    }
}

/// Mounts the simulator's routes (`/v1/...`) on an app.
pub fn configure(cfg: &mut web::ServiceConfig, state: SimulatorState) {
    cfg.app_data(web::Data::new(state))
        .app_data(web::PayloadConfig::new(BODY_LIMIT_BYTES))
        .route("/v1/accounts", web::post().to(handlers::register_account))
        .route("/v1/charges", web::post().to(handlers::create_charge))
        .route("/v1/refunds", web::post().to(handlers::create_refund));
}

/// A running simulator server.
pub struct SimulatorHandle {
    url: String,
    server: actix_web::dev::ServerHandle,
    join: JoinHandle<std::io::Result<()>>,
    state: SimulatorState,
}

impl SimulatorHandle {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn state(&self) -> &SimulatorState {
        &self.state
    }

    pub fn stats(&self) -> SimulatorStats {
        self.state.stats()
    }

    pub fn creations_by_key(&self) -> HashMap<String, u32> {
        self.state.creations_by_key()
    }

    pub fn creations_for(&self, key: &str) -> u32 {
        self.state.creations_for(key)
    }

    pub fn charges_for_payment(&self, payment_id: &str) -> u32 {
        self.state.charges_for_payment(payment_id)
    }

    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.state.wait_idle(timeout).await
    }

    /// Stops accepting requests, finishes in-flight ones, then stops webhook delivery.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.join.await;
        self.state.stop_deliveries();
    }
}

/// Starts the simulator on `bind` (use `127.0.0.1:0` for a free port; read it from `url()`).
pub async fn start_simulator(
    bind: &str,
    config: SimulatorConfig,
) -> anyhow::Result<SimulatorHandle> {
    let state = SimulatorState::new(config);
    let workers = state.config().workers;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        payrail_actors::threads::name_current("gateway-sim");
        let state = app_state.clone();
        App::new().configure(move |cfg| configure(cfg, state))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .bind(bind)?;
    let address = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("simulator bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    let join = tokio::spawn(server);
    tracing::info!(%address, "gateway simulator listening");
    Ok(SimulatorHandle {
        url: format!("http://{address}"),
        server: handle,
        join,
        state,
    })
}

/// Runs the simulator until Ctrl-C (for `payrail gateway`).
pub async fn run_standalone(bind: &str, config: SimulatorConfig) -> anyhow::Result<()> {
    let handle = start_simulator(bind, config).await?;
    tokio::signal::ctrl_c().await?;
    tracing::info!("gateway simulator stopping");
    handle.stop().await;
    Ok(())
}
