//! `kill -9` of the engine process during a storm of outbound deliveries, several times over.
//! Once it runs again, every committed event reaches every endpoint subscribed to it at least
//! once (a 2xx answer), durable retries included, and each endpoint saw its events' first
//! attempts in commit order.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use payrail::store::Db;
use payrail_actors::domain::TenantId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Client;
use serde_json::json;

use crate::outbound_receiver::{Delivery, Receiver, Script};
use crate::process::{database, tenant, Engine};

crate::helpers::per_backend!(outbound_deliveries_survive_kill_9);

const KILLS: usize = 5;
const INVOICES_PER_ROUND: usize = 30;
/// The longest a round waits for its kill point before killing anyway.
const KILL_WAIT: Duration = Duration::from_secs(20);
/// How long every committed event has, after the last restart, to reach every endpoint.
const SETTLE: Duration = Duration::from_secs(90);

/// Private loopback receivers, plain HTTP, short retries, and one attempt in flight per
/// endpoint so that a receiver sees first attempts in the order they were started. A short
/// lease: each restart is a new node, which takes the endpoints over once the killed one's
/// leases expire.
const OUTBOUND_ENV: [(&str, &str); 7] = [
    ("PAYRAIL_OUTBOUND__LEASE_MS", "1000"),
    ("PAYRAIL_OUTBOUND__ALLOW_HTTP", "true"),
    ("PAYRAIL_OUTBOUND__ALLOW_PRIVATE_TARGETS", "true"),
    ("PAYRAIL_OUTBOUND__CONCURRENCY_PER_ENDPOINT", "1"),
    (
        "PAYRAIL_OUTBOUND__RETRY_SCHEDULE_MS",
        "[100, 200, 400, 800, 1600, 3200]",
    ),
    ("PAYRAIL_OUTBOUND__SWEEP_MS", "100"),
    ("PAYRAIL_OUTBOUND__TIMEOUT_MS", "2000"),
];

struct Subscriber {
    name: &'static str,
    receiver: Receiver,
    /// Event types it subscribed to (empty: all).
    types: Vec<&'static str>,
}

impl Subscriber {
    fn wants(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.contains(&event_type)
    }
}

/// Answers 500 to the first attempt of about a third of the events, 200 otherwise: those
/// events are only delivered by a retry, which must survive the crashes too.
fn flaky() -> Script {
    std::sync::Arc::new(|id: &str, seen: usize| {
        let fails = seen == 0 && id.bytes().map(u32::from).sum::<u32>() % 3 == 0;
        (if fails { 500 } else { 200 }, Duration::ZERO)
    })
}

/// Commits invoices (each created and finalized: two events) until the engine goes away.
async fn storm(client: &Client, url: &str, key: &str) -> usize {
    let sends = (0..INVOICES_PER_ROUND).map(|_| {
        let body = json!({"customerName": "Storm", "currency": "USD", "finalize": true,
                          "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": 500}]});
        let request = client
            .post(format!("{url}/api/invoices"))
            .bearer_auth(key)
            .json(&body);
        async move {
            let response = request.send().await.ok()?;
            (response.status() == 201).then_some(())
        }
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .count()
}

/// The tenant's committed events after `after`, in commit order: `(sequence, id, type)`.
async fn committed(db: &Db, tenant: TenantId, after: i64) -> Vec<(i64, String, &'static str)> {
    let mut out = Vec::new();
    let mut last = after;
    loop {
        let page = db
            .list_events(tenant, None, None, 100, Some(last))
            .await
            .unwrap();
        let Some(end) = page.last() else {
            return out;
        };
        last = end.sequence;
        out.extend(
            page.into_iter()
                .map(|e| (e.sequence, e.event.id.to_string(), e.event.event_type())),
        );
    }
}

/// The webhook ids a receiver answered with a 2xx.
fn delivered(deliveries: &[Delivery]) -> HashSet<String> {
    deliveries
        .iter()
        .filter(|d| (200..300).contains(&d.answered))
        .map(|d| d.webhook_id().to_owned())
        .collect()
}

async fn outbound_deliveries_survive_kill_9(backend: crate::helpers::Backend) {
    let seed: u64 = std::env::var("PAYRAIL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("outbound kill -9 {backend:?}: seed {seed} (PAYRAIL_TEST_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = database(backend, dir.path()).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut engine = Engine::start_with(&url, None, &OUTBOUND_ENV).await;
    let t = tenant(&client, &engine.url).await;
    let key = t["apiKey"]["key"].as_str().unwrap().to_owned();
    let tenant_id: TenantId = t["id"].as_str().unwrap().parse().unwrap();
    let mut subscribers = Vec::new();
    for (name, script, types) in [
        ("every event", Receiver::always(200), vec![]),
        (
            "created only",
            Receiver::always(200),
            vec!["invoice.created"],
        ),
        ("flaky", flaky(), vec![]),
    ] {
        let receiver = Receiver::start(script).await;
        let response = client
            .post(format!("{}/api/webhook-endpoints", engine.url))
            .bearer_auth(&key)
            .json(&json!({"url": receiver.url, "eventTypes": types}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        subscribers.push(Subscriber {
            name,
            receiver,
            types,
        });
    }
    // The endpoints start at the end of the log as it was when they were made.
    let before = committed(&db, tenant_id, 0).await;
    let start = before.last().map_or(0, |e| e.0);

    let mut acknowledged = 0;
    for round in 0..KILLS {
        // The kill lands mid-storm: once the first receiver has had a random number of this
        // round's requests, with commits and deliveries still under way.
        let kill_at = rng.random_range(1..=2 * INVOICES_PER_ROUND);
        let watched = subscribers[0].receiver.log.clone();
        let base = watched.lock().unwrap().len();
        let engine_url = engine.url.clone();
        let kill = async move {
            let deadline = Instant::now() + KILL_WAIT;
            while watched.lock().unwrap().len() < base + kill_at && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            engine.kill9();
        };
        let (acked, ()) = tokio::join!(storm(&client, &engine_url, &key), kill);
        acknowledged += acked;
        let seen: Vec<usize> = subscribers
            .iter()
            .map(|s| s.receiver.deliveries().len())
            .collect();
        println!(
            "round {round}: killed at the first receiver's request {kill_at} of the round, \
             {acked} invoices acknowledged, requests received so far {seen:?}"
        );
        engine = Engine::start_with(&url, None, &OUTBOUND_ENV).await;
    }
    // One storm the engine survives, so there is always work after the last crash.
    acknowledged += storm(&client, &engine.url, &key).await;

    let events = committed(&db, tenant_id, start).await;
    assert!(
        events.len() >= 2 * acknowledged,
        "{} events for {acknowledged} acknowledged invoices",
        events.len()
    );
    let deadline = Instant::now() + SETTLE;
    for s in &subscribers {
        let want: HashSet<String> = events
            .iter()
            .filter(|e| s.wants(e.2))
            .map(|e| e.1.clone())
            .collect();
        assert!(!want.is_empty());
        loop {
            let got = delivered(&s.receiver.deliveries());
            let missing = want.difference(&got).count();
            if missing == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {missing} of {} committed events never delivered (seed {seed})",
                s.name,
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let sequence: HashMap<&str, i64> = events.iter().map(|e| (e.1.as_str(), e.0)).collect();
    for s in &subscribers {
        let deliveries = s.receiver.deliveries();
        let mut first_seen = HashSet::new();
        let mut firsts = Vec::new();
        for d in &deliveries {
            let id = d.webhook_id();
            assert!(
                sequence.contains_key(id),
                "{}: {id} is not an event committed after the endpoint was made",
                s.name
            );
            assert!(
                s.wants(d.json()["eventType"].as_str().unwrap()),
                "{}: {id} is of a type it did not subscribe to",
                s.name
            );
            if first_seen.insert(id.to_owned()) {
                firsts.push(sequence[id]);
            }
        }
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "{}: first attempts out of commit order (seed {seed}): {firsts:?}",
            s.name
        );
        let resent = deliveries.len() - firsts.len();
        println!(
            "{}: {} events, {} requests ({resent} retries or re-sends)",
            s.name,
            firsts.len(),
            deliveries.len()
        );
    }
    let flaky = &subscribers[2].receiver.deliveries();
    assert!(
        flaky.iter().any(|d| d.answered == 500),
        "the flaky receiver never failed an attempt: no retry was exercised"
    );
    drop(engine);
}
