//! Outbound policy over days, driven by a manual clock handed to a dispatcher of the test's own
//! (the app's is switched off): an endpoint whose every attempt has failed for 5 days is
//! disabled (a success in between starts the count again), old attempts are purged by the
//! retention setting, and the metrics show deliveries by outcome, attempts by answer, the
//! backlog and the age of the oldest undelivered event with their real values.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use payrail::outbound::{Outbound, OutboundSettings};
use payrail_actors::ports::Clock;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, Tenant, TestApp};
use crate::outbound_receiver::Receiver;

crate::helpers::per_backend!(
    outbound_disables_after_five_days_purges_and_measures,
    outbound_backlog_is_measured_while_catching_up,
);

/// First attempts a worker takes per round.
const ROUND: usize = 64;

/// A clock that only moves when the test moves it.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn at(t: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(t.trunc_subsecs(6))))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t.trunc_subsecs(6);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The app, serving the API with its own dispatcher off, so that only the test's runs.
pub async fn app_without_dispatcher(backend: Backend) -> TestApp {
    spawn_app_with(backend, |s| {
        s.outbound.enabled = false;
        s.outbound.allow_http = true;
        s.outbound.allow_private_targets = true;
    })
    .await
}

/// A dispatcher on the app's store with these settings and clock, started.
pub fn dispatcher(app: &TestApp, settings: OutboundSettings, clock: Arc<dyn Clock>) -> Outbound {
    let outbound = Outbound::new(settings, app._state.db.clone(), clock).unwrap();
    outbound.start();
    outbound
}

pub async fn endpoint(app: &TestApp, t: &Tenant, body: Value) -> String {
    let response = app
        .post("/api/webhook-endpoints", &t.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// The endpoint's whole attempts log, oldest first, once it holds at least `n` attempts.
pub async fn attempts_at_least(app: &TestApp, t: &Tenant, id: &str, n: usize) -> Vec<Value> {
    let path = format!("/api/webhook-endpoints/{id}/attempts?limit=100");
    let page = app
        .eventually(&path, &t.key, |v| v["items"].as_array().unwrap().len() >= n)
        .await;
    let mut items = page["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

/// One sample of a metric, `None` if the series is absent.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls the dispatcher's metrics (5 s at most) until the series has this value.
async fn metric_becomes(outbound: &Outbound, series: &str, want: Option<f64>) -> String {
    for _ in 0..200 {
        let text = outbound.render_metrics();
        if sample(&text, series) == want {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "{series} never became {want:?}:\n{}",
        outbound.render_metrics()
    );
}

/// Polls the dispatcher's metrics (5 s at most) until the age they show is that of an event
/// whose time the API shows to the millisecond. A round publishes its backlog when it ends, so
/// the first sample after a change can still be the previous round's.
async fn age_becomes(outbound: &Outbound, series: &str, now: DateTime<Utc>, event: &Value) {
    let age = (now - at(event, "occurredAt")).num_microseconds().unwrap() as f64 / 1e6;
    let mut shown = None;
    for _ in 0..200 {
        shown = sample(&outbound.render_metrics(), series);
        if shown.is_some_and(|s| (age - 0.001..=age + 0.001).contains(&s)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{series} is {shown:?}, the event is {age} s old");
}

fn at(v: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[key].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// A new invoice (finalized or not), and its events as `GET /api/events` shows them.
async fn invoice(app: &TestApp, t: &Tenant, finalize: bool) -> Vec<Value> {
    let invoice = app.invoice(&t.key, 100, finalize).await;
    let id = invoice["id"].as_str().unwrap();
    let page: Value = app.get_json("/api/events?limit=100", &t.key).await;
    let mut events: Vec<Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subjectId"] == id)
        .cloned()
        .collect();
    events.sort_by_key(|e| e["sequence"].as_i64().unwrap());
    assert_eq!(events.len(), if finalize { 2 } else { 1 });
    events
}

/// Checks that `attempts` are one per event of `events`, all of this number and
/// status, all made at `when`.
fn check_round(
    attempts: &[Value],
    events: &[&Value],
    number: i64,
    status: &str,
    when: DateTime<Utc>,
) {
    let mut ids: Vec<&str> = attempts
        .iter()
        .map(|a| a["eventId"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    want.sort_unstable();
    assert_eq!(ids, want, "{attempts:#?}");
    for a in attempts {
        assert_eq!(a["attempt"], number, "{a}");
        assert_eq!(a["status"], status, "{a}");
        assert_eq!(at(a, "attemptedAt"), when, "{a}");
        if status == "succeeded" {
            assert_eq!(a["responseStatus"], 200, "{a}");
        } else {
            assert_eq!(a["responseStatus"], 500, "{a}");
        }
    }
}

async fn status_of(app: &TestApp, t: &Tenant, id: &str) -> String {
    let shown: Value = app
        .get_json(&format!("/api/webhook-endpoints/{id}"), &t.key)
        .await;
    shown["status"].as_str().unwrap().to_owned()
}

async fn outbound_disables_after_five_days_purges_and_measures(backend: Backend) {
    let app = app_without_dispatcher(backend).await;
    let receiver = Receiver::start(Receiver::always(500)).await;
    let t = app.tenant("Acme").await;
    let id = endpoint(&app, &t, json!({"url": receiver.url})).await;
    // Well ahead of the wall clock, so that the events' ages are positive and known.
    let t0 = (Utc::now() + Duration::hours(1)).trunc_subsecs(0);
    let clock = ManualClock::at(t0);
    let settings = OutboundSettings {
        allow_http: true,
        allow_private_targets: true,
        // One retry, a minute after the first failure.
        retry_schedule_ms: vec![60_000],
        timeout_ms: 2_000,
        sweep_ms: 50,
        attempt_retention_hours: 24,
        ..OutboundSettings::default()
    };
    let outbound = dispatcher(&app, settings, clock.clone());
    let series = |name: &str| format!("{name}{{tenant=\"{}\",endpoint=\"{id}\"}}", t.id);
    let backlog = series("payrail_outbound_backlog");
    let oldest = series("payrail_outbound_oldest_undelivered_seconds");
    let delivered =
        |outcome: &str| format!("payrail_outbound_deliveries_total{{outcome=\"{outcome}\"}}");
    let answered = |result: &str| format!("payrail_outbound_attempts_total{{result=\"{result}\"}}");

    // Day 0: both events of an invoice fail; each owes a retry a minute later (±10 %).
    let a = invoice(&app, &t, true).await;
    let log = attempts_at_least(&app, &t, &id, 2).await;
    assert_eq!(log.len(), 2, "{log:#?}");
    check_round(&log, &[&a[0], &a[1]], 1, "pending", t0);
    for attempt in &log {
        let gap = at(attempt, "nextAttemptAt") - t0;
        assert!(
            (Duration::seconds(54)..=Duration::seconds(66)).contains(&gap),
            "{attempt}"
        );
    }
    let text = metric_becomes(&outbound, &backlog, Some(2.0)).await;
    age_becomes(&outbound, &oldest, t0, &a[0]).await;
    assert_eq!(sample(&text, &delivered("retry_scheduled")), Some(2.0));
    assert_eq!(sample(&text, &delivered("succeeded")), Some(0.0));
    assert_eq!(sample(&text, &answered("5xx")), Some(2.0));

    // Day 3: the retries succeed, which ends the run of failures.
    receiver.set_script(Receiver::always(200));
    let day3 = t0 + Duration::days(3);
    clock.set(day3);
    let log = attempts_at_least(&app, &t, &id, 4).await;
    assert_eq!(log.len(), 4, "{log:#?}");
    check_round(&log[2..], &[&a[0], &a[1]], 2, "succeeded", day3);
    let text = metric_becomes(&outbound, &backlog, Some(0.0)).await;
    assert_eq!(sample(&text, &oldest), Some(0.0), "{text}");
    assert_eq!(sample(&text, &delivered("succeeded")), Some(2.0));
    assert_eq!(sample(&text, &answered("2xx")), Some(2.0));

    // Still day 3: a new run of failures begins.
    receiver.set_script(Receiver::always(500));
    let b = invoice(&app, &t, false).await;
    let log = attempts_at_least(&app, &t, &id, 5).await;
    check_round(&log[4..], &[&b[0]], 1, "pending", day3);

    // Day 5: five days after the first failure, but only two into this run: still enabled.
    let day5 = t0 + Duration::days(5);
    clock.set(day5);
    let c = invoice(&app, &t, false).await;
    let log = attempts_at_least(&app, &t, &id, 7).await;
    assert_eq!(log.len(), 7, "{log:#?}");
    let (retry, first): (Vec<&Value>, Vec<&Value>) =
        log[5..].iter().partition(|x| x["attempt"] == 2);
    check_round(
        &retry.into_iter().cloned().collect::<Vec<_>>(),
        &[&b[0]],
        2,
        "failed",
        day5,
    );
    check_round(
        &first.into_iter().cloned().collect::<Vec<_>>(),
        &[&c[0]],
        1,
        "pending",
        day5,
    );
    assert_eq!(status_of(&app, &t, &id).await, "enabled");

    // A second short of five days into the run: still enabled.
    let almost = day3 + Duration::days(5) - Duration::seconds(1);
    clock.set(almost);
    let d = invoice(&app, &t, false).await;
    let log = attempts_at_least(&app, &t, &id, 9).await;
    assert_eq!(log.len(), 9, "{log:#?}");
    assert_eq!(status_of(&app, &t, &id).await, "enabled");
    metric_becomes(&outbound, &backlog, Some(1.0)).await;
    age_becomes(&outbound, &oldest, almost, &d[0]).await;

    // Five days into the run: the next failure disables the endpoint.
    let day8 = day3 + Duration::days(5);
    clock.set(day8);
    let e = invoice(&app, &t, false).await;
    app.eventually(&format!("/api/webhook-endpoints/{id}"), &t.key, |v| {
        v["status"] == "disabled"
    })
    .await;
    let log = attempts_at_least(&app, &t, &id, 10).await;
    assert_eq!(log.len(), 10, "{log:#?}");
    check_round(&log[9..], &[&e[0]], 1, "pending", day8);
    // A disabled endpoint's gauges go with its worker; the counters keep every attempt.
    let text = metric_becomes(&outbound, &backlog, None).await;
    assert_eq!(sample(&text, &oldest), None, "{text}");
    for (outcome, n) in [
        ("succeeded", 2.0),
        ("retry_scheduled", 6.0),
        ("failed", 2.0),
    ] {
        assert_eq!(
            sample(&text, &delivered(outcome)),
            Some(n),
            "{outcome}: {text}"
        );
    }
    for (result, n) in [("2xx", 2.0), ("5xx", 8.0), ("timeout", 0.0), ("error", 0.0)] {
        assert_eq!(
            sample(&text, &answered(result)),
            Some(n),
            "{result}: {text}"
        );
    }
    // Enabled again, the endpoint starts afresh: one more failure does not disable it at once.
    let enable = app
        .client
        .patch(format!("{}/api/webhook-endpoints/{id}", app.url))
        .bearer_auth(&t.key)
        .json(&json!({"status": "enabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(enable.status(), 200);
    let f = invoice(&app, &t, false).await;
    let log = attempts_at_least(&app, &t, &id, 11).await;
    assert_eq!(log.len(), 11, "{log:#?}");
    check_round(&log[10..], &[&f[0]], 1, "pending", day8);
    assert_eq!(status_of(&app, &t, &id).await, "enabled");
    let attempts_by_day = log.clone();

    // Day 6 of the clock, retention one day: attempts made before day 5 go, the rest stay (an
    // attempt made exactly at the limit is kept). A dispatcher that only purges runs it now.
    clock.set(day5 + Duration::hours(24));
    let _purger = dispatcher(
        &app,
        OutboundSettings {
            enabled: false,
            attempt_retention_hours: 24,
            ..OutboundSettings::default()
        },
        clock.clone(),
    );
    let path = format!("/api/webhook-endpoints/{id}/attempts?limit=100");
    let kept = app
        .eventually(&path, &t.key, |v| {
            v["items"].as_array().unwrap().len() < attempts_by_day.len()
        })
        .await;
    let mut kept: Vec<String> = kept["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    let mut want: Vec<String> = attempts_by_day
        .iter()
        .filter(|a| at(a, "attemptedAt") >= day5)
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    kept.sort();
    want.sort();
    assert_eq!(want.len(), 6);
    assert_eq!(kept, want);
}

/// The backlog gauges follow a worker that is catching up, round by round, not only once it
/// has caught up: an endpoint far behind is exactly when they matter.
async fn outbound_backlog_is_measured_while_catching_up(backend: Backend) {
    let app = app_without_dispatcher(backend).await;
    // The first request after a full round of first attempts hangs; the others are answered
    // at once.
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    let receiver = Receiver::start(Arc::new(move |_, _| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let hang = if n == ROUND { 10 } else { 0 };
        (200, std::time::Duration::from_secs(hang))
    }))
    .await;
    let t = app.tenant("Acme").await;
    let id = endpoint(&app, &t, json!({"url": receiver.url})).await;
    let mut events = Vec::new();
    while events.len() < ROUND + 6 {
        events.extend(invoice(&app, &t, true).await);
    }
    let t0 = (Utc::now() + Duration::hours(1)).trunc_subsecs(0);
    let outbound = dispatcher(
        &app,
        OutboundSettings {
            allow_http: true,
            allow_private_targets: true,
            concurrency_per_endpoint: 1,
            timeout_ms: 30_000,
            sweep_ms: 50,
            ..OutboundSettings::default()
        },
        ManualClock::at(t0),
    );
    // One full round delivered and recorded, the next one under way.
    receiver
        .wait_for("the first request of the second round", |d| d.len() > ROUND)
        .await;
    let backlog = format!(
        "payrail_outbound_backlog{{tenant=\"{}\",endpoint=\"{id}\"}}",
        t.id
    );
    let oldest = format!(
        "payrail_outbound_oldest_undelivered_seconds{{tenant=\"{}\",endpoint=\"{id}\"}}",
        t.id
    );
    let left = (events.len() - ROUND) as f64;
    let text = metric_becomes(&outbound, &backlog, Some(left)).await;
    age_becomes(&outbound, &oldest, t0, &events[ROUND]).await;
    assert_eq!(
        sample(
            &text,
            "payrail_outbound_deliveries_total{outcome=\"succeeded\"}"
        ),
        Some(ROUND as f64)
    );
}
