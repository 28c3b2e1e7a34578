//! The real binary as a child process: SIGTERM drains cleanly, `kill -9` loses nothing that was
//! acknowledged, and secrets never reach the logs.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use payrail::store::{testing, Db};
use payrail_actors::domain::{Event, TenantId};
use rand::Rng;
use reqwest::Client;
use serde_json::{json, Value};

use crate::helpers::{Backend, ADMIN};

pub struct Engine {
    child: Child,
    pub url: String,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Engine {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn start(db_url: &str, log: Option<&Path>) -> Engine {
        Self::start_with(db_url, log, &[]).await
    }

    pub async fn start_with(
        db_url: &str,
        log: Option<&Path>,
        extra_env: &[(&str, &str)],
    ) -> Engine {
        let port = free_port();
        let mut command = payrail_command();
        command
            .arg("serve")
            .env("PAYRAIL_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", db_url)
            .env("PAYRAIL_ADMIN_TOKEN", ADMIN)
            .env("PAYRAIL_RECOVERY_INTERVAL_SECS", "1")
            // Every webhook delivered twice, concurrently: duplicates race the crashes too.
            .env("PAYRAIL_SIMULATOR__DUPLICATE_RATE", "1.0")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null());
        match log {
            Some(path) => {
                command
                    .env("PAYRAIL_LOG_FORMAT", "json")
                    .env("RUST_LOG", "debug")
                    .stderr(std::fs::File::create(path).unwrap());
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        let child = command.spawn().unwrap();
        let engine = Engine {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/readyz", engine.url)).send().await {
                if r.status() == 200 {
                    return engine;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("engine did not become ready");
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn sigterm(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "engine did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn database(backend: Backend, dir: &Path) -> (Db, String) {
    match backend {
        Backend::Sqlite => testing::fresh_sqlite(dir).await.unwrap(),
        Backend::Postgres => testing::fresh_postgres().await.unwrap(),
    }
}

pub(crate) async fn tenant(client: &Client, url: &str) -> Value {
    client
        .post(format!("{url}/api/tenants"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) fn invoice_body(marker: &str) -> Value {
    json!({"customerName": marker, "currency": "USD", "finalize": true,
           "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": 500}]})
}

/// The `payrail` binary with this suite's keys: every process of a test opens what the others
/// sealed, and nothing is written to the working directory's `data/`.
pub(crate) fn payrail_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payrail"));
    command
        .env("PAYRAIL_MASTER_KEY", TEST_MASTER_KEY)
        .env("PAYRAIL_HASHING_KEY", TEST_HASHING_KEY);
    command
}

/// Keys for the processes the tests start (base64 of 32 bytes; test values only).
pub(crate) const TEST_MASTER_KEY: &str = "dGVzdCBtYXN0ZXIga2V5IGZvciBwYXlyYWlsIHRlc3Q=";
pub(crate) const TEST_HASHING_KEY: &str = "dGVzdCBoYXNoaW5nIGtleSBmb3IgcGF5cmFpbCB0ZXM=";

/// Creates invoices under idempotency keys (and pays each) until the client is cut off;
/// answers the markers the engine acknowledged.
async fn write_until_killed(
    client: &Client,
    url: &str,
    key: &str,
    round: usize,
) -> HashSet<String> {
    let runs = (0..40).map(|n| {
        let (client, url, key) = (client.clone(), url.to_owned(), key.to_owned());
        async move {
            let marker = format!("c-{round}-{n}");
            let response = client
                .post(format!("{url}/api/invoices"))
                .bearer_auth(&key)
                .header("Idempotency-Key", &marker)
                .json(&invoice_body(&marker))
                .send()
                .await
                .ok()?;
            if response.status() != 201 {
                return None;
            }
            let invoice: Value = response.json().await.ok()?;
            let pay = json!({"invoiceId": invoice["id"], "paymentMethod": {"type": "card", "token": "tok_visa"}});
            let _ = client.post(format!("{url}/api/payments")).bearer_auth(&key).json(&pay).send().await;
            Some(marker)
        }
    });
    futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

pub(crate) async fn all_invoices(client: &Client, url: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let body: Value = client
            .get(format!(
                "{url}/api/invoices?page={page}&pageSize=100&sort=createdAt"
            ))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = body["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return out;
        }
        out.extend(items);
        page += 1;
    }
}

/// Every event of the tenant, in log order.
pub(crate) async fn all_events(db: &Db, tenant: TenantId) -> Vec<Event> {
    let mut events = Vec::new();
    let mut after = None;
    loop {
        let page = db
            .list_events(tenant, None, None, 100, after)
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return events;
        };
        after = Some(last.sequence);
        events.extend(page.into_iter().map(|stored| stored.event));
    }
}

/// Versions contiguous from 1 in every stream of the tenant; each gateway event applied once.
pub(crate) async fn check_streams(db: &Db, tenant: TenantId) {
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut gateway_events = HashSet::new();
    for e in all_events(db, tenant).await {
        let seen = versions.entry(e.stream.to_string()).or_insert(0);
        assert_eq!(
            e.version,
            *seen + 1,
            "stream {} is not contiguous",
            e.stream
        );
        *seen = e.version;
        if let Some(id) = &e.gateway_event_id {
            assert!(
                gateway_events.insert(id.clone()),
                "gateway event {id} applied twice"
            );
        }
    }
}

/// Runs `work` against `engine`, killing the engine with SIGKILL after `kill_after` if the work
/// is not done by then; answers what the work answers either way.
pub(crate) async fn run_until_killed<T>(
    engine: Engine,
    kill_after: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => done,
        _ = tokio::time::sleep(kill_after) => {
            engine.kill9();
            work.await
        }
    }
}

/// `payrail rebuild-projections` on the database, which must succeed.
pub(crate) fn rebuild_projections(url: &str) {
    let status = payrail_command()
        .arg("rebuild-projections")
        .env("DATABASE_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

pub(crate) async fn all_payment_rows(
    db: &Db,
    tenant: TenantId,
) -> Vec<payrail_actors::domain::Payment> {
    let mut out = Vec::new();
    for page in 1.. {
        let (rows, total) = db
            .list_payments(tenant, None, None, page, 100)
            .await
            .unwrap();
        out.extend(rows);
        if out.len() as u64 >= total {
            break;
        }
    }
    out.sort_by_key(|p| p.id);
    out
}

pub async fn crash_safety(backend: Backend) {
    let iterations: usize = std::env::var("PAYRAIL_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = database(backend, dir.path()).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let engine = Engine::start(&url, None).await;
    let t = tenant(&client, &engine.url).await;
    let key = t["apiKey"]["key"].as_str().unwrap().to_owned();
    let tenant_id: TenantId = t["id"].as_str().unwrap().parse().unwrap();
    let mut acknowledged = HashSet::new();
    let mut attempted = Vec::new();
    let mut engine = Some(engine);
    let mut rng = crate::helpers::seeded_rng(&format!("crash safety {backend:?}"));
    for round in 0..iterations {
        let running = engine.take().unwrap_or_else(|| unreachable!());
        let kill_after = Duration::from_millis(rng.random_range(20..250));
        println!("round {round}: kill -9 after {kill_after:?}");
        let engine_url = running.url.clone();
        let writes = write_until_killed(&client, &engine_url, &key, round);
        acknowledged.extend(run_until_killed(running, kill_after, writes).await);
        attempted.extend((0..40).map(|n| format!("c-{round}-{n}")));
        engine = Some(Engine::start(&url, None).await);
    }
    let running = engine.take().unwrap_or_else(|| unreachable!());
    // One round left to finish, so the checks below always have data however slow the machine.
    acknowledged.extend(write_until_killed(&client, &running.url, &key, iterations).await);
    attempted.extend((0..40).map(|n| format!("c-{iterations}-{n}")));
    let invoices = all_invoices(&client, &running.url, &key).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for invoice in &invoices {
        *count
            .entry(invoice["customerName"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for marker in &acknowledged {
        assert_eq!(
            count.get(marker),
            Some(&1),
            "acknowledged {marker} must exist exactly once"
        );
    }
    assert!(
        count.values().all(|c| *c == 1),
        "no operation may be applied twice"
    );
    assert!(count.keys().all(|m| attempted.contains(m)));
    // Gap-free numbers survive crashes.
    let mut numbers: Vec<String> = invoices
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_owned())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=numbers.len()).map(|n| format!("INV-{n:06}")).collect();
    assert_eq!(numbers, expected);
    check_streams(&db, tenant_id).await;
    // Projections equal a replay: rebuilding from the events changes nothing.
    running.kill9();
    let before: Vec<_> = futures::future::join_all(
        invoices
            .iter()
            .map(|i| db.get_invoice(tenant_id, i["id"].as_str().unwrap().parse().unwrap())),
    )
    .await;
    rebuild_projections(&url);
    let after: Vec<_> = futures::future::join_all(
        invoices
            .iter()
            .map(|i| db.get_invoice(tenant_id, i["id"].as_str().unwrap().parse().unwrap())),
    )
    .await;
    assert_eq!(before, after, "rebuild-projections must change nothing");
    let payments_before = all_payment_rows(&db, tenant_id).await;
    assert!(!payments_before.is_empty());
    rebuild_projections(&url);
    assert_eq!(
        payments_before,
        all_payment_rows(&db, tenant_id).await,
        "payment projections must equal a replay"
    );
    println!(
        "crash safety {backend:?}: {iterations} kills, {} acknowledged, {} invoices",
        acknowledged.len(),
        invoices.len()
    );
}

pub async fn secrets_stay_out_of_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = database(Backend::Sqlite, dir.path()).await;
    let log = dir.path().join("engine.log");
    let client = Client::new();
    let engine = Engine::start(&url, Some(&log)).await;
    let t = tenant(&client, &engine.url).await;
    let key = t["apiKey"]["key"].as_str().unwrap().to_owned();
    let secret = t["webhookSecret"].as_str().unwrap().to_owned();
    let invoice: Value = client
        .post(format!("{}/api/invoices", engine.url))
        .bearer_auth(&key)
        .json(&invoice_body("Jane"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let card = "4242424242424242";
    let pay = json!({"invoiceId": invoice["id"], "paymentMethod": {"type": "card", "number": card, "expMonth": 12, "expYear": 2040, "cvc": "123"}});
    let payment: Value = client
        .post(format!("{}/api/payments", engine.url))
        .bearer_auth(&key)
        .json(&pay)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A refused request with a card number in a malformed body, too.
    let _ = client
        .post(format!("{}/api/payments", engine.url))
        .bearer_auth(&key)
        .body(format!("{{\"number\": \"{card}\""))
        .send()
        .await;
    let path = format!(
        "{}/api/payments/{}",
        engine.url,
        payment["id"].as_str().unwrap()
    );
    for _ in 0..100 {
        let p: Value = client
            .get(&path)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if p["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.kill9();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("request"),
        "the engine must have logged requests"
    );
    let key_secret = key.rsplit('_').next().unwrap();
    for (what, needle) in [
        ("card number", card),
        ("API key secret", key_secret),
        ("webhook secret", secret.as_str()),
        ("admin token", ADMIN),
    ] {
        assert!(!logs.contains(needle), "{what} found in the logs");
    }
}
