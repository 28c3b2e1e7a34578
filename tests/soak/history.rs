//! The history the checker judges: every write the workload sent, each attempt's answer (or
//! that none came) and how long it took, and the body of the answer that acknowledged it. A
//! write is retried under its Idempotency-Key, with the same body, until it gets a final answer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    CreateInvoice,
    Pay,
    Refund,
    Void,
}

#[derive(Debug, Clone)]
pub struct Op {
    pub tenant: usize,
    pub kind: Kind,
    pub key: String,
    pub path: String,
    pub body: Option<Value>,
    /// The invoice the write is about (payments: the invoice paid; refunds: unknown here).
    pub invoice: Option<String>,
    /// The payment a refund is for.
    pub payment: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    /// `None`: no answer (refused connection, reset, timeout).
    pub status: Option<u16>,
    pub code: Option<String>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub op: Op,
    pub attempts: Vec<Attempt>,
    /// The 2xx answer's body, if the write was acknowledged.
    pub acked: Option<Value>,
}

#[derive(Default)]
pub struct History {
    entries: Mutex<Vec<Entry>>,
}

/// Attempts per write, the first included; the waits between them double up to the max.
const ATTEMPTS_MAX: usize = 16;
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// A client's patience with one attempt: longer than every bounded wait in the engine.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);

/// Whether an answer is worth retrying under the same key: no answer, 5xx, 429, or the first
/// attempt still running.
fn retryable(status: Option<u16>, code: Option<&str>) -> bool {
    match status {
        None => true,
        Some(s) if s >= 500 || s == 429 => true,
        Some(409) => code == Some("idempotency_in_flight"),
        _ => false,
    }
}

impl History {
    /// Sends `op` (retrying as needed), records it and answers its entry.
    pub async fn run(&self, client: &reqwest::Client, base: &str, api_key: &str, op: Op) -> Entry {
        self.send(client, base, api_key, op, ATTEMPTS_MAX).await
    }

    /// Sends `op` once, records it and answers its entry.
    pub async fn run_once(
        &self,
        client: &reqwest::Client,
        base: &str,
        api_key: &str,
        op: Op,
    ) -> Entry {
        self.send(client, base, api_key, op, 1).await
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        base: &str,
        api_key: &str,
        op: Op,
        attempts: usize,
    ) -> Entry {
        let mut entry = Entry {
            op,
            attempts: Vec::new(),
            acked: None,
        };
        let mut wait = RETRY_BASE;
        for _ in 0..attempts {
            let started = Instant::now();
            let mut request = client
                .post(format!("{base}{}", entry.op.path))
                .bearer_auth(api_key)
                .header("Idempotency-Key", &entry.op.key)
                .timeout(REQUEST_TIMEOUT);
            if let Some(body) = &entry.op.body {
                request = request.json(body);
            }
            let (status, body) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (
                        Some(status),
                        response.json::<Value>().await.unwrap_or(Value::Null),
                    )
                }
                Err(_) => (None, Value::Null),
            };
            let code = body["code"].as_str().map(str::to_owned);
            let retry = retryable(status, code.as_deref());
            entry.attempts.push(Attempt {
                status,
                code,
                elapsed: started.elapsed(),
            });
            if status.is_some_and(|s| (200..300).contains(&s)) {
                entry.acked = Some(body);
                break;
            }
            if !retry {
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
        self.entries.lock().unwrap().push(entry.clone());
        entry
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }
}
