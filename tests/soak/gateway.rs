//! The gateway the engine talks to: the built-in simulator behind a front that records every
//! charge and refund request it receives (per payment and per refund, with their idempotency
//! keys) and injects the gateway faults: down (nothing listens), slow (each answer 5 s late) and
//! 500s (half of them after the simulator has acted, so the outcome is ambiguous).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use payrail::gateway::{start_simulator, SimulatorConfig, SimulatorHandle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// How long a slow gateway takes to answer: the engine's own gateway timeout.
pub const SLOW_ANSWER: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal = 0,
    Slow = 1,
    Failing = 2,
}

/// Per payment (or refund) id, idempotency key → requests received.
pub type ByKey = HashMap<String, HashMap<String, u32>>;

/// Requests received, by payment (charges) or refund id (refunds), then by idempotency key.
#[derive(Default)]
pub struct Received {
    pub charges: ByKey,
    pub refunds: ByKey,
}

struct Front {
    upstream: String,
    client: reqwest::Client,
    mode: AtomicU8,
    received: Mutex<Received>,
    rng: Mutex<StdRng>,
}

pub struct Gateway {
    pub simulator: SimulatorHandle,
    front: Arc<Front>,
    port: u16,
    server: Option<actix_web::dev::ServerHandle>,
}

impl Gateway {
    pub async fn start(seed: u64) -> Gateway {
        let config = SimulatorConfig {
            duplicate_rate: 1.0,
            duplicate_copies: 2,
            reorder_window: 8,
            // Some webhook requests carry several events; some first attempts are dropped.
            batch_size: 4,
            batch_linger_ms: 5,
            drop_first_attempt_rate: 0.1,
            webhook_delay_min_ms: 5,
            webhook_delay_max_ms: 60,
            late_failure_delay_ms: 100,
            // Deliveries outlive engine restarts and storage outages: retried, never given up
            // within a run.
            retry_backoff_base_ms: 50,
            retry_backoff_max_ms: 1_000,
            max_attempts: 100_000,
            webhook_timeout_ms: 15_000,
            seed,
            ..SimulatorConfig::default()
        };
        let simulator = start_simulator("127.0.0.1:0", config).await.unwrap();
        let front = Arc::new(Front {
            upstream: simulator.url().to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            mode: AtomicU8::new(Mode::Normal as u8),
            received: Mutex::new(Received::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x9a7e)),
        });
        let mut gateway = Gateway {
            simulator,
            front,
            port: crate::engine::free_port(),
            server: None,
        };
        gateway.up();
        gateway
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Listens (again) on the gateway's port.
    pub fn up(&mut self) {
        if self.server.is_some() {
            return;
        }
        let front = self.front.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::from(front.clone()))
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::to(forward))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", self.port))
        .unwrap()
        .run();
        self.server = Some(server.handle());
        tokio::spawn(server);
    }

    /// Stops listening: the engine's calls meet a refused connection.
    pub async fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop(false).await;
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.front.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// A copy of what was received so far.
    pub fn received(&self) -> (ByKey, ByKey) {
        let received = self.front.received.lock().unwrap();
        (received.charges.clone(), received.refunds.clone())
    }
}

fn record(front: &Front, path: &str, request: &HttpRequest, body: &[u8]) {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let field = match path {
        "/v1/charges" => "paymentId",
        "/v1/refunds" => "refundId",
        _ => return,
    };
    let id = json[field].as_str().unwrap_or_default().to_owned();
    let key = request
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_owned();
    let mut received = front.received.lock().unwrap();
    let table = if field == "paymentId" {
        &mut received.charges
    } else {
        &mut received.refunds
    };
    *table.entry(id).or_default().entry(key).or_default() += 1;
}

async fn upstream(front: &Front, request: &HttpRequest, body: web::Bytes) -> HttpResponse {
    let mut call = front
        .client
        .request(
            reqwest::Method::from_bytes(request.method().as_str().as_bytes()).unwrap(),
            format!("{}{}", front.upstream, request.uri()),
        )
        .body(body.to_vec());
    for (name, value) in request.headers() {
        if name == "idempotency-key" || name == "content-type" || name == "authorization" {
            call = call.header(name.as_str(), value.as_bytes());
        }
    }
    match call.send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let bytes = answer.bytes().await.unwrap_or_default();
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .content_type("application/json")
                .body(bytes)
        }
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}

async fn forward(front: web::Data<Front>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let path = request.path().to_owned();
    let mode = front.mode.load(Ordering::SeqCst);
    if mode == Mode::Failing as u8 && path != "/v1/accounts" {
        // Half the 500s come after the simulator acted on the request: the engine cannot tell
        // them apart and must retry under the same key.
        let acted = front.rng.lock().unwrap().random_bool(0.5);
        if acted {
            record(&front, &path, &request, &body);
            let _ = upstream(&front, &request, body).await;
        }
        return HttpResponse::InternalServerError().body("{\"code\":\"internal\"}");
    }
    record(&front, &path, &request, &body);
    let answer = upstream(&front, &request, body).await;
    if mode == Mode::Slow as u8 {
        // The simulator has acted; the answer comes late (or never, if the engine gives up).
        tokio::time::sleep(SLOW_ANSWER).await;
    }
    answer
}
