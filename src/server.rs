//! Starting and stopping the service: storage, the gateway (external or the built-in simulator),
//! the engine, the HTTP server, background retention, and graceful shutdown on SIGTERM/SIGINT.

use secrecy::ExposeSecret as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use payrail_actors::ports::{AccountRegistration, Clock, EventStore, Gateway, SystemClock};
use payrail_actors::Engine;

use crate::config::Settings;
use crate::gateway::reregister::ReRegistering;
use crate::gateway::{start_simulator, HttpGateway, HttpGatewayConfig, SimulatorHandle};
use crate::http::{self, AppState, HttpSettings};
use crate::store::Db;

/// Tenants re-registered per page with a fresh in-process simulator.
const REGISTRATION_PAGE_SIZE: u32 = 100;
const RETENTION_BATCH_ROWS: usize = 1_000;

/// A started service.
pub struct Running {
    pub addr: SocketAddr,
    pub state: web::Data<AppState>,
    pub server: actix_web::dev::Server,
    pub simulator: Option<SimulatorHandle>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts everything; the returned server must be awaited (or spawned). Call inside actix.
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let keys = Arc::new(settings.keys()?);
    let db = Db::connect_with_deadline(
        &settings.database_url(),
        settings.db_pool_size,
        keys.clone(),
        std::time::Duration::from_millis(settings.db_query_deadline_ms.max(1)),
    )
    .await?;
    db.listen_to_other_nodes();
    let resealed = db.reseal_secrets().await?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            key = keys.current_id(),
            "sealed webhook secrets under the current master key"
        );
    }
    let listener = TcpListener::bind(&settings.bind)?;
    let addr = listener.local_addr()?;
    let (gateway_url, simulator) = match &settings.gateway_url {
        Some(url) => (url.clone(), None),
        None => {
            let sim = start_simulator("127.0.0.1:0", settings.simulator.clone()).await?;
            (sim.url().to_owned(), Some(sim))
        }
    };
    let gateway_config =
        HttpGatewayConfig::new(gateway_url).trusting(settings.gateway_ca_file.as_ref());
    let gateway: Arc<dyn Gateway> = Arc::new(ReRegistering::new(
        Arc::new(HttpGateway::with_config(gateway_config)?),
        db.clone(),
        settings.webhook_url(&addr.to_string()),
    ));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut engine_config = settings.engine();
    engine_config.fingerprint_key = keys.card_fingerprint_key();
    let engine = Engine::start(
        engine_config,
        Arc::new(db.clone()) as Arc<dyn EventStore>,
        gateway.clone(),
        clock.clone(),
    );
    let http_settings = HttpSettings {
        admin_token: settings.admin_token.clone(),
        limits: http::auth::Limits::from(settings),
        signature_tolerance_secs: settings.signature_tolerance_secs,
        secret_overlap: Duration::from_secs(settings.secret_overlap_hours * 3_600),
        webhook_url: settings.webhook_url(&addr.to_string()),
        stream: http::stream::StreamSettings {
            heartbeat: Duration::from_millis(settings.stream_heartbeat_ms.max(1)),
            stall_timeout: Duration::from_millis(settings.stream_stall_timeout_ms.max(1)),
        },
    };
    if simulator.is_some() {
        register_all(&db, gateway.as_ref(), &http_settings.webhook_url).await?;
    }
    let outbound =
        crate::outbound::Outbound::new(settings.outbound.clone(), db.clone(), clock.clone())?;
    outbound.start();
    let state = web::Data::new(AppState::new(
        engine,
        db,
        gateway,
        clock,
        keys,
        http_settings,
        outbound,
    )?);
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        // Built once on each worker's thread, as it starts.
        payrail_actors::threads::name_current("http-worker");
        App::new()
            .app_data(app_state.clone())
            .wrap(from_fn(http::middleware::request_context))
            .configure(http::configure)
    })
    .workers(settings.http_workers.max(1))
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout_secs)
    .run();
    start_retention(state.clone(), settings);
    http::auth::start_sweeper(state.clone());
    tracing::info!(%addr, backend = state.db.backend_name(), "payrail listening");
    Ok(Running {
        addr,
        state,
        server,
        simulator,
    })
}

/// A fresh in-process simulator knows no accounts: tell it about every tenant.
async fn register_all(db: &Db, gateway: &dyn Gateway, webhook_url: &str) -> anyhow::Result<()> {
    let mut page = 1;
    loop {
        let (tenants, total) = db.list_tenants(page, REGISTRATION_PAGE_SIZE).await?;
        for tenant in &tenants {
            let registration = AccountRegistration {
                account: tenant.id,
                webhook_url: webhook_url.to_owned(),
                webhook_secret: tenant.webhook_secret.expose_secret().to_owned(),
            };
            gateway.register_account(&registration).await?;
        }
        if u64::from(page * REGISTRATION_PAGE_SIZE) >= total || tenants.is_empty() {
            return Ok(());
        }
        page += 1;
    }
}

fn start_retention(state: web::Data<AppState>, settings: &Settings) {
    let every = Duration::from_secs(settings.retention_sweep_secs.max(1));
    let dedup = chrono::Duration::hours(settings.dedup_retention_hours as i64);
    let idempotency = chrono::Duration::hours(settings.idempotency_retention_hours as i64);
    actix_web::rt::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            if state.draining.load(Ordering::SeqCst) {
                return;
            }
            let now = state.clock.now();
            let db = state.db.clone();
            // Spawned so the purge always runs to completion.
            let purge = actix_web::rt::spawn(async move {
                db.purge_expired(now - dedup, now - idempotency, RETENTION_BATCH_ROWS)
                    .await
            });
            match purge.await {
                Ok(Ok((d, i))) if d + i > 0 => {
                    tracing::info!(dedup = d, idempotency = i, "purged expired records")
                }
                Ok(Err(err)) => tracing::warn!(error = %err, "retention purge failed"),
                _ => {}
            }
        }
    });
}

/// Runs until SIGTERM/SIGINT, then drains: stop outbound delivery (releasing its leases),
/// stop accepting, finish in-flight requests (their commits are durable and answered), stop
/// the engine, exit.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let running = start(&settings).await?;
    let handle = running.server.handle();
    let state = running.state.clone();
    let timeout = Duration::from_secs(settings.shutdown_timeout_secs);
    let outbound_grace = timeout.min(Duration::from_millis(settings.outbound.timeout_ms));
    let shutdown = actix_web::rt::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        state.draining.store(true, Ordering::SeqCst);
        state.streams.shut_down();
        // Outbound delivery stops first, while every pooled connection is still open (those
        // opened on the HTTP workers' runtimes close with them): its rounds under way are
        // recorded and its leases released, so another node takes its endpoints over at once
        // (and delivers what this node still commits: it is in the log).
        state.outbound.shutdown(outbound_grace).await;
        handle.stop(true).await;
        let drained = state.engine.drain(timeout).await;
        tracing::info!(drained, "engine drained");
    });
    running.server.await?;
    // The server stops once its requests are answered, but a request whose client went away
    // left its unit in the writer: exit only after the engine has drained.
    if running.state.draining.load(Ordering::SeqCst) {
        if let Err(e) = shutdown.await {
            tracing::warn!(error = %e, "shutdown task failed");
        }
    } else {
        shutdown.abort();
    }
    if let Some(sim) = running.simulator {
        sim.stop().await;
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
