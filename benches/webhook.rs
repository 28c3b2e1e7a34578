//! The webhook endpoint's CPU work before the engine: verifying `Payrail-Signature` over the raw
//! body and parsing the body (docs/api.md's event shape), for one event and a 100-event batch;
//! `read_body` and `convert` are the handler's own reading of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/summary.rs"]
mod summary;

use criterion::{Criterion, Throughput};
use payrail::gateway::signature::{sign, verify, DEFAULT_TOLERANCE_SECS};
use payrail::http::webhooks::{convert, read_body};
use payrail_actors::domain::{PaymentId, TenantId};
use serde::Deserialize;

/// Size of the single-event body: one `payment.succeeded` event padded to this length.
const SINGLE_BODY_BYTES: usize = 300;
const BATCH_EVENTS: usize = 100;
const SECRET: &str = "whsec_bench_0123456789abcdef0123456789abcdef";
const NOW: i64 = 1_795_000_000;

/// One gateway event as docs/api.md documents it (what the webhook handler would deserialize into).
#[allow(dead_code)] // fields are read by the handler, here only parsed
#[derive(Debug, Deserialize)]
struct WebhookEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    account: String,
    created: i64,
    data: WebhookEventData,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookEventData {
    payment_id: String,
    refund_id: Option<String>,
    gateway_reference: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
struct WebhookBatch {
    account: String,
    events: Vec<WebhookEvent>,
}

fn succeeded_event(account: &str, n: usize) -> serde_json::Value {
    let payment = PaymentId::new();
    serde_json::json!({
        "id": format!("evt_gw_{n:026}"), "type": "payment.succeeded", "account": account,
        "created": NOW,
        "data": {"paymentId": payment.to_string(), "gatewayReference": format!("ch_{payment}"),
                 "amount": 3_300, "currency": "USD"},
    })
}

/// One `payment.succeeded` event whose gateway reference is lengthened so the body is exactly
/// `len` bytes (a real one is ~240 bytes; gateways' references vary in length).
fn single_body(account: &str, len: usize) -> Vec<u8> {
    let payment = PaymentId::new();
    let body = |padding: &str| {
        serde_json::json!({
            "id": format!("evt_gw_{:026}", 1), "type": "payment.succeeded", "account": account,
            "created": NOW,
            "data": {"paymentId": payment.to_string(),
                     "gatewayReference": format!("ch_{payment}{padding}"),
                     "amount": 3_300, "currency": "USD"},
        })
        .to_string()
    };
    let unpadded = body("").len();
    assert!(
        unpadded <= len,
        "the bare event is already {unpadded} bytes"
    );
    let padded = body(&"0".repeat(len - unpadded)).into_bytes();
    assert_eq!(padded.len(), len);
    padded
}

fn batch_body(account: &str, events: usize) -> Vec<u8> {
    let events: Vec<_> = (0..events).map(|n| succeeded_event(account, n)).collect();
    serde_json::json!({ "account": account, "events": events })
        .to_string()
        .into_bytes()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let account = TenantId::new().to_string();
    let bodies = [
        ("single", single_body(&account, SINGLE_BODY_BYTES)),
        ("batch100", batch_body(&account, BATCH_EVENTS)),
    ];
    for (name, body) in &bodies {
        eprintln!("body {name}: {} bytes", body.len());
    }

    let mut group = criterion.benchmark_group("signature_verify");
    for (name, body) in &bodies {
        let header = sign(SECRET, NOW, body);
        verify(&header, body, &[SECRET], NOW, DEFAULT_TOLERANCE_SECS).unwrap();
        group.throughput(Throughput::Bytes(body.len() as u64));
        summary::bench(&mut group, "signature_verify", name, || {
            verify(&header, body, &[SECRET], NOW, DEFAULT_TOLERANCE_SECS)
        });
    }
    group.finish();

    let mut group = criterion.benchmark_group("parse_value");
    for (name, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        summary::bench(&mut group, "parse_value", name, || {
            serde_json::from_slice::<serde_json::Value>(body).unwrap()
        });
    }
    group.finish();

    let mut group = criterion.benchmark_group("parse_typed");
    let (single, batch) = (&bodies[0].1, &bodies[1].1);
    group.throughput(Throughput::Bytes(single.len() as u64));
    summary::bench(&mut group, "parse_typed", "single", || {
        serde_json::from_slice::<WebhookEvent>(single).unwrap()
    });
    group.throughput(Throughput::Bytes(batch.len() as u64));
    summary::bench(&mut group, "parse_typed", "batch100", || {
        let parsed = serde_json::from_slice::<WebhookBatch>(batch).unwrap();
        assert_eq!(parsed.events.len(), BATCH_EVENTS);
        parsed
    });
    group.finish();

    // What the handler does with a body before its engine call (signature apart): read it and
    // convert its events to the engine's.
    let mut group = criterion.benchmark_group("read_body");
    for (name, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        summary::bench(&mut group, "read_and_convert", name, || {
            let read = read_body(body).unwrap();
            assert_eq!(read.account, account);
            let events = read.events.unwrap().into_vec();
            let expected = events.len();
            let converted: Vec<_> = events
                .into_iter()
                .filter_map(|event| convert(&read.account, event))
                .collect();
            assert_eq!(converted.len(), expected);
            converted
        });
    }
    group.finish();

    criterion.final_summary();
    summary::print("webhook");
}
