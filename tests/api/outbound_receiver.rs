//! A webhook receiver for the outbound tests: an HTTP server on 127.0.0.1 that records every
//! request and answers as a test script says (a status, after a delay), plus the check of
//! recorded deliveries with the standardwebhooks Python package.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The status this request was answered with.
    pub answered: u16,
}

impl Delivery {
    pub fn webhook_id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// How to answer the n-th request (from 0) for a webhook id: a status and a delay.
pub type Script = Arc<dyn Fn(&str, usize) -> (u16, Duration) + Send + Sync>;

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub log: Arc<Mutex<Vec<Delivery>>>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub async fn start(script: Script) -> Receiver {
        let log: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let script = Arc::new(Mutex::new(script));
        let (l, s) = (log.clone(), script.clone());
        let server = HttpServer::new(move || {
            let (l, s) = (l.clone(), s.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (l, s) = (l.clone(), s.clone());
                async move { answer(req, body, l, s).await }
            }))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        actix_web::rt::spawn(server.run());
        Receiver {
            url: format!("http://{addr}/hook"),
            log,
            script,
        }
    }

    pub fn always(status: u16) -> Script {
        Arc::new(move |_, _| (status, Duration::ZERO))
    }

    pub fn set_script(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().unwrap().clone()
    }

    /// Polls until `check` holds on the deliveries so far (10 s at most).
    pub async fn wait_for(&self, what: &str, check: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        for _ in 0..400 {
            let now = self.deliveries();
            if check(&now) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the receiver never saw {what}: {:#?}",
            self.deliveries().len()
        );
    }
}

async fn answer(
    req: HttpRequest,
    body: web::Bytes,
    log: Arc<Mutex<Vec<Delivery>>>,
    script: Arc<Mutex<Script>>,
) -> HttpResponse {
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    let seen = log
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.webhook_id() == id)
        .count();
    let (status, delay) = (script.lock().unwrap().clone())(&id, seen);
    log.lock().unwrap().push(Delivery {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: status,
    });
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .body(format!("answered {status}"))
}

/// Verifies every delivery with the standardwebhooks package under `secret`; panics (the test
/// fails, never skips) if the package's Python is not available.
pub fn verify_with_python(secret: &str, deliveries: &[Delivery]) {
    let python = std::env::var("PAYRAIL_TEST_PYTHON").expect(
        "PAYRAIL_TEST_PYTHON is not set: run the suite with scripts/test, which installs \
         standardwebhooks into its virtualenv",
    );
    let input = json!({
        "secret": secret,
        "deliveries": deliveries
            .iter()
            .map(|d| json!({"headers": d.headers, "body": d.body}))
            .collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/verify_webhooks.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the Python verifier starts");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused a delivery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        deliveries.len().to_string()
    );
}
