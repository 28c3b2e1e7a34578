//! `GET /api/events/stream`: live server-sent events that match the audit log exactly, resume
//! with `Last-Event-ID` without loss or repetition, filter, stay within the tenant, send
//! heartbeats, close on key revocation and shutdown, and cut off a client that stops reading
//! while commits carry on.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{spawn_app_with, Backend, TestApp, ADMIN};
use crate::sse::{Frame, Sse};

both_backends!(
    resume_with_last_event_id_misses_nothing_and_repeats_nothing,
    filters_select_events_like_the_log,
    a_tenant_streams_only_its_own_events,
    malformed_requests_are_refused,
);

/// Every event of the tenant's log, oldest first, as `GET /api/events` shows it.
async fn whole_log(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let cursor = after.map_or(String::new(), |a| format!("&startingAfter={a}"));
        let page: Value = app
            .get_json(&format!("/api/events?limit=100{query}{cursor}"), key)
            .await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        if page["hasMore"] != true {
            return items;
        }
        after = page["nextCursor"].as_i64();
    }
}

/// A request for the stream, on a client with no overall timeout (the app's own client gives
/// up on a response after 10 s, body included).
fn stream_request(app: &TestApp, key: &str, query: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .get(format!("{}/api/events/stream{query}", app.url))
        .bearer_auth(key)
}

async fn open(app: &TestApp, key: &str, query: &str, last_event_id: Option<&str>) -> Sse {
    let mut request = stream_request(app, key, query);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    Sse::new(request.send().await.unwrap())
}

fn as_log_items(frames: &[Frame]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Event { id, event, data } => {
                assert_eq!(Some(data["sequence"].as_i64().unwrap()), *id);
                assert_eq!(data["eventType"], event.as_str());
                data.clone()
            }
            Frame::Comment(_) => unreachable!(),
        })
        .collect()
}

async fn resume_with_last_event_id_misses_nothing_and_repeats_nothing(app: &TestApp) {
    let t = app.tenant("Acme").await;
    for amount in [100, 200, 300] {
        app.invoice(&t.key, amount, true).await;
    }
    let mut first = open(app, &t.key, "?after=0", None).await;
    let seen = first.events(3).await;
    drop(first);
    // Committed while the client is away.
    for amount in [400, 500] {
        app.invoice(&t.key, amount, true).await;
    }
    let last = seen.last().unwrap().id().unwrap().to_string();
    // The header wins over the `after` an EventSource keeps in its URL.
    let mut second = open(app, &t.key, "?after=0", Some(&last)).await;
    let log = whole_log(app, &t.key, "").await;
    let rest = second.events(log.len() - seen.len()).await;
    let mut streamed = as_log_items(&seen);
    streamed.extend(as_log_items(&rest));
    assert_eq!(streamed, log, "stream and log differ");
    // Live from here on: a new invoice arrives without reconnecting.
    app.invoice(&t.key, 600, false).await;
    let log = whole_log(app, &t.key, "").await;
    let live = second.events(log.len() - streamed.len()).await;
    streamed.extend(as_log_items(&live));
    assert_eq!(streamed, log);
    // So does an API key's event, written outside the engine's batches: well within the
    // 2 s re-read that catches commits of other processes, so its own commit woke the stream.
    let created = app
        .post("/api/api-keys", &t.key)
        .json(&json!({"name": "ci", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let key_event = second.next(Duration::from_millis(1_500)).await.unwrap();
    streamed.extend(as_log_items(&[key_event]));
    assert_eq!(streamed, whole_log(app, &t.key, "").await);
    assert_eq!(streamed.last().unwrap()["eventType"], "apikey.created");
    second.assert_quiet(Duration::from_millis(300)).await;
}

async fn filters_select_events_like_the_log(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let mut finalized = open(app, &t.key, "?type=invoice.finalized&after=0", None).await;
    let target = app.invoice(&t.key, 100, false).await;
    let target = target["id"].as_str().unwrap();
    let mut subject = open(app, &t.key, &format!("?subjectId={target}&after=0"), None).await;
    app.invoice(&t.key, 200, true).await;
    let finalize = app
        .post(&format!("/api/invoices/{target}/finalize"), &t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(finalize.status(), 200);

    let log = whole_log(app, &t.key, "&type=invoice.finalized").await;
    assert_eq!(log.len(), 2);
    assert_eq!(as_log_items(&finalized.events(2).await), log);
    finalized.assert_quiet(Duration::from_millis(300)).await;

    let log = whole_log(app, &t.key, &format!("&subjectId={target}")).await;
    assert_eq!(log.len(), 2, "created and finalized: {log:?}");
    assert!(log.iter().all(|e| e["subjectId"] == target));
    assert_eq!(as_log_items(&subject.events(2).await), log);
    subject.assert_quiet(Duration::from_millis(300)).await;
}

async fn a_tenant_streams_only_its_own_events(app: &TestApp) {
    let (a, b) = (app.tenant("A").await, app.tenant("B").await);
    let mut stream_b = open(app, &b.key, "?after=0", None).await;
    // B's own history (its first key) comes first.
    let own = whole_log(app, &b.key, "").await;
    assert_eq!(as_log_items(&stream_b.events(own.len()).await), own);
    // Without a position the stream starts live: A's history is not replayed.
    let mut live_a = open(app, &a.key, "", None).await;
    let invoice_a = app.invoice(&a.key, 100, true).await;
    stream_b.assert_quiet(Duration::from_millis(400)).await;
    let from_a = live_a.events(2).await;
    assert!(from_a
        .iter()
        .all(|f| matches!(f, Frame::Event { data, .. } if data["subjectId"] == invoice_a["id"])));
    let invoice_b = app.invoice(&b.key, 200, false).await;
    let next = stream_b.events(1).await;
    assert_eq!(as_log_items(&next)[0]["subjectId"], invoice_b["id"]);
    // Another tenant's subject is simply not in this tenant's stream.
    let mut probe = open(
        app,
        &b.key,
        &format!("?after=0&subjectId={}", invoice_a["id"].as_str().unwrap()),
        None,
    )
    .await;
    probe.assert_quiet(Duration::from_millis(300)).await;
}

async fn malformed_requests_are_refused(app: &TestApp) {
    let t = app.tenant("Acme").await;
    let url = format!("{}/api/events/stream", app.url);
    let anonymous = app.client.get(&url).send().await.unwrap();
    crate::helpers::problem(anonymous, 401, "unauthenticated").await;
    for query in [
        "?type=invoice.exploded",
        "?after=-1",
        "?after=x",
        "?limit=5",
    ] {
        let response = app
            .get(&format!("/api/events/stream{query}"), &t.key)
            .send()
            .await
            .unwrap();
        crate::helpers::problem(response, 400, "invalid_request").await;
    }
    let response = app
        .get("/api/events/stream", &t.key)
        .header("Last-Event-ID", "not-a-number")
        .send()
        .await
        .unwrap();
    crate::helpers::problem(response, 400, "invalid_request").await;
    // The admin token manages tenants; it has no audit log.
    let admin = app.get("/api/events/stream", ADMIN).send().await.unwrap();
    crate::helpers::problem(admin, 401, "unauthenticated").await;
}

#[actix_web::test]
async fn heartbeats_flow_and_a_revoked_key_ends_the_stream() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.stream_heartbeat_ms = 100).await;
    let t = app.tenant("Acme").await;
    let viewer: Value = app
        .post("/api/api-keys", &t.key)
        .json(&json!({"name": "watcher", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut stream = open(&app, viewer["key"].as_str().unwrap(), "", None).await;
    let started = Instant::now();
    for _ in 0..3 {
        let frame = stream.next(Duration::from_secs(2)).await;
        assert_eq!(frame, Some(Frame::Comment("keep-alive".into())));
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
    let revoked = app
        .client
        .delete(format!(
            "{}/api/api-keys/{}",
            app.url,
            viewer["id"].as_str().unwrap()
        ))
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let close = loop {
        match stream.next(Duration::from_secs(2)).await {
            Some(Frame::Comment(_)) => continue,
            // The revocation's own event may arrive first: it is in this tenant's log.
            Some(Frame::Event { event, .. }) if event == "apikey.revoked" => continue,
            other => break other,
        }
    };
    assert!(
        matches!(&close, Some(Frame::Event { event, data, .. }) if event == "close" && data["reason"] == "key_revoked"),
        "{close:?}"
    );
    assert_eq!(stream.next(Duration::from_secs(2)).await, None);
}

#[actix_web::test]
async fn shutting_down_closes_open_streams_and_refuses_new_ones() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let t = app.tenant("Acme").await;
    let mut stream = open(&app, &t.key, "", None).await;
    app._state.streams.shut_down();
    let close = stream.next(Duration::from_secs(2)).await;
    assert!(
        matches!(&close, Some(Frame::Event { event, data, .. }) if event == "close" && data["reason"] == "shutting_down"),
        "{close:?}"
    );
    assert_eq!(stream.next(Duration::from_secs(2)).await, None);
    let refused = app.get("/api/events/stream", &t.key).send().await.unwrap();
    crate::helpers::problem(refused, 503, "shutting_down").await;
}

/// An invoice whose `invoice.created` event is about 60 KB, so a few fill every buffer.
fn bulky_invoice(n: usize) -> Value {
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"description": format!("{n}-{i}-{}", "x".repeat(480)), "quantity": 1, "unitAmount": 100}))
        .collect();
    json!({"customerName": format!("Customer {n}"), "currency": "USD", "lineItems": items})
}

async fn create_bulky(app: &TestApp, key: &str, range: std::ops::Range<usize>) -> Duration {
    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(range)
        .map(|n| {
            let request = app.post("/api/invoices", key).json(&bulky_invoice(n));
            async move { request.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    started.elapsed()
}

async fn metric(app: &TestApp, series: &str) -> u64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_cut_off_while_commits_go_on() {
    const INVOICES: usize = 120;
    let app = spawn_app_with(Backend::Sqlite, |s| s.stream_stall_timeout_ms = 300).await;
    let t = app.tenant("Acme").await;
    let baseline = create_bulky(&app, &t.key, 0..INVOICES).await;
    let log_before = whole_log(&app, &t.key, "").await;
    let position = log_before.last().unwrap()["sequence"].as_i64().unwrap();

    // Opened and then never read while the next batch commits: the client's socket buffers
    // fill, then the server's, then the subscriber's own.
    let response = stream_request(&app, &t.key, &format!("?after={position}"))
        .send()
        .await
        .unwrap();
    assert_eq!(metric(&app, "payrail_event_streams ").await, 1);
    let stalled = create_bulky(&app, &t.key, INVOICES..2 * INVOICES).await;
    eprintln!(
        "{INVOICES} bulky invoices: {baseline:?} with no subscriber, {stalled:?} with one that stopped reading"
    );
    // Generous: the machine is shared. The design bound is that a commit only pokes a watch.
    assert!(
        stalled < baseline * 3 + Duration::from_secs(2),
        "a stalled subscriber slowed commits: {baseline:?} → {stalled:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &app,
        "payrail_event_streams_closed_total{reason=\"too_slow\"}",
    )
    .await
        != 1
    {
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&app, "payrail_event_streams ").await, 0);

    // Reading again: a gap-free prefix of the log, then a clear close.
    let log: Vec<Value> = whole_log(&app, &t.key, "")
        .await
        .into_iter()
        .filter(|e| e["sequence"].as_i64().unwrap() > position)
        .collect();
    let mut sse = Sse::new(response);
    let mut received = Vec::new();
    let close = loop {
        match sse.next(Duration::from_secs(5)).await {
            Some(Frame::Event { event, data, .. }) if event == "close" => break data,
            Some(frame @ Frame::Event { .. }) => received.push(frame),
            Some(Frame::Comment(_)) => {}
            None => panic!("stream ended without a close event"),
        }
    };
    assert_eq!(close["reason"], "too_slow");
    assert!(sse.next(Duration::from_secs(5)).await.is_none());
    let received = as_log_items(&received);
    assert!(
        received.len() < log.len(),
        "the cut-off came after everything"
    );
    assert_eq!(received, log[..received.len()]);
    // Resuming from the last event received delivers the rest.
    let last = received
        .last()
        .map_or(position, |e| e["sequence"].as_i64().unwrap());
    let mut resumed = open(&app, &t.key, "", Some(&last.to_string())).await;
    let rest = resumed.events(log.len() - received.len()).await;
    assert_eq!(as_log_items(&rest), log[received.len()..]);
}

#[actix_web::test]
async fn sigterm_ends_open_streams_without_waiting_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = crate::process::database(Backend::Sqlite, dir.path()).await;
    let engine = crate::process::Engine::start(&url, None).await;
    let client = reqwest::Client::new();
    let tenant = crate::process::tenant(&client, &engine.url).await;
    let response = client
        .get(format!("{}/api/events/stream?after=0", engine.url))
        .bearer_auth(tenant["apiKey"]["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let mut sse = Sse::new(response);
    assert_eq!(sse.events(1).await[0].id(), Some(1));
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || engine.sigterm())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The shutdown timeout is 30 s: an open stream holding the drain would take all of it.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "draining took {:?}",
        started.elapsed()
    );
    let close = sse.next(Duration::from_secs(2)).await;
    assert!(
        matches!(&close, Some(Frame::Event { event, data, .. }) if event == "close" && data["reason"] == "shutting_down"),
        "{close:?}"
    );
}
