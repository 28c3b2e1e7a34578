//! Two engine processes on one database share outbound delivery by leasing each endpoint.
//! While both live, every committed event (whichever node committed it) reaches every
//! endpoint, the endpoints are spread over both nodes, and no event is sent twice (the
//! receivers answer 200 at once, so every request is a first attempt). Then one node stops
//! mid-storm: after SIGTERM the other takes its endpoints over at once (the leases are
//! released, far sooner than they would expire) and still nothing is sent twice; after
//! `kill -9` it takes them over within the lease. Either way every committed event is
//! delivered afterwards, nothing lost. And at the store: a round is recorded only by the
//! lease's holder, so a node that lost its lease moves no cursor and logs nothing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use payrail::store::{AttemptRow, AttemptStatus, Db, Lease, RoundEffects, StoredEvent};
use payrail_actors::domain::{AttemptId, EndpointId, TenantId};
use reqwest::Client;
use serde_json::json;

use crate::helpers::Backend;
use crate::outbound_receiver::Receiver;
use crate::process::{database, tenant, Engine};

crate::helpers::per_backend!(
    outbound_leases_share_endpoints_and_hand_over_on_sigterm,
    outbound_leases_hand_over_after_kill_9,
    outbound_lease_fences_the_record_of_a_round,
);

const ENDPOINTS: usize = 4;
const INVOICES_PER_NODE: usize = 15;
/// How long every committed event has to reach every endpoint once a phase's commits are in.
const SETTLE: Duration = Duration::from_secs(60);
/// The sweep of the node that stays (it looks for free leases this often) and of the one
/// that stops (the default: it rarely looks just as the other node makes an endpoint).
const SWEEP_MS: u64 = 100;
const SLOW_SWEEP_MS: u64 = 1_000;

#[derive(Clone, Copy)]
enum Stop {
    Sigterm,
    Kill9,
}

/// Private loopback receivers over plain HTTP, a quick sweep, and a timeout no answer comes
/// near (the receivers answer at once), so that no request is ever a retry.
fn outbound_env(lease_ms: u64, sweep_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("PAYRAIL_OUTBOUND__ALLOW_HTTP", "true".into()),
        ("PAYRAIL_OUTBOUND__ALLOW_PRIVATE_TARGETS", "true".into()),
        ("PAYRAIL_OUTBOUND__SWEEP_MS", sweep_ms.to_string()),
        ("PAYRAIL_OUTBOUND__TIMEOUT_MS", "15000".into()),
        ("PAYRAIL_OUTBOUND__LEASE_MS", lease_ms.to_string()),
    ]
}

async fn start(url: &str, env: &[(&'static str, String)]) -> Engine {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Engine::start_with(url, None, &env).await
}

/// How long an invoice refused for a number the other node took is asked for again, and how
/// long to wait between two asks. A count of tries alone can run out while the other node is
/// still storming (seen: every one of a node's 15 invoices refused 20 times in a row).
const STORM_RETRY_FOR: Duration = Duration::from_secs(10);
const STORM_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Commits invoices (each created and finalized: two events) on one node, a few at a time;
/// answers how many were acknowledged (a node stopped meanwhile refuses the rest, and the
/// other node's numbering of the same tenant's invoices makes some conflict, retried).
async fn storm(client: &Client, url: &str, key: &str, invoices: usize) -> usize {
    let mut acknowledged = 0;
    for _ in 0..invoices / 3 {
        let sends = (0..3).map(|_| {
            let body = json!({"customerName": "Lease", "currency": "USD", "finalize": true,
                              "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": 700}]});
            let request = client
                .post(format!("{url}/api/invoices"))
                .bearer_auth(key)
                .json(&body);
            // Two nodes numbering one tenant's invoices refuse each other's numbers (409) until
            // each has read the other's, and on SQLite a node that cannot get the file's write
            // lock in time answers 503 (both retryable): the node that keeps losing tries
            // again, so that both nodes commit.
            async move {
                let deadline = Instant::now() + STORM_RETRY_FOR;
                loop {
                    let Some(attempt) = request.try_clone() else {
                        return false;
                    };
                    match attempt.send().await {
                        Ok(r) if r.status() == 201 => return true,
                        Ok(r) if matches!(r.status().as_u16(), 409 | 503) && Instant::now() < deadline => {
                            tokio::time::sleep(STORM_RETRY_PAUSE).await
                        }
                        // Shown with a failing test's output: what the node answered instead.
                        Ok(r) => {
                            eprintln!("{url}: invoice not created: {}", r.status());
                            return false;
                        }
                        Err(err) => {
                            eprintln!("{url}: invoice not created: {err}");
                            return false;
                        }
                    }
                }
            }
        });
        acknowledged += futures::future::join_all(sends)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
    }
    acknowledged
}

/// The ids of the tenant's committed events after `after`, in commit order.
async fn committed(db: &Db, tenant: TenantId, after: i64) -> Vec<String> {
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
        out.extend(page.into_iter().map(|e| e.event.id.to_string()));
    }
}

/// How many requests each webhook id got at this receiver.
fn requests_by_id(receiver: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for d in receiver.deliveries() {
        *counts.entry(d.webhook_id().to_owned()).or_insert(0) += 1;
    }
    counts
}

fn duplicates(receiver: &Receiver) -> Vec<(String, usize)> {
    requests_by_id(receiver)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect()
}

/// Waits until every receiver has had every event in `want`.
async fn all_delivered(receivers: &[Receiver], want: &[String], what: &str) {
    let deadline = Instant::now() + SETTLE;
    for (i, r) in receivers.iter().enumerate() {
        loop {
            let got: HashSet<String> = requests_by_id(r).into_keys().collect();
            let missing = want.iter().filter(|id| !got.contains(*id)).count();
            if missing == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: endpoint {i} never got {missing} of {} committed events",
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The node's `payrail_outbound_leases_held`, `None` if it does not answer.
async fn leases_held(client: &Client, url: &str) -> Option<u64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("payrail_outbound_leases_held ")?
            .parse()
            .ok()
    })
}

/// Waits (until `deadline`) for the node to hold `n` leases; answers when it did.
async fn holds(client: &Client, url: &str, n: u64, deadline: Instant, what: &str) -> Instant {
    loop {
        let held = leases_held(client, url).await;
        if held == Some(n) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the node holds {held:?} leases, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn outbound_leases_share_endpoints_and_hand_over_on_sigterm(backend: Backend) {
    // Leases far longer than the test waits for a handover: only a release explains one.
    two_nodes(backend, Stop::Sigterm, 30_000).await;
}

async fn outbound_leases_hand_over_after_kill_9(backend: Backend) {
    two_nodes(backend, Stop::Kill9, 5_000).await;
}

async fn two_nodes(backend: Backend, stop: Stop, lease_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = database(backend, dir.path()).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let a = start(&url, &outbound_env(lease_ms, SLOW_SWEEP_MS)).await;
    let t = tenant(&client, &a.url).await;
    let key = t["apiKey"]["key"].as_str().unwrap().to_owned();
    let tenant_id: TenantId = t["id"].as_str().unwrap().parse().unwrap();

    // Half the endpoints are made through a before b runs, the other half through b, whose
    // dispatcher hears of them first: each node holds some.
    let mut receivers = Vec::new();
    let mut b = None;
    for i in 0..ENDPOINTS {
        let node = if i < ENDPOINTS / 2 { "a" } else { "b" };
        if node == "b" && b.is_none() {
            let made = (ENDPOINTS / 2) as u64;
            holds(
                &client,
                &a.url,
                made,
                Instant::now() + SETTLE,
                "a's endpoints",
            )
            .await;
            b = Some(start(&url, &outbound_env(lease_ms, SWEEP_MS)).await);
        }
        let node = match &b {
            Some(b) if node == "b" => &b.url,
            _ => &a.url,
        };
        let receiver = Receiver::start(Receiver::always(200)).await;
        let response = client
            .post(format!("{node}/api/webhook-endpoints"))
            .bearer_auth(&key)
            .json(&json!({"url": receiver.url}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "endpoint {i}");
        receivers.push(receiver);
    }
    let b = b.unwrap();
    let start_seq = db
        .list_events(tenant_id, None, None, 1_000, None)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.sequence);

    // Both nodes live: commits on both, every event delivered once to every endpoint.
    let (acked_a, acked_b) = tokio::join!(
        storm(&client, &a.url, &key, INVOICES_PER_NODE),
        storm(&client, &b.url, &key, INVOICES_PER_NODE)
    );
    // One tenant's invoices on two nodes: numbering conflicts refuse some (409), which is
    // why tenants are routed to one node; the log is what counts.
    assert!(acked_a > 0 && acked_b > 0, "a {acked_a}, b {acked_b}");
    let both_live = committed(&db, tenant_id, start_seq).await;
    assert!(both_live.len() >= 2 * (acked_a + acked_b));
    all_delivered(&receivers, &both_live, "both nodes live").await;
    for (i, r) in receivers.iter().enumerate() {
        let dups = duplicates(r);
        assert!(
            dups.is_empty(),
            "endpoint {i}: sent twice while both nodes lived: {dups:?}"
        );
    }
    let (held_a, held_b) = (
        leases_held(&client, &a.url).await.unwrap(),
        leases_held(&client, &b.url).await.unwrap(),
    );
    println!("leases held: a {held_a}, b {held_b}");
    assert_eq!(held_a + held_b, ENDPOINTS as u64);
    assert!(
        held_a > 0 && held_b > 0,
        "one node delivers everything: a {held_a}, b {held_b}"
    );

    // Node a stops in the middle of a storm on both nodes; b takes its endpoints over.
    let watched = receivers[0].log.clone();
    let base = watched.lock().unwrap().len();
    let b_url = b.url.clone();
    let a_url = a.url.clone();
    let stopper = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while watched.lock().unwrap().len() < base + 6 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let stopped_at = Instant::now();
        match stop {
            Stop::Sigterm => assert!(a.sigterm().success()),
            Stop::Kill9 => a.kill9(),
        }
        stopped_at
    };
    let (stopped_at, _, _) = tokio::join!(
        stopper,
        storm(&client, &a_url, &key, INVOICES_PER_NODE),
        storm(&client, &b_url, &key, INVOICES_PER_NODE)
    );
    let lease = Duration::from_millis(lease_ms);
    let bound = match stop {
        // A release: within a few sweeps of a's exit, far below the lease.
        Stop::Sigterm => Duration::from_secs(5),
        // An expiry: the lease, a sweep, and some slack for a loaded machine.
        Stop::Kill9 => lease + Duration::from_secs(3),
    };
    let took_over = holds(
        &client,
        &b.url,
        ENDPOINTS as u64,
        stopped_at + bound,
        "after a stopped",
    )
    .await;
    println!(
        "b holds every lease {:?} after a was stopped (lease {lease:?})",
        took_over - stopped_at
    );

    // Commits after the handover, then every event committed since the start is delivered.
    let acked = storm(&client, &b.url, &key, INVOICES_PER_NODE).await;
    assert!(acked > 0);
    let everything = committed(&db, tenant_id, start_seq).await;
    all_delivered(&receivers, &everything, "after the handover").await;
    for (i, r) in receivers.iter().enumerate() {
        let dups = duplicates(r);
        println!(
            "endpoint {i}: {} events, {} sent again",
            everything.len(),
            dups.len()
        );
        // A node that drains records its last round before it lets go: nothing is sent
        // twice. One killed mid-round leaves that round for the other node to send again.
        if matches!(stop, Stop::Sigterm) {
            assert!(dups.is_empty(), "endpoint {i}: sent twice: {dups:?}");
        }
    }
    drop(b);
}

/// One attempt of `event`, as a round would log it; `Pending` owes a retry.
fn attempt(event: &StoredEvent, status: AttemptStatus) -> AttemptRow {
    let now = chrono::Utc::now();
    AttemptRow {
        id: AttemptId::new(),
        event_seq: event.sequence,
        event_id: event.event.id,
        attempt: 1,
        status,
        response_status: Some(if status == AttemptStatus::Succeeded {
            200
        } else {
            500
        }),
        response_body: None,
        duration_ms: 1,
        attempted_at: now,
        next_attempt_at: (status == AttemptStatus::Pending)
            .then(|| now + chrono::Duration::hours(1)),
    }
}

/// Records a round of `attempts` for `lease` that moves the cursor to `to`; answers whether
/// it was recorded.
async fn record(
    db: &Db,
    (tenant, id): (TenantId, EndpointId),
    lease: &Lease,
    attempts: &[AttemptRow],
    to: &StoredEvent,
) -> bool {
    let effects = RoundEffects {
        cursor_seq: Some(to.sequence),
        ..RoundEffects::default()
    };
    db.record_round(tenant, id, lease, attempts, &effects)
        .await
        .unwrap()
}

/// Two nodes' leases on one endpoint, driven by hand on the store (no dispatcher runs): only
/// the holder records a round; an expired lease goes to the other node, after which the first
/// node's late round changes nothing (its cursor would go backwards, its retry would be owed
/// twice); a released lease is free at once.
async fn outbound_lease_fences_the_record_of_a_round(backend: Backend) {
    use crate::outbound_policy::{app_without_dispatcher, endpoint};
    let app = app_without_dispatcher(backend).await;
    let t = app.tenant("Acme").await;
    let id = endpoint(&app, &t, json!({"url": "http://127.0.0.1:9/hook"})).await;
    let (tenant, id): (TenantId, EndpointId) = (t.id.parse().unwrap(), id.parse().unwrap());
    app.invoice(&t.key, 100, true).await;
    let db = &app._state.db;
    let cursor = |db: &Db| {
        let db = db.clone();
        async move {
            db.get_endpoint(tenant, id)
                .await
                .unwrap()
                .unwrap()
                .cursor_seq
        }
    };
    let logged = |db: &Db| {
        let db = db.clone();
        async move {
            db.list_attempts(tenant, id, None, 100, None)
                .await
                .unwrap()
                .len()
        }
    };
    let start = cursor(db).await;
    let events = db.events_after(tenant, start, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    let a = Lease {
        owner: "node-a".into(),
        duration: Duration::from_millis(300),
    };
    let b = Lease {
        owner: "node-b".into(),
        duration: Duration::from_secs(60),
    };

    assert!(db.take_endpoint_lease(tenant, id, &a).await.unwrap());
    assert!(!db.take_endpoint_lease(tenant, id, &b).await.unwrap());
    assert!(!db.renew_endpoint_lease(tenant, id, &b).await.unwrap());
    assert!(db.renew_endpoint_lease(tenant, id, &a).await.unwrap());
    // Not the holder: the whole round is refused.
    let first = [attempt(&events[0], AttemptStatus::Succeeded)];
    assert!(!record(db, (tenant, id), &b, &first, &events[0]).await);
    assert_eq!((cursor(db).await, logged(db).await), (start, 0));
    // The holder's round is recorded.
    assert!(record(db, (tenant, id), &a, &first, &events[0]).await);
    assert_eq!(
        (cursor(db).await, logged(db).await),
        (events[0].sequence, 1)
    );

    // a stops renewing; once its lease has expired by the database's clock, b takes it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.take_endpoint_lease(tenant, id, &b).await.unwrap() {
        assert!(Instant::now() < deadline, "b never took the expired lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!db.take_endpoint_lease(tenant, id, &a).await.unwrap());
    let second = [attempt(&events[1], AttemptStatus::Succeeded)];
    assert!(record(db, (tenant, id), &b, &second, &events[1]).await);
    // a's late round (a failure owing a retry, the cursor at its own last event) is fenced.
    let late = [attempt(&events[0], AttemptStatus::Pending)];
    assert!(!record(db, (tenant, id), &a, &late, &events[0]).await);
    assert_eq!(
        (cursor(db).await, logged(db).await),
        (events[1].sequence, 2)
    );
    assert_eq!(db.next_retry_at(tenant, id).await.unwrap(), None);

    // A released lease is free at once.
    db.release_endpoint_lease(tenant, id, &b).await.unwrap();
    assert!(db.take_endpoint_lease(tenant, id, &a).await.unwrap());
    assert_eq!(db.release_endpoint_leases(&a).await.unwrap(), 1);
}
