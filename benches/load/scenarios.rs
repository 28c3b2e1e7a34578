//! What the load is made of: seeding tenants, invoices and payments through the public API, and
//! the request mix of each scenario. Requests are pure functions of their number, so a duplicate
//! webhook is the exact body of an earlier one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::{stream, StreamExt};
use payrail::gateway::signature::{sign, SIGNATURE_HEADER};
use serde_json::{json, Value};

use crate::driver::{counters, webhook_events, Method, Req, Workload};
use crate::options::Mix;
use crate::procs::ADMIN_TOKEN;
use crate::stub::reference_for;

/// Requests in flight while seeding.
const SEED_CONCURRENCY: usize = 128;
/// How long the seed waits for its payments' charges to reach the gateway.
const CHARGES_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Each seeded invoice is large enough never to be paid off by the load (amounts in cents).
const INVOICE_TOTAL: i64 = 1_000_000_000_000;
/// Amount of every seeded payment, and of the webhooks about it.
pub const PAYMENT_AMOUNT: i64 = 1_000;
/// Events per `webhooks-batch` request.
pub const BATCH_EVENTS: u64 = 100;
/// How far back (in the tenant's own events, × the re-send spacing) a duplicate reaches.
const DUPLICATE_WINDOW: u64 = 20;

pub struct Tenant {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub invoices: Vec<String>,
    pub payments: Vec<String>,
    /// The tenant's next webhook event number, shared by every webhook scenario of the run:
    /// a later scenario continues with payments the earlier ones have not moved yet, so its
    /// events apply instead of arriving stale.
    pub next_event: AtomicU64,
}

pub struct Seed {
    pub url: String,
    pub tenants: Vec<Tenant>,
    pub mix: Mix,
}

impl Seed {
    pub fn payment_count(&self) -> usize {
        self.tenants.iter().map(|t| t.payments.len()).sum()
    }
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
    idempotency_key: Option<String>,
) -> anyhow::Result<Value> {
    let mut request = client.post(url).bearer_auth(token).json(&body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let mut last = String::new();
    // Seeding must not fail on a transient 503 (bounded queues), nor on a pooled keep-alive
    // connection the server closed just as it was reused ("connection closed before message
    // completed"): retry a few times, and say so. A payment carries its idempotency key, so a
    // retry never makes a second one; a retried tenant or invoice may leave an unused one.
    for _ in 0..20 {
        let sent = request
            .try_clone()
            .context("cloning a request")?
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) if err.is_request() || err.is_connect() => {
                let err = anyhow::Error::from(err);
                eprintln!("load: seeding: {url}: {err:#}; retrying");
                last = format!("{err:#}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        last = format!("{status}: {value}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("POST {url} failed: {last}")
}

fn invoice_body() -> Value {
    json!({"customerName": "Load Test", "currency": "USD", "finalize": true,
           "lineItems": [{"description": "Usage", "quantity": 1, "unitAmount": INVOICE_TOTAL}]})
}

pub fn payment_body(invoice: &str, amount: i64) -> Value {
    json!({"invoiceId": invoice, "amount": amount,
           "paymentMethod": {"type": "card", "token": "tok_visa"}})
}

/// Webhook events the engine's simulator sends about each charge of the seed's card
/// (`tok_visa`): `payment.processing`, then `payment.succeeded`.
const SIMULATOR_EVENTS_PER_CHARGE: usize = 2;

/// Creates `tenants` tenants, each with `invoices` open invoices and `payments` payments
/// (round robin over its invoices), all through the HTTP API, and waits for their charges to
/// be settled (`stub`, or the engine's simulator when `None`; see `charges_settled`).
pub async fn seed(
    client: &reqwest::Client,
    url: &str,
    stub: Option<&str>,
    tenants: usize,
    invoices: usize,
    payments: usize,
    mix: Mix,
) -> anyhow::Result<Seed> {
    // The stub serves every engine of the run: count only this seed's charges.
    let settled = match stub {
        Some(stub) => Settled::Stub {
            url: stub,
            charged_before: charged_count(client, stub).await?,
        },
        None => {
            let before = counters(client, url).await;
            if before.is_empty() {
                bail!("the engine's /metrics did not answer before the seed");
            }
            Settled::Simulator {
                events_before: webhook_events(&before),
            }
        }
    };
    let mut seeded = Vec::with_capacity(tenants);
    for n in 0..tenants {
        let t = post_json(
            client,
            &format!("{url}/api/tenants"),
            ADMIN_TOKEN,
            json!({"name": format!("load-{n}")}),
            None,
        )
        .await?;
        let field = |v: &Value| v.as_str().map(str::to_owned).context("tenant field");
        seeded.push(Tenant {
            id: field(&t["id"])?,
            key: field(&t["apiKey"]["key"])?,
            secret: field(&t["webhookSecret"])?,
            invoices: Vec::new(),
            payments: Vec::new(),
            next_event: AtomicU64::new(0),
        });
    }
    let jobs: Vec<(usize, usize)> = (0..tenants)
        .flat_map(|t| (0..invoices).map(move |i| (t, i)))
        .collect();
    let created: Vec<anyhow::Result<(usize, String)>> = stream::iter(jobs)
        .map(|(t, _)| {
            let key = seeded[t].key.clone();
            async move {
                let v = post_json(
                    client,
                    &format!("{url}/api/invoices"),
                    &key,
                    invoice_body(),
                    None,
                )
                .await?;
                Ok((t, v["id"].as_str().context("invoice id")?.to_owned()))
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .collect()
        .await;
    for result in created {
        let (t, id) = result?;
        seeded[t].invoices.push(id);
    }
    let jobs: Vec<(usize, String)> = (0..tenants)
        .flat_map(|t| {
            let invoices = seeded[t].invoices.clone();
            (0..payments).map(move |p| (t, invoices[p % invoices.len()].clone()))
        })
        .collect();
    let created: Vec<anyhow::Result<(usize, String)>> = stream::iter(jobs.into_iter().enumerate())
        .map(|(n, (t, invoice))| {
            let key = seeded[t].key.clone();
            async move {
                let v = post_json(
                    client,
                    &format!("{url}/api/payments"),
                    &key,
                    payment_body(&invoice, PAYMENT_AMOUNT),
                    Some(format!("seed-{n}")),
                )
                .await?;
                Ok((t, v["id"].as_str().context("payment id")?.to_owned()))
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .collect()
        .await;
    for result in created {
        let (t, id) = result?;
        seeded[t].payments.push(id);
    }
    charges_settled(client, url, settled, tenants * payments).await?;
    Ok(Seed {
        url: url.to_owned(),
        tenants: seeded,
        mix,
    })
}

/// What the seed's charges have settled against.
#[derive(Clone, Copy)]
enum Settled<'a> {
    /// The stub gateway, which had accepted this many charges before the seed.
    Stub { url: &'a str, charged_before: usize },
    /// The engine's in-process simulator, which reports each charge by webhooks; the engine
    /// had taken this many webhook events before the seed.
    Simulator { events_before: f64 },
}

/// Waits until every seeded payment's charge is accepted by the stub gateway, or, on the
/// simulator, until the engine has taken the simulator's webhooks about every one of them, and
/// until no charge is in flight. A payment is answered once it is durable and its charge goes
/// to the gateway after that; a charge finding every gateway slot taken waits for the engine's
/// recovery sweep (every 30 s). Without this, the first steps would measure the tail of the
/// seed's charges along with their own load: the simulator delivers its webhooks behind the
/// charges, and after a seed of 96,000 payments those of ~20,000 were still to come.
async fn charges_settled(
    client: &reqwest::Client,
    url: &str,
    settled: Settled<'_>,
    payments: usize,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + CHARGES_SETTLE_TIMEOUT;
    loop {
        let counters = counters(client, url).await;
        let charged = match settled {
            Settled::Stub {
                url: stub,
                charged_before,
            } => charged_count(client, stub).await? >= charged_before + payments,
            Settled::Simulator { events_before } => {
                let expected = (payments * SIMULATOR_EVENTS_PER_CHARGE) as f64;
                webhook_events(&counters) >= events_before + expected
            }
        };
        let in_flight = counters.get("payrail_charges_awaiting_gateway");
        if charged && in_flight.is_some_and(|&n| n <= 0.0) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("seeded payments' charges not settled after {CHARGES_SETTLE_TIMEOUT:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// How many payments the stub gateway has accepted a charge for, over all engines it served.
async fn charged_count(client: &reqwest::Client, stub: &str) -> anyhow::Result<usize> {
    let stats: Value = client
        .get(format!("{stub}/stats/charged"))
        .send()
        .await?
        .json()
        .await?;
    Ok(stats["payments"].as_u64().unwrap_or(0) as usize)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Event `k` of a tenant's stream of webhooks: payments in turn; on its first two visits a
/// payment gets `processing` and `succeeded` — in that order for even payments, reversed for
/// odd ones, or `succeeded` first for all with `outcomes_first` — and later visits alternate
/// the two (stale, hence ignored but still deduplicated). A seeded payment is processing
/// already, so only its `succeeded` applies: half of the first two visits, or with
/// `outcomes_first` every first visit. Each step reports how many applied.
fn event(tenant: &Tenant, run: &str, k: u64, outcomes_first: bool) -> Value {
    let count = tenant.payments.len() as u64;
    let p = (k % count) as usize;
    let round = k / count;
    let reversed = outcomes_first || p % 2 == 1;
    let succeeded = match round {
        0 => reversed,
        1 => !reversed,
        r => r % 2 == 1,
    };
    let payment = &tenant.payments[p];
    let mut data = json!({"paymentId": payment, "gatewayReference": reference_for(payment)});
    let kind = if succeeded {
        data["amount"] = json!(PAYMENT_AMOUNT);
        data["currency"] = json!("USD");
        "payment.succeeded"
    } else {
        "payment.processing"
    };
    json!({"id": format!("evt_gw_{run}_{k}"), "type": kind, "account": tenant.id,
           "created": now_secs(), "data": data})
}

/// Event `k`'s number in the tenant's stream: one event in `every` (none when 0) repeats a
/// recent one of the same tenant.
fn event_number(k: u64, every: u64) -> u64 {
    if every > 0 && k % every == every - 1 {
        k.saturating_sub(every * ((k / every) % DUPLICATE_WINDOW) + 1)
    } else {
        k
    }
}

fn signed(seed: &Seed, tenant: &Tenant, body: Vec<u8>, ops: u64) -> Req {
    let signature = sign(&tenant.secret, now_secs(), &body);
    Req {
        method: Method::Post,
        url: format!("{}/api/webhooks/payments", seed.url),
        headers: vec![(SIGNATURE_HEADER, signature)],
        body: Some(body),
        ops,
        webhook: true,
    }
}

/// Events every tenant can still receive on first visits of its payments (two per payment,
/// one with `outcomes_first`).
fn fresh_events_left(seed: &Seed) -> u64 {
    let visits = if seed.mix.outcomes_first { 1 } else { 2 };
    seed.tenants
        .iter()
        .map(|t| {
            (visits * t.payments.len() as u64).saturating_sub(t.next_event.load(Ordering::Relaxed))
        })
        .min()
        .unwrap_or(0)
}

/// `webhooks`: one signed event per request, tenants in turn.
pub struct Webhooks {
    pub seed: Arc<Seed>,
    pub run: String,
}

impl Workload for Webhooks {
    fn request(&self, i: u64) -> Req {
        let tenants = self.seed.tenants.len() as u64;
        let tenant = &self.seed.tenants[(i % tenants) as usize];
        let k = event_number(
            tenant.next_event.fetch_add(1, Ordering::Relaxed),
            self.seed.mix.resend_every,
        );
        let body = serde_json::to_vec(&event(tenant, &self.run, k, self.seed.mix.outcomes_first))
            .unwrap_or_default();
        signed(&self.seed, tenant, body, 1)
    }

    fn requests_left(&self) -> Option<u64> {
        Some(fresh_events_left(&self.seed) * self.seed.tenants.len() as u64)
    }
}

/// `webhooks-batch`: `BATCH_EVENTS` events of one tenant per request.
pub struct WebhookBatches {
    pub seed: Arc<Seed>,
    pub run: String,
}

impl Workload for WebhookBatches {
    fn request(&self, i: u64) -> Req {
        let tenants = self.seed.tenants.len() as u64;
        let tenant = &self.seed.tenants[(i % tenants) as usize];
        let first = tenant.next_event.fetch_add(BATCH_EVENTS, Ordering::Relaxed);
        let events: Vec<Value> = (first..first + BATCH_EVENTS)
            .map(|k| {
                let k = event_number(k, self.seed.mix.resend_every);
                event(tenant, &self.run, k, self.seed.mix.outcomes_first)
            })
            .collect();
        let body = serde_json::to_vec(&json!({"account": tenant.id, "events": events}))
            .unwrap_or_default();
        signed(&self.seed, tenant, body, BATCH_EVENTS)
    }

    fn requests_left(&self) -> Option<u64> {
        Some(fresh_events_left(&self.seed) / BATCH_EVENTS * self.seed.tenants.len() as u64)
    }
}

/// `payments`: `POST /api/payments` with a fresh Idempotency-Key, invoices in turn.
pub struct Payments {
    pub seed: Arc<Seed>,
    pub run: String,
}

impl Workload for Payments {
    fn request(&self, i: u64) -> Req {
        let tenants = self.seed.tenants.len() as u64;
        let tenant = &self.seed.tenants[(i % tenants) as usize];
        let invoice = &tenant.invoices[((i / tenants) % tenant.invoices.len() as u64) as usize];
        let body = serde_json::to_vec(&payment_body(invoice, 100)).unwrap_or_default();
        Req {
            method: Method::Post,
            url: format!("{}/api/payments", self.seed.url),
            headers: vec![
                ("Authorization", format!("Bearer {}", tenant.key)),
                ("Idempotency-Key", format!("{}-{i}", self.run)),
            ],
            body: Some(body),
            ops: 1,
            webhook: false,
        }
    }
}

/// `invoices`: `POST /api/invoices` (created and finalized) with a fresh Idempotency-Key, tenants
/// in turn; with `--tenants 1` every creation takes the next number of one tenant.
pub struct Invoices {
    pub seed: Arc<Seed>,
    pub run: String,
}

impl Workload for Invoices {
    fn request(&self, i: u64) -> Req {
        let tenant = &self.seed.tenants[(i % self.seed.tenants.len() as u64) as usize];
        let body = json!({"customerName": format!("Load {i}"), "currency": "USD", "finalize": true,
                          "lineItems": [{"description": "Seat", "quantity": 3, "unitAmount": 1000}]});
        Req {
            method: Method::Post,
            url: format!("{}/api/invoices", self.seed.url),
            headers: vec![
                ("Authorization", format!("Bearer {}", tenant.key)),
                ("Idempotency-Key", format!("{}-{i}", self.run)),
            ],
            body: Some(serde_json::to_vec(&body).unwrap_or_default()),
            ops: 1,
            webhook: false,
        }
    }
}

/// `mixed`: 50% webhooks, 30% payments, 10% invoice list pages, 10% payment timelines.
pub struct Mixed {
    pub webhooks: Webhooks,
    pub payments: Payments,
}

impl Workload for Mixed {
    fn request(&self, i: u64) -> Req {
        let seed = &self.webhooks.seed;
        let tenant = &seed.tenants[(i % seed.tenants.len() as u64) as usize];
        let read = |url: String| Req {
            method: Method::Get,
            url,
            headers: vec![("Authorization", format!("Bearer {}", tenant.key))],
            body: None,
            ops: 1,
            webhook: false,
        };
        match i % 10 {
            0..=4 => self.webhooks.request(i),
            5..=7 => self.payments.request(i),
            8 => read(format!("{}/api/invoices?page=1&pageSize=10", seed.url)),
            _ => {
                let p = &tenant.payments[((i / 10) % tenant.payments.len() as u64) as usize];
                read(format!("{}/api/payments/{p}/timeline", seed.url))
            }
        }
    }
}

/// `many-actors`: one `payment.succeeded` for each seeded payment, every payment once.
pub struct EveryPayment {
    pub seed: Arc<Seed>,
    pub run: String,
    /// (tenant index, payment index) in sending order.
    pub order: Vec<(usize, usize)>,
}

impl EveryPayment {
    pub fn new(seed: Arc<Seed>, run: String) -> Self {
        let longest = seed.tenants.iter().map(|t| t.payments.len()).max();
        let order = (0..longest.unwrap_or(0))
            .flat_map(|p| {
                let seed = seed.clone();
                (0..seed.tenants.len())
                    .filter(move |&t| p < seed.tenants[t].payments.len())
                    .map(move |t| (t, p))
            })
            .collect();
        EveryPayment { seed, run, order }
    }
}

impl Workload for EveryPayment {
    fn request(&self, i: u64) -> Req {
        let (t, p) = self.order[(i % self.order.len() as u64) as usize];
        let tenant = &self.seed.tenants[t];
        let payment = &tenant.payments[p];
        let body = serde_json::to_vec(&json!({
            "id": format!("evt_gw_{}_{i}", self.run), "type": "payment.succeeded",
            "account": tenant.id, "created": now_secs(),
            "data": {"paymentId": payment, "gatewayReference": reference_for(payment),
                     "amount": PAYMENT_AMOUNT, "currency": "USD"}}))
        .unwrap_or_default();
        signed(&self.seed, tenant, body, 1)
    }
}

/// `noop`: the stub's no-op JSON handler (the HTTP ceiling).
pub struct Noop {
    pub url: String,
}

impl Workload for Noop {
    fn request(&self, _i: u64) -> Req {
        Req {
            method: Method::Post,
            url: format!("{}/noop", self.url),
            headers: Vec::new(),
            body: Some(br#"{"ping":1}"#.to_vec()),
            ops: 1,
            webhook: false,
        }
    }
}
