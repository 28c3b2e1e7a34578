//! `spawn_app`: the real server on a random port, a fresh database per test (SQLite file or a
//! new database in the shared throwaway PostgreSQL cluster), the built-in gateway simulator.

use std::time::Duration;

use payrail::config::Settings;
use payrail::server::{self, Running};
use payrail::store::testing;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{json, Value};

pub const ADMIN: &str = "test-admin-token";

/// One test per backend for each named `async fn(Backend)`: `mod sqlite { … }` and
/// `mod postgres { … }` in the calling module.
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[actix_web::test] async fn $name() { super::$name(crate::helpers::Backend::Sqlite).await; })*
        }
        mod postgres {
            $(#[actix_web::test] async fn $name() { super::$name(crate::helpers::Backend::Postgres).await; })*
        }
    };
}
pub(crate) use per_backend;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub url: String,
    pub client: Client,
    pub _state: actix_web::web::Data<payrail::http::AppState>,
    pub simulator: Option<payrail::gateway::SimulatorHandle>,
    /// The database the app runs on, to inspect it as an attacker with a copy would.
    pub db_url: String,
    _dir: tempfile::TempDir,
}

pub struct Tenant {
    pub id: String,
    pub key: String,
    pub secret: String,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// `spawn_app` with settings adjusted by the test (simulator chaos, gateway URL, limits).
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}/payrail.db", dir.path().display()),
        Backend::Postgres => {
            testing::fresh_postgres()
                .await
                .expect("PostgreSQL for tests")
                .1
        }
    };
    let db_url = url.clone();
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: Some(url.into()),
        data_dir: dir.path().display().to_string(),
        db_pool_size: 4,
        admin_token: Some(ADMIN.to_owned().into()),
        rate_limit_per_sec: 10_000,
        rate_limit_burst: 10_000,
        tenant_rate_limit_per_sec: 10_000,
        tenant_rate_limit_burst: 10_000,
        auth_failure_burst: 10_000,
        ..Settings::default()
    };
    adjust(&mut settings);
    let running = server::start(&settings).await.unwrap();
    let url = running.url();
    let Running {
        state,
        server,
        simulator,
        ..
    } = running;
    actix_web::rt::spawn(server);
    TestApp {
        url,
        client: Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        _state: state,
        simulator,
        db_url,
        _dir: dir,
    }
}

impl TestApp {
    pub fn post(&self, path: &str, key: &str) -> RequestBuilder {
        self.client
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
    }

    pub fn get(&self, path: &str, key: &str) -> RequestBuilder {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(key)
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        let body: Value = self
            .post("/api/tenants", ADMIN)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Tenant {
            id: body["id"].as_str().unwrap().into(),
            key: body["apiKey"]["key"].as_str().unwrap().into(),
            secret: body["webhookSecret"].as_str().unwrap().into(),
        }
    }

    pub async fn invoice(&self, key: &str, unit_amount: i64, finalize: bool) -> Value {
        let response = self
            .post("/api/invoices", key)
            .json(&json!({
                "customerName": "Jane Doe", "customerEmail": "jane@example.com", "currency": "USD",
                "lineItems": [{"description": "Seat", "quantity": 3, "unitAmount": unit_amount}],
                "taxRateBps": 1000, "finalize": finalize
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    pub async fn pay(&self, key: &str, invoice: &str, card: &str, amount: Option<i64>) -> Response {
        let mut body = json!({"invoiceId": invoice, "paymentMethod": {"type": "card", "number": card, "expMonth": 12, "expYear": 2040, "cvc": "123"}});
        if let Some(amount) = amount {
            body["amount"] = json!(amount);
        }
        self.post("/api/payments", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Pays the whole of `invoice` with a card the gateway accepts; the payment as answered.
    pub async fn card_payment(&self, key: &str, invoice: &Value) -> Value {
        let id = invoice["id"].as_str().unwrap();
        self.pay(key, id, "4242424242424242", None)
            .await
            .json()
            .await
            .unwrap()
    }

    /// Posts `body` to the gateway webhook endpoint as the gateway would: signed now with each
    /// of `secrets`.
    pub async fn signed_webhook(&self, secrets: &[&str], body: &str) -> Response {
        let now = chrono::Utc::now().timestamp();
        self.client
            .post(format!("{}/api/webhooks/payments", self.url))
            .header("content-type", "application/json")
            .header("Payrail-Signature", sign_all(secrets, now, body))
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// A GET's JSON body, whatever its status.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, key: &str) -> T {
        self.get(path, key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A new API key of the tenant whose admin key is `admin_key`: its secret (shown once).
    pub async fn api_key(&self, admin_key: &str, name: &str, role: &str) -> String {
        let response = self
            .post("/api/api-keys", admin_key)
            .json(&json!({"name": name, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        created["key"].as_str().unwrap().to_owned()
    }

    /// The value of one sample line of `/metrics` (`name` or `name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> u64 {
        metric_at(&self.client, &self.url, series)
            .await
            .expect("/metrics unreachable")
    }

    /// Polls until `check` holds on the resource (webhooks arrive asynchronously).
    pub async fn eventually(&self, path: &str, key: &str, check: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let value: Value = self.get_json(path, key).await;
            if check(&value) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{path} never reached the expected state");
    }
}

/// One sample line of the `/metrics` of the server at `url` (`name` or `name{labels}`), 0 when
/// absent; `None` when `/metrics` could not be read (a server that is shutting down).
pub async fn metric_at(client: &Client, url: &str, series: &str) -> Option<u64> {
    let response = client.get(format!("{url}/metrics")).send().await.ok()?;
    let text = response.text().await.ok()?;
    let value = text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    });
    Some(value.unwrap_or(0))
}

/// A random generator for a test's fault timings, seeded from `PAYRAIL_TEST_SEED` or at random;
/// the seed is printed so a failing run can be repeated.
pub fn seeded_rng(test: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let seed: u64 = std::env::var("PAYRAIL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: seed {seed} (PAYRAIL_TEST_SEED={seed} repeats it)");
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub async fn problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    body
}

/// Generates one test per backend from an async fn taking `&TestApp`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await;
                    super::$name(&app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await;
                    super::$name(&app).await;
                }
            )*
        }
    };
}

/// A `Payrail-Signature` header with one `v1=` per secret, computed with the `hmac` crate
/// directly: independent of the production signing helper.
pub fn sign_all(secrets: &[&str], t: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut header = format!("t={t}");
    for secret in secrets {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        header.push_str(&format!(",v1={}", hex::encode(mac.finalize().into_bytes())));
    }
    header
}
