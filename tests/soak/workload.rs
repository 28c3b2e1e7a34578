//! The mixed workload: several tenants, each with a few concurrent clients creating invoices,
//! paying them (tokens, a declined card, a card that succeeds and then fails late), refunding
//! and voiding, every write under its own Idempotency-Key. Choices come from a seeded RNG per
//! client; each client runs until told to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::engine::ADMIN;
use crate::history::{History, Kind, Op};

pub struct Tenant {
    pub key: String,
}

/// What a tenant's clients know: acknowledged invoices (id, total) and payments (id, amount).
#[derive(Default)]
struct Known {
    invoices: Vec<(String, i64)>,
    payments: Vec<(String, i64)>,
}

pub struct Workload {
    pub tenants: Vec<Tenant>,
    known: Vec<Mutex<Known>>,
    pub history: History,
    pub stop: AtomicBool,
    /// Acknowledged writes a read right after did not see.
    pub unseen: Mutex<Vec<String>>,
    client: reqwest::Client,
}

/// Creates the tenants (retrying until the engine answers).
pub async fn tenants(base: &str, count: usize, seed: u64) -> Vec<Tenant> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for n in 0..count {
        let mut created = None;
        for _ in 0..100 {
            let answer = client
                .post(format!("{base}/api/tenants"))
                .bearer_auth(ADMIN)
                .header("Idempotency-Key", format!("soak-tenant-{seed}-{n}"))
                .json(&json!({"name": format!("Soak {n}")}))
                .send()
                .await;
            if let Ok(answer) = answer {
                if answer.status() == 201 || answer.status() == 200 {
                    created = answer.json::<Value>().await.ok();
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let t = created.expect("tenant created");
        out.push(Tenant {
            key: t["apiKey"]["key"].as_str().unwrap().to_owned(),
        });
    }
    out
}

fn payment_method(rng: &mut StdRng) -> Value {
    match rng.random_range(0..20) {
        0..=14 => json!({"type": "card", "token": "tok_visa"}),
        15..=17 => json!({"type": "card", "token": "tok_chargeDeclined"}),
        _ => json!({"type": "card", "number": "4000000000000259", "expMonth": 12,
                    "expYear": 2040, "cvc": "123"}),
    }
}

impl Workload {
    pub fn new(tenants: Vec<Tenant>) -> Arc<Workload> {
        let known = tenants
            .iter()
            .map(|_| Mutex::new(Known::default()))
            .collect();
        Arc::new(Workload {
            tenants,
            known,
            history: History::default(),
            stop: AtomicBool::new(false),
            unseen: Mutex::new(Vec::new()),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(4)
                .build()
                .unwrap(),
        })
    }

    /// The next write of a client.
    fn next_op(&self, tenant: usize, rng: &mut StdRng, key: String) -> Op {
        let known = self.known[tenant].lock().unwrap();
        let pick = rng.random_range(0..100);
        let op = |kind, path: String, body, invoice, payment| Op {
            tenant,
            kind,
            key: key.clone(),
            path,
            body,
            invoice,
            payment,
        };
        if pick < 25 || known.invoices.is_empty() {
            let quantity = rng.random_range(1..=3);
            let unit = rng.random_range(5..=30) * 100;
            let body = json!({"customerName": key, "currency": "USD", "finalize": true,
                "lineItems": [{"description": "Seat", "quantity": quantity, "unitAmount": unit}]});
            return op(
                Kind::CreateInvoice,
                "/api/invoices".into(),
                Some(body),
                None,
                None,
            );
        }
        // Mostly recent invoices, so payments meet each other on the same invoice.
        let recent = known.invoices.len().saturating_sub(8);
        let (invoice, total) =
            known.invoices[rng.random_range(recent..known.invoices.len())].clone();
        if pick < 70 || (pick < 92 && known.payments.is_empty()) {
            let mut body = json!({"invoiceId": invoice, "paymentMethod": payment_method(rng)});
            if rng.random_bool(0.75) {
                body["amount"] = json!(rng.random_range(1..=(total / 3).max(1)));
            }
            return op(
                Kind::Pay,
                "/api/payments".into(),
                Some(body),
                Some(invoice),
                None,
            );
        }
        if pick < 92 {
            let (payment, amount) =
                known.payments[rng.random_range(0..known.payments.len())].clone();
            let body = json!({"amount": rng.random_range(1..=(amount / 2).max(1)),
                              "reason": "requested_by_customer"});
            let path = format!("/api/payments/{payment}/refunds");
            return op(Kind::Refund, path, Some(body), None, Some(payment));
        }
        let path = format!("/api/invoices/{invoice}/void");
        op(Kind::Void, path, None, Some(invoice), None)
    }

    /// Reads an acknowledged invoice or payment back at once: a read after an acknowledgement
    /// sees it (unless the engine is gone by then).
    async fn read_back(&self, base: &str, api_key: &str, kind: Kind, body: &Value) {
        let id = body["id"].as_str().unwrap_or_default();
        let path = match kind {
            Kind::CreateInvoice => format!("/api/invoices/{id}"),
            Kind::Pay => format!("/api/payments/{id}"),
            Kind::Refund | Kind::Void => return,
        };
        let answer = self
            .client
            .get(format!("{base}{path}"))
            .bearer_auth(api_key)
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        if let Ok(answer) = answer {
            if answer.status() == 404 {
                self.unseen
                    .lock()
                    .unwrap()
                    .push(format!("acknowledged {id} not found by a read right after"));
            }
        }
    }

    /// One client: writes until `stop`, against whatever engine listens at `base`.
    pub async fn client(self: Arc<Self>, base: String, tenant: usize, worker: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed ^ ((tenant as u64) << 32) ^ worker as u64);
        let api_key = self.tenants[tenant].key.clone();
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let key = format!("soak-{seed}-{tenant}-{worker}-{n}");
            let op = self.next_op(tenant, &mut rng, key);
            let kind = op.kind;
            let entry = self.history.run(&self.client, &base, &api_key, op).await;
            let Some(body) = entry.acked else { continue };
            self.read_back(&base, &api_key, kind, &body).await;
            let mut known = self.known[tenant].lock().unwrap();
            match kind {
                Kind::CreateInvoice => {
                    if let (Some(id), Some(total)) = (body["id"].as_str(), body["total"].as_i64()) {
                        known.invoices.push((id.to_owned(), total));
                    }
                }
                Kind::Pay => {
                    if let (Some(id), Some(amount)) = (body["id"].as_str(), body["amount"].as_i64())
                    {
                        known.payments.push((id.to_owned(), amount));
                    }
                }
                Kind::Refund | Kind::Void => {}
            }
        }
    }
}
