//! Rounds recorded in groups and endpoints read in groups, at the store: each round of a group
//! is fenced by its own endpoint's lease; an event attempted twice in one round, or again while
//! an earlier attempt waits for a retry, leaves only its last attempt waiting; the grouped
//! reads answer each endpoint in the order asked. And end to end: endpoints of one tenant, each
//! at its own place in the log (created later, disabled for a while), each receive every event
//! committed since they were created, once.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use payrail::store::{AttemptRow, AttemptStatus, Db, Lease, RoundEffects, StoredEvent};
use payrail_actors::domain::{AttemptId, EndpointId, TenantId};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, Tenant, TestApp};
use crate::outbound_policy::{app_without_dispatcher, endpoint};
use crate::outbound_receiver::Receiver;

crate::helpers::per_backend!(
    outbound_rounds_recorded_together_are_each_fenced_by_their_lease,
    outbound_endpoints_of_one_tenant_each_get_their_events_once,
);

/// An attempt of `event` as a round logs it; a pending one owes a retry in an hour.
fn attempt(event: &StoredEvent, number: i64, status: AttemptStatus) -> AttemptRow {
    let now = Utc::now();
    AttemptRow {
        id: AttemptId::new(),
        event_seq: event.sequence,
        event_id: event.event.id,
        attempt: number,
        status,
        response_status: Some(if status == AttemptStatus::Succeeded {
            200
        } else {
            500
        }),
        response_body: Some(String::new()),
        duration_ms: 1,
        attempted_at: now,
        next_attempt_at: (status == AttemptStatus::Pending)
            .then(|| now + chrono::Duration::hours(1)),
    }
}

fn moves_to(event: &StoredEvent, fresh_only: bool) -> RoundEffects {
    RoundEffects {
        cursor_seq: Some(event.sequence),
        fresh_only,
        ..RoundEffects::default()
    }
}

/// `(event sequence, attempt number, status)` of the endpoint's attempts, in order.
async fn logged(db: &Db, tenant: TenantId, id: EndpointId) -> Vec<(i64, i64, &'static str)> {
    let mut log: Vec<_> = db
        .list_attempts(tenant, id, None, 100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.event_seq, a.attempt, a.status.as_str()))
        .collect();
    log.sort_unstable();
    log
}

async fn outbound_rounds_recorded_together_are_each_fenced_by_their_lease(backend: Backend) {
    let app = app_without_dispatcher(backend).await;
    let t = app.tenant("Acme").await;
    let tenant: TenantId = t.id.parse().unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = endpoint(&app, &t, json!({"url": "http://127.0.0.1:9/hook"})).await;
        ids.push(id.parse::<EndpointId>().unwrap());
    }
    let (e1, e2, e3) = (ids[0], ids[1], ids[2]);
    app.invoice(&t.key, 100, true).await;
    app.invoice(&t.key, 100, true).await;
    let db = &app._state.db;
    let start = db
        .get_endpoint(tenant, e1)
        .await
        .unwrap()
        .unwrap()
        .cursor_seq;
    let ev = db.events_after(tenant, start, 10).await.unwrap();
    assert_eq!(ev.len(), 4);
    let a = Lease {
        owner: "node-a".into(),
        duration: Duration::from_secs(60),
    };
    let b = Lease {
        owner: "node-b".into(),
        duration: Duration::from_secs(60),
    };
    for (id, lease) in [(e1, &a), (e2, &a), (e3, &b)] {
        assert!(db.take_endpoint_lease(tenant, id, lease).await.unwrap());
    }

    // One group of node a's rounds: the round of the endpoint whose lease b holds is refused,
    // the others are recorded.
    let r1 = [
        attempt(&ev[0], 1, AttemptStatus::Succeeded),
        attempt(&ev[1], 1, AttemptStatus::Pending),
    ];
    let r2 = [attempt(&ev[0], 1, AttemptStatus::Succeeded)];
    let (m1, m2) = (moves_to(&ev[1], true), moves_to(&ev[0], true));
    let recorded = db
        .record_rounds(
            &a,
            &[
                (tenant, e1, &r1[..], &m1),
                (tenant, e2, &r2[..], &m2),
                (tenant, e3, &r2[..], &m2),
            ],
        )
        .await
        .unwrap();
    assert_eq!(recorded, [true, true, false]);
    let cursor = |id| async move {
        db.get_endpoint(tenant, id)
            .await
            .unwrap()
            .unwrap()
            .cursor_seq
    };
    assert_eq!(
        (cursor(e1).await, cursor(e2).await, cursor(e3).await),
        (ev[1].sequence, ev[0].sequence, start)
    );
    assert_eq!(
        logged(db, tenant, e1).await,
        [
            (ev[0].sequence, 1, "succeeded"),
            (ev[1].sequence, 1, "pending")
        ]
    );
    assert_eq!(logged(db, tenant, e3).await, []);

    // The grouped reads, in the order asked; an unknown endpoint is `None`.
    let states = db
        .round_states(&[(tenant, e1), (tenant, EndpointId::new()), (tenant, e2)])
        .await
        .unwrap();
    let owed = r1[1].next_attempt_at.map(|at| at.timestamp_micros());
    let state = |i: usize| {
        states[i]
            .as_ref()
            .map(|(row, next)| (row.id, row.cursor_seq, next.map(|at| at.timestamp_micros())))
    };
    assert_eq!(state(0), Some((e1, ev[1].sequence, owed)));
    assert_eq!(state(1), None);
    assert_eq!(state(2), Some((e2, ev[0].sequence, None)));
    // e1: two events past its cursor and one retry owed, the oldest being ev[1]; e2: three
    // past its cursor.
    let backlogs = db
        .endpoint_backlogs(&[(tenant, e2, ev[0].sequence), (tenant, e1, ev[1].sequence)])
        .await
        .unwrap();
    let occurred = |e: &StoredEvent| Some(e.event.occurred_at.timestamp_micros());
    let backlog = |i: usize| (backlogs[i].0, backlogs[i].1.map(|at| at.timestamp_micros()));
    assert_eq!(backlog(0), (3, occurred(&ev[1])));
    assert_eq!(backlog(1), (3, occurred(&ev[1])));

    // e1 again, with ev[2] scheduled for a redelivery: the retry of ev[1] succeeds, ev[2] is
    // tried twice in the round (its redelivery fails, its first attempt succeeds), ev[3]
    // fails. Only ev[3] owes a retry; every attempt followed by another of its event failed.
    db.schedule(tenant, e1, &[ev[2].sequence], Utc::now(), None)
        .await
        .unwrap();
    let r3 = [
        attempt(&ev[1], 2, AttemptStatus::Succeeded),
        attempt(&ev[2], 1, AttemptStatus::Pending),
        attempt(&ev[2], 1, AttemptStatus::Succeeded),
        attempt(&ev[3], 1, AttemptStatus::Pending),
    ];
    assert!(db
        .record_round(tenant, e1, &a, &r3, &moves_to(&ev[3], false))
        .await
        .unwrap());
    assert_eq!(
        logged(db, tenant, e1).await,
        [
            (ev[0].sequence, 1, "succeeded"),
            (ev[1].sequence, 1, "failed"),
            (ev[1].sequence, 2, "succeeded"),
            (ev[2].sequence, 1, "failed"),
            (ev[2].sequence, 1, "succeeded"),
            (ev[3].sequence, 1, "pending"),
        ]
    );
    let next = db.next_retry_at(tenant, e1).await.unwrap();
    assert_eq!(
        next.map(|at| at.timestamp_micros()),
        r3[3].next_attempt_at.map(|at| at.timestamp_micros())
    );
    let backlogs = db
        .endpoint_backlogs(&[(tenant, e1, ev[3].sequence)])
        .await
        .unwrap();
    assert_eq!(backlogs[0].0, 1);

    // b's round for an endpoint a holds is refused alone.
    assert!(!db
        .record_round(tenant, e2, &b, &r2, &moves_to(&ev[3], true))
        .await
        .unwrap());
    assert_eq!(cursor(e2).await, ev[0].sequence);
}

/// The tenant's events after `after`, by id.
async fn events_after(app: &TestApp, t: &Tenant, after: i64) -> HashMap<String, i64> {
    let page: Value = app.get_json("/api/events?limit=100", &t.key).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["sequence"].as_i64().unwrap(),
            )
        })
        .filter(|(_, seq)| *seq > after)
        .collect()
}

async fn last_sequence(app: &TestApp, t: &Tenant) -> i64 {
    events_after(app, t, 0)
        .await
        .into_values()
        .max()
        .unwrap_or(0)
}

async fn set_status(app: &TestApp, t: &Tenant, id: &str, status: &str) {
    let response = app
        .client
        .patch(format!("{}/api/webhook-endpoints/{id}", app.url))
        .bearer_auth(&t.key)
        .json(&json!({ "status": status }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn outbound_endpoints_of_one_tenant_each_get_their_events_once(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.outbound.allow_http = true;
        s.outbound.allow_private_targets = true;
        s.outbound.sweep_ms = 50;
    })
    .await;
    let t = app.tenant("Acme").await;
    let receivers = [
        Receiver::start(Receiver::always(200)).await,
        Receiver::start(Receiver::always(200)).await,
        Receiver::start(Receiver::always(200)).await,
    ];
    let commit = |n: usize| {
        let (app, key) = (&app, t.key.clone());
        async move {
            for _ in 0..n {
                app.invoice(&key, 100, true).await;
            }
        }
    };
    // a from the start, b from later on, c from later still but disabled for a while: three
    // places in the log, each catching up with the others' shared reads.
    let from_a = last_sequence(&app, &t).await;
    let a = endpoint(&app, &t, json!({"url": receivers[0].url})).await;
    commit(3).await;
    let from_b = last_sequence(&app, &t).await;
    endpoint(&app, &t, json!({"url": receivers[1].url})).await;
    commit(3).await;
    let from_c = last_sequence(&app, &t).await;
    let c = endpoint(&app, &t, json!({"url": receivers[2].url})).await;
    set_status(&app, &t, &c, "disabled").await;
    commit(3).await;
    set_status(&app, &t, &a, "disabled").await;
    set_status(&app, &t, &c, "enabled").await;
    commit(3).await;
    set_status(&app, &t, &a, "enabled").await;
    commit(2).await;
    for (receiver, from) in receivers.iter().zip([from_a, from_b, from_c]) {
        let want = events_after(&app, &t, from).await;
        receiver
            .wait_for("every event since the endpoint's creation", |d| {
                d.len() >= want.len()
            })
            .await;
        // Time for anything sent twice to arrive too.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = receiver.deliveries();
        let mut sent: Vec<&str> = got.iter().map(|d| d.webhook_id()).collect();
        sent.sort_unstable();
        let mut wanted: Vec<&str> = want.keys().map(String::as_str).collect();
        wanted.sort_unstable();
        assert_eq!(sent, wanted, "each event once, none missing, none extra");
    }
}
