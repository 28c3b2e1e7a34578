//! Where outbound deliveries may not go, checked when they are sent: URLs stored while private
//! targets were allowed (as a name that later resolves elsewhere would be) are refused by a
//! strict dispatcher, every address class and a name resolving to loopback; no proxy from the
//! environment carries a delivery past that check; redirects are never followed; and one
//! tenant's events never reach another tenant's endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use payrail::outbound::OutboundSettings;
use payrail_actors::ports::SystemClock;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app_with, Backend, Tenant, TestApp};
use crate::outbound_policy::{
    app_without_dispatcher, attempts_at_least, dispatcher, endpoint, sample,
};
use crate::outbound_receiver::Receiver;
use crate::process::{database, tenant, Engine};

crate::helpers::per_backend!(
    outbound_refuses_every_private_class_at_send_time,
    outbound_never_follows_redirects,
    outbound_events_never_cross_tenants,
);

/// One attempt per event and no retry: every attempt is final.
fn no_retries(allow_private: bool) -> OutboundSettings {
    OutboundSettings {
        allow_http: true,
        allow_private_targets: allow_private,
        retry_schedule_ms: vec![],
        timeout_ms: 2_000,
        sweep_ms: 50,
        ..OutboundSettings::default()
    }
}

async fn outbound_refuses_every_private_class_at_send_time(backend: Backend) {
    let app = app_without_dispatcher(backend).await;
    // A receiver that must never be reached, listening on loopback.
    let trap = Receiver::start(Receiver::always(200)).await;
    let port = trap
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook");
    let t = app.tenant("Acme").await;
    let refused = |class: &str| format!("refused target: {class} address");
    let cases = [
        (format!("http://127.0.0.1:{port}/hook"), refused("loopback")),
        (format!("http://127.1.2.3:{port}/hook"), refused("loopback")),
        // The same address written as one number, and in hex.
        (
            format!("http://2130706433:{port}/hook"),
            refused("loopback"),
        ),
        (
            format!("http://0x7f.0.0.1:{port}/hook"),
            refused("loopback"),
        ),
        (format!("http://[::1]:{port}/hook"), refused("loopback")),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            refused("loopback"),
        ),
        // 0.0.0.0 reaches the local host on Linux.
        (format!("http://0.0.0.0:{port}/hook"), refused("reserved")),
        ("http://10.0.0.8/hook".into(), refused("private")),
        ("http://172.16.3.4/hook".into(), refused("private")),
        ("http://192.168.1.10/hook".into(), refused("private")),
        ("http://100.64.0.1/hook".into(), refused("private")),
        ("http://[fd12:3456::1]/hook".into(), refused("private")),
        ("http://[::ffff:10.0.0.8]/hook".into(), refused("private")),
        // IPv4 inside IPv6: NAT64 (well-known and local-use prefixes), IPv4-compatible.
        ("http://[64:ff9b::a00:8]/hook".into(), refused("private")),
        ("http://[64:ff9b:1::a00:8]/hook".into(), refused("private")),
        (
            format!("http://[::7f00:1]:{port}/hook"),
            refused("loopback"),
        ),
        // Site-local, the deprecated IPv6 private range.
        ("http://[fec0::1]/hook".into(), refused("private")),
        ("http://169.254.10.10/hook".into(), refused("link-local")),
        ("http://[fe80::1]/hook".into(), refused("link-local")),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            refused("metadata"),
        ),
        ("http://[fd00:ec2::254]/latest".into(), refused("metadata")),
        (
            "http://[64:ff9b::a9fe:a9fe]/latest".into(),
            refused("metadata"),
        ),
        ("http://224.0.0.1/hook".into(), refused("multicast")),
        ("http://[ff02::1]/hook".into(), refused("multicast")),
        ("http://255.255.255.255/hook".into(), refused("reserved")),
        // A name, checked at connect time by the resolver: it resolves to loopback only.
        (
            format!("http://localhost:{port}/hook"),
            "refused target: the host resolves to no allowed address".into(),
        ),
    ];
    let mut ids = Vec::new();
    for (url, _) in &cases {
        ids.push(endpoint(&app, &t, json!({"url": url})).await);
    }
    let strict = dispatcher(&app, no_retries(false), Arc::new(SystemClock));
    app.invoice(&t.key, 100, false).await;
    for ((url, why), id) in cases.iter().zip(&ids) {
        let log = attempts_at_least(&app, &t, id, 1).await;
        assert_eq!(log.len(), 1, "{url}: {log:#?}");
        let a = &log[0];
        assert_eq!(a["status"], "failed", "{url}: {a}");
        assert!(a["responseStatus"].is_null(), "{url}: {a}");
        assert_eq!(a["responseBody"], json!(why), "{url}: {a}");
        assert!(a["nextAttemptAt"].is_null(), "{url}: {a}");
    }
    // Every attempt is recorded, so none is still in flight: nothing reached the trap.
    assert!(trap.deliveries().is_empty(), "{:#?}", trap.deliveries());
    let text = strict.render_metrics();
    let errors = sample(&text, "payrail_outbound_attempts_total{result=\"error\"}");
    assert_eq!(errors, Some(cases.len() as f64), "{text}");
    let failed = sample(
        &text,
        "payrail_outbound_deliveries_total{outcome=\"failed\"}",
    );
    assert_eq!(failed, Some(cases.len() as f64), "{text}");
}

/// A receiver answering every request with `3xx` (the status is the path's last segment) and a
/// `Location` pointing at `target`; counts its requests.
async fn redirector(target: String) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let server = HttpServer::new(move || {
        let (target, counted) = (target.clone(), counted.clone());
        App::new().default_service(web::to(move |req: HttpRequest| {
            let (target, counted) = (target.clone(), counted.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let code: u16 = req.path().rsplit('/').next().unwrap().parse().unwrap();
                HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                    .insert_header(("location", target))
                    .body("moved")
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("http://{addr}"), hits)
}

async fn outbound_never_follows_redirects(backend: Backend) {
    let app = app_without_dispatcher(backend).await;
    let trap = Receiver::start(Receiver::always(200)).await;
    let t = app.tenant("Acme").await;
    let (to_loopback, loopback_hits) = redirector(trap.url.clone()).await;
    let (to_metadata, metadata_hits) =
        redirector("http://169.254.169.254/latest/meta-data/".into()).await;
    let mut cases = Vec::new();
    for code in [301, 302, 303, 307, 308] {
        for base in [&to_loopback, &to_metadata] {
            let url = format!("{base}/hook/{code}");
            cases.push((endpoint(&app, &t, json!({"url": url})).await, code));
        }
    }
    // Private targets allowed, so that the redirecting receivers on loopback are reached: a
    // redirect is refused as such, whatever the policy.
    let outbound = dispatcher(&app, no_retries(true), Arc::new(SystemClock));
    app.invoice(&t.key, 100, false).await;
    for (id, code) in &cases {
        let log = attempts_at_least(&app, &t, id, 1).await;
        assert_eq!(log.len(), 1, "{log:#?}");
        let a = &log[0];
        assert_eq!(
            (&a["status"], &a["responseStatus"], &a["responseBody"]),
            (&json!("failed"), &json!(code), &json!("moved")),
            "{a}"
        );
    }
    assert_eq!(loopback_hits.load(Ordering::SeqCst), 5);
    assert_eq!(metadata_hits.load(Ordering::SeqCst), 5);
    assert!(trap.deliveries().is_empty(), "a redirect was followed");
    let text = outbound.render_metrics();
    let redirected = sample(&text, "payrail_outbound_attempts_total{result=\"3xx\"}");
    assert_eq!(redirected, Some(cases.len() as f64), "{text}");
}

/// The webhook ids a receiver has seen.
fn ids(receiver: &Receiver) -> Vec<String> {
    let mut ids: Vec<String> = receiver
        .deliveries()
        .iter()
        .map(|d| d.webhook_id().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn event_ids(app: &TestApp, t: &Tenant) -> Vec<String> {
    let page: Value = app.get_json("/api/events?limit=100", &t.key).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn outbound_events_never_cross_tenants(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.outbound.allow_http = true;
        s.outbound.allow_private_targets = true;
        s.outbound.sweep_ms = 50;
    })
    .await;
    let (a, b) = (app.tenant("Acme").await, app.tenant("Globex").await);
    let (to_a, to_b) = (
        Receiver::start(Receiver::always(200)).await,
        Receiver::start(Receiver::always(200)).await,
    );
    let a_endpoint = endpoint(&app, &a, json!({"url": to_a.url})).await;
    endpoint(&app, &b, json!({"url": to_b.url})).await;
    let a_before = event_ids(&app, &a).await;
    let b_before = event_ids(&app, &b).await;
    app.invoice(&a.key, 100, true).await;
    app.invoice(&b.key, 100, false).await;
    app.invoice(&a.key, 100, false).await;
    let only_new = |all: Vec<String>, before: &[String]| {
        let mut new: Vec<String> = all.into_iter().filter(|e| !before.contains(e)).collect();
        new.sort();
        new
    };
    let a_events = only_new(event_ids(&app, &a).await, &a_before);
    let b_events = only_new(event_ids(&app, &b).await, &b_before);
    assert_eq!((a_events.len(), b_events.len()), (3, 1));
    to_a.wait_for("A's events", |d| d.len() >= 3).await;
    to_b.wait_for("B's event", |d| !d.is_empty()).await;

    // B may not send its own event to A's endpoint, nor read or replay it.
    let b_event = &b_events[0];
    let redeliver = app
        .post(&format!("/api/events/{b_event}/redeliver"), &b.key)
        .json(&json!({"endpointId": a_endpoint}))
        .send()
        .await
        .unwrap();
    problem(redeliver, 404, "not_found").await;
    let attempts = app
        .get(
            &format!("/api/webhook-endpoints/{a_endpoint}/attempts?status=succeeded"),
            &b.key,
        )
        .send()
        .await
        .unwrap();
    problem(attempts, 404, "not_found").await;
    // A redelivers one of its own events: once it has arrived, anything B's requests might have
    // scheduled for A's endpoint would have gone out with it.
    let mine = &a_events[0];
    let redeliver = app
        .post(&format!("/api/events/{mine}/redeliver"), &a.key)
        .json(&json!({"endpointId": a_endpoint}))
        .send()
        .await
        .unwrap();
    assert_eq!(redeliver.status(), 202);
    to_a.wait_for("A's redelivery", |d| d.len() >= 4).await;
    let mut want_a = a_events.clone();
    want_a.push(mine.clone());
    want_a.sort();
    assert_eq!(ids(&to_a), want_a);
    assert_eq!(ids(&to_b), b_events);
    let a_log = attempts_at_least(&app, &a, &a_endpoint, 4).await;
    assert_eq!(a_log.len(), 4, "{a_log:#?}");
    assert!(a_log
        .iter()
        .all(|x| a_events.contains(&x["eventId"].as_str().unwrap().to_owned())));
}

/// A proxy in the engine's environment (`HTTP_PROXY`) would take the target's name to the
/// proxy unresolved, past the connect-time check: deliveries never go through one. The engine
/// runs as a child process, so the variables stay out of the test's own process.
#[actix_web::test]
async fn outbound_deliveries_ignore_proxy_variables() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, url) = database(Backend::Sqlite, dir.path()).await;
    let proxy = Receiver::start(Receiver::always(200)).await;
    let target = Receiver::start(Receiver::always(200)).await;
    let proxy_url = proxy.url.trim_end_matches("/hook").to_owned();
    let port = target
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook");
    let client = reqwest::Client::new();
    // Stored while private targets were allowed, as a name that later resolves to loopback
    // would be.
    let permissive = [
        ("PAYRAIL_OUTBOUND__ALLOW_HTTP", "true"),
        ("PAYRAIL_OUTBOUND__ALLOW_PRIVATE_TARGETS", "true"),
    ];
    let engine = Engine::start_with(&url, None, &permissive).await;
    let t = tenant(&client, &engine.url).await;
    let key = t["apiKey"]["key"].as_str().unwrap().to_owned();
    let created: Value = client
        .post(format!("{}/api/webhook-endpoints", engine.url))
        .bearer_auth(&key)
        .json(&json!({"url": format!("http://localhost:{port}/hook")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    engine.kill9();
    let strict = [
        ("PAYRAIL_OUTBOUND__ALLOW_HTTP", "true"),
        ("PAYRAIL_OUTBOUND__RETRY_SCHEDULE_MS", "[]"),
        ("HTTP_PROXY", proxy_url.as_str()),
        ("http_proxy", proxy_url.as_str()),
        ("ALL_PROXY", proxy_url.as_str()),
        // The engine's own calls to its gateway simulator stay direct.
        ("NO_PROXY", "127.0.0.1"),
    ];
    let engine = Engine::start_with(&url, None, &strict).await;
    let invoice = json!({"customerName": "Jane", "currency": "USD",
                         "lineItems": [{"description": "Seat", "quantity": 1, "unitAmount": 500}]});
    let response = client
        .post(format!("{}/api/invoices", engine.url))
        .bearer_auth(&key)
        .json(&invoice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let path = format!("{}/api/webhook-endpoints/{id}/attempts", engine.url);
    let mut log = Value::Null;
    // A deadline, not a count of polls: a loaded machine starts the child engine slowly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        log = client
            .get(&path)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !log["items"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let a = &log["items"][0];
    assert_eq!(
        (&a["status"], &a["responseBody"]),
        (
            &json!("failed"),
            &json!("refused target: the host resolves to no allowed address")
        ),
        "{log}"
    );
    assert!(
        proxy.deliveries().is_empty(),
        "a delivery went through the proxy"
    );
    assert!(target.deliveries().is_empty());
    drop(engine);
}
