//! Outbound webhooks end to end: deliveries verified with the standardwebhooks Python package
//! (one secret, then both during a rotation), replay and redelivery, a chaos receiver (500s,
//! timeouts, 410) with retries on a short configured schedule, disabling and resuming, SSRF
//! refusals and tenant isolation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app_with, Backend, Tenant, TestApp};
use crate::outbound_receiver::{verify_with_python, Receiver};

crate::helpers::per_backend!(
    outbound_deliveries_verify_with_standardwebhooks,
    outbound_commits_wake_only_followed_tenants_and_none_waits_for_a_sweep,
    outbound_chaos_retries_disable_and_resume,
    outbound_refuses_private_targets,
);

/// Retry delays of the tests, in milliseconds.
const SCHEDULE_MS: [u64; 3] = [100, 150, 200];

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |s| {
        s.outbound.allow_http = true;
        s.outbound.allow_private_targets = true;
        s.outbound.retry_schedule_ms = SCHEDULE_MS.to_vec();
        s.outbound.timeout_ms = 300;
        s.outbound.sweep_ms = 50;
    })
    .await
}

/// A tenant's commits wake its endpoints' deliveries at once: the dispatcher follows the
/// tenants that have endpoints (the others' commits do not wake it), and starts following a
/// tenant as soon as its first endpoint is created. Sweeps and lease renewals, which would
/// deliver anyway, are ten minutes apart here, so every delivery below comes from a commit's
/// wake-up.
async fn outbound_commits_wake_only_followed_tenants_and_none_waits_for_a_sweep(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.outbound.allow_http = true;
        s.outbound.allow_private_targets = true;
        s.outbound.sweep_ms = 600_000;
        // A held lease is renewed at a third of its term, with a fresh look at the log.
        s.outbound.lease_ms = 1_800_000;
    })
    .await;
    let (with, without) = (app.tenant("Followed").await, app.tenant("Quiet").await);
    let receiver = Receiver::start(Receiver::always(204)).await;
    endpoint(&app, &with, json!({"url": receiver.url})).await;
    for round in 1..=3 {
        app.invoice(&without.key, 100, true).await;
        app.invoice(&with.key, 100, true).await;
        receiver
            .wait_for("the followed tenant's events", |d| d.len() >= 2 * round)
            .await;
    }
    let late = Receiver::start(Receiver::always(204)).await;
    endpoint(&app, &without, json!({"url": late.url})).await;
    app.invoice(&without.key, 100, false).await;
    let got = late
        .wait_for("the newly followed tenant's event", |d| !d.is_empty())
        .await;
    assert_eq!(got[0].json()["eventType"], "invoice.created");
    assert_eq!(
        receiver.deliveries().len(),
        6,
        "nothing of the other tenant"
    );
}

async fn endpoint(app: &TestApp, t: &Tenant, body: Value) -> Value {
    let response = app
        .post("/api/webhook-endpoints", &t.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// The tenant's audit log, as `GET /api/events` shows it, by event id.
async fn log(app: &TestApp, key: &str) -> HashMap<String, Value> {
    let page: Value = app.get_json("/api/events?limit=100", key).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

async fn outbound_deliveries_verify_with_standardwebhooks(backend: Backend) {
    let app = app(backend).await;
    let receiver = Receiver::start(Receiver::always(204)).await;
    let t = app.tenant("Acme").await;
    let created = endpoint(&app, &t, json!({"url": receiver.url, "description": "all"})).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("we_"));
    assert_eq!(
        (&created["status"], &created["eventTypes"]),
        (&json!("enabled"), &json!([]))
    );
    for _ in 0..3 {
        app.invoice(&t.key, 100, true).await;
    }
    // Three created and three finalized invoices.
    let got = receiver.wait_for("6 deliveries", |d| d.len() >= 6).await;
    verify_with_python(&secret, &got);
    let events = log(&app, &t.key).await;
    let mut sequences = Vec::new();
    for delivery in &got {
        let shown = &events[delivery.webhook_id()];
        assert_eq!(
            &delivery.json(),
            shown,
            "the body is the event as the API shows it"
        );
        assert_eq!(delivery.headers["content-type"], "application/json");
        sequences.push(shown["sequence"].as_i64().unwrap());
    }
    // First attempts start in commit order, but up to 8 run at once per endpoint, so they can
    // arrive in another order: each event arrives once, with none missing.
    let mut arrived = sequences.clone();
    arrived.sort_unstable();
    arrived.dedup();
    assert_eq!(
        arrived.len(),
        sequences.len(),
        "an event twice: {sequences:?}"
    );
    assert!(
        arrived.windows(2).all(|w| w[1] == w[0] + 1),
        "an event missing: {sequences:?}"
    );
    // The secret is never shown again.
    let shown: Value = app
        .get_json(&format!("/api/webhook-endpoints/{id}"), &t.key)
        .await;
    assert!(shown.get("secret").is_none() && shown["url"] == json!(receiver.url));
    let listed: Value = app.get_json("/api/webhook-endpoints", &t.key).await;
    assert!(!listed.to_string().contains(&secret));

    // Rotation: deliveries carry both signatures, each verifies on its own.
    let rotated: Value = app
        .post(
            &format!("/api/webhook-endpoints/{id}/secret/rotate"),
            &t.key,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert!(rotated["previousValidUntil"].is_string());
    app.invoice(&t.key, 100, false).await;
    let got = receiver
        .wait_for("the 7th delivery", |d| d.len() >= 7)
        .await;
    let last = &got[6..];
    assert_eq!(last[0].headers["webhook-signature"].split(' ').count(), 2);
    verify_with_python(&secret, last);
    verify_with_python(&new_secret, last);

    // Replay reaches the events the endpoint's first attempts have recorded; one still on its
    // way is left to them. The receiver can hold the 7th before its attempt is recorded.
    eventually_attempts(&app, &t, &id, 7).await;
    // Replay of everything so far (the API key's creation included, though it committed before
    // the endpoint existed), and one redelivery: the same webhook ids again.
    let everything = log(&app, &t.key).await.len();
    assert_eq!(everything, 8);
    let replay = app
        .post(&format!("/api/webhook-endpoints/{id}/replay"), &t.key)
        .json(&json!({"since": "2000-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    let scheduled: Value = replay.json().await.unwrap();
    assert_eq!(scheduled["scheduled"], everything, "{scheduled}");
    let got = receiver.wait_for("the replay", |d| d.len() >= 15).await;
    let again = &got[7..15];
    verify_with_python(&new_secret, again);
    let mut first: Vec<&str> = got[..7].iter().map(|d| d.webhook_id()).collect();
    let events = log(&app, &t.key).await;
    first.extend(
        events
            .iter()
            .filter(|(_, e)| e["eventType"] == "apikey.created")
            .map(|(id, _)| id.as_str()),
    );
    let mut second: Vec<&str> = again.iter().map(|d| d.webhook_id()).collect();
    first.sort_unstable();
    second.sort_unstable();
    assert_eq!(first, second);
    let one = got[0].webhook_id().to_owned();
    let redeliver = app
        .post(&format!("/api/events/{one}/redeliver"), &t.key)
        .json(&json!({"endpointId": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(redeliver.status(), 202);
    let got = receiver.wait_for("the redelivery", |d| d.len() >= 16).await;
    assert_eq!(got[15].webhook_id(), one);
    // The receiver has it before the engine has recorded the attempt.
    app.eventually(
        &format!("/api/webhook-endpoints/{id}/attempts?limit=100"),
        &t.key,
        |page| page["items"].as_array().is_some_and(|a| a.len() >= 16),
    )
    .await;

    let attempts: Value = app
        .get_json(
            &format!("/api/webhook-endpoints/{id}/attempts?status=succeeded&limit=5"),
            &t.key,
        )
        .await;
    assert_eq!(attempts["items"].as_array().unwrap().len(), 5);
    assert_eq!(attempts["hasMore"], true);
    let cursor = attempts["nextCursor"].as_str().unwrap();
    let rest: Value = app
        .get_json(
            &format!("/api/webhook-endpoints/{id}/attempts?limit=100&startingAfter={cursor}"),
            &t.key,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 11);
    assert_eq!(rest["items"][0]["responseStatus"], 204);

    // Under one Idempotency-Key a redelivery runs once: a retry gets the first answer back and
    // sends nothing more; the key with another body is refused.
    let keyed = |body: Value| {
        app.post(&format!("/api/events/{one}/redeliver"), &t.key)
            .header("Idempotency-Key", "redeliver-once")
            .json(&body)
            .send()
    };
    let first = keyed(json!({"endpointId": id})).await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let retried = keyed(json!({"endpointId": id})).await.unwrap();
    assert_eq!(retried.status(), 202);
    assert_eq!(retried.headers()["Idempotent-Replayed"], "true");
    assert_eq!(retried.json::<Value>().await.unwrap(), first);
    assert_eq!(keyed(json!({})).await.unwrap().status(), 422);
    let got = receiver
        .wait_for("the keyed redelivery", |d| d.len() >= 17)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        receiver.wait_for("no more", |d| d.len() >= 17).await.len(),
        17,
        "{}",
        got.len()
    );

    isolation(&app, &t, &id, &one).await;
}

/// Another tenant sees none of it, and a viewer may read but not write.
async fn isolation(app: &TestApp, owner: &Tenant, endpoint: &str, event: &str) {
    let other = app.tenant("Other").await;
    let base = format!("/api/webhook-endpoints/{endpoint}");
    for path in [base.clone(), format!("{base}/attempts")] {
        problem(
            app.get(&path, &other.key).send().await.unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    for (path, body) in [
        (format!("{base}/secret/rotate"), json!({})),
        (
            format!("{base}/replay"),
            json!({"since": "2000-01-01T00:00:00Z"}),
        ),
        (format!("/api/events/{event}/redeliver"), json!({})),
        (
            format!("/api/events/{event}/redeliver"),
            json!({"endpointId": endpoint}),
        ),
    ] {
        let response = app
            .post(&path, &other.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(response, 404, "not_found").await;
    }
    let patch = app
        .client
        .patch(format!("{}{base}", app.url))
        .bearer_auth(&other.key)
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    problem(patch, 404, "not_found").await;
    let delete = app
        .client
        .delete(format!("{}{base}", app.url))
        .bearer_auth(&other.key)
        .send()
        .await
        .unwrap();
    problem(delete, 404, "not_found").await;
    let listed: Value = app.get_json("/api/webhook-endpoints", &other.key).await;
    assert_eq!(listed["items"], json!([]));
    let viewer = &app.api_key(&owner.key, "v", "viewer").await;
    assert_eq!(app.get(&base, viewer).send().await.unwrap().status(), 200);
    let write = app
        .post(&format!("{base}/secret/rotate"), viewer)
        .send()
        .await
        .unwrap();
    problem(write, 403, "forbidden").await;
}

async fn outbound_chaos_retries_disable_and_resume(backend: Backend) {
    let app = app(backend).await;
    // Each event: a 500, then a timeout (slower than the 300 ms limit), then a 200.
    let receiver = Receiver::start(Arc::new(|_, n| match n {
        0 => (500, Duration::ZERO),
        1 => (200, Duration::from_millis(800)),
        _ => (200, Duration::ZERO),
    }))
    .await;
    let t = app.tenant("Acme").await;
    let created = endpoint(
        &app,
        &t,
        json!({"url": receiver.url, "eventTypes": ["invoice.created"]}),
    )
    .await;
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    for _ in 0..3 {
        app.invoice(&t.key, 100, true).await;
    }
    let done = |d: &[crate::outbound_receiver::Delivery]| {
        d.iter()
            .filter(|x| x.answered == 200 && x.headers.contains_key("webhook-id"))
            .count()
            >= 6
    };
    let got = receiver
        .wait_for("three attempts of each event", done)
        .await;
    verify_with_python(secret, &got);
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for d in &got {
        *by_id.entry(d.webhook_id()).or_default() += 1;
        assert_eq!(
            d.json()["eventType"],
            "invoice.created",
            "only subscribed types"
        );
    }
    assert_eq!(by_id.len(), 3);
    assert!(by_id.values().all(|&n| n == 3), "{by_id:?}");

    let attempts = eventually_attempts(&app, &t, id, 9).await;
    for a in &attempts {
        match a["attempt"].as_i64().unwrap() {
            1 => {
                assert_eq!(
                    (&a["status"], &a["responseStatus"]),
                    (&json!("failed"), &json!(500))
                );
                assert_schedule(a, SCHEDULE_MS[0]);
            }
            2 => {
                assert_eq!(a["status"], "failed");
                assert!(a["responseStatus"].is_null());
                assert_eq!(a["responseBody"], "timeout");
                assert_schedule(a, SCHEDULE_MS[1]);
            }
            _ => {
                assert_eq!(
                    (&a["status"], &a["responseStatus"]),
                    (&json!("succeeded"), &json!(200))
                );
                assert!(a["nextAttemptAt"].is_null());
            }
        }
    }

    // 410 disables at once; what commits meanwhile waits, and goes out once re-enabled.
    receiver.set_script(Receiver::always(410));
    app.invoice(&t.key, 100, false).await;
    app.eventually(&format!("/api/webhook-endpoints/{id}"), &t.key, |v| {
        v["status"] == "disabled"
    })
    .await;
    app.invoice(&t.key, 100, false).await;
    app.invoice(&t.key, 100, false).await;
    receiver.set_script(Receiver::always(200));
    let enable = app
        .client
        .patch(format!("{}/api/webhook-endpoints/{id}", app.url))
        .bearer_auth(&t.key)
        .json(&json!({"status": "enabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(enable.status(), 200);
    let created_events: Vec<String> = log(&app, &t.key)
        .await
        .into_values()
        .filter(|e| e["eventType"] == "invoice.created")
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(created_events.len(), 6);
    let all_ok = |d: &[crate::outbound_receiver::Delivery]| {
        created_events
            .iter()
            .all(|id| d.iter().any(|x| x.webhook_id() == id && x.answered == 200))
    };
    let got = receiver
        .wait_for("every event after re-enabling", all_ok)
        .await;
    verify_with_python(secret, &got);
}

/// The retry was scheduled `delay_ms` (±10 % jitter) after the attempt ended.
fn assert_schedule(attempt: &Value, delay_ms: u64) {
    let at = |k: &str| DateTime::parse_from_rfc3339(attempt[k].as_str().unwrap()).unwrap();
    let gap = (at("nextAttemptAt") - at("attemptedAt")).num_milliseconds()
        - attempt["durationMs"].as_i64().unwrap();
    let (low, high) = (delay_ms as i64 * 9 / 10 - 2, delay_ms as i64 * 11 / 10 + 2);
    assert!(
        (low..=high).contains(&gap),
        "{gap} ms not within {low}..={high}: {attempt}"
    );
}

async fn eventually_attempts(app: &TestApp, t: &Tenant, id: &str, n: usize) -> Vec<Value> {
    let path = format!("/api/webhook-endpoints/{id}/attempts?limit=100");
    let page = app
        .eventually(&path, &t.key, |v| v["items"].as_array().unwrap().len() >= n)
        .await;
    page["items"].as_array().unwrap().clone()
}

async fn outbound_refuses_private_targets(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let t = app.tenant("Acme").await;
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://10.0.0.8/hook",
        "https://192.168.1.10/hook",
        "https://172.16.3.4/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://169.254.10.10/hook",
        "https://224.0.0.1/hook",
        "https://[fe80::1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://user:pass@example.com/hook",
    ] {
        let response = app
            .post("/api/webhook-endpoints", &t.key)
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        problem(response, 422, "invalid_url").await;
    }
    let listed: Value = app.get_json("/api/webhook-endpoints", &t.key).await;
    assert_eq!(listed["items"], json!([]));
}
