//! The gateway webhook body as its handler reads it (`read_body`: the account, and a batch or
//! one event), then each event converted to an engine outcome.
//!
//! - Any bytes: no panic; a refusal, before or after the signature, is a 400 (`invalid_json` /
//!   `invalid_request`).
//! - A body read has the account its JSON names (the account whose secret checks the signature
//!   is the one the events are applied to), and a batch's events are its `events` in order.
//! - Each event is converted exactly when an independent reading of the same JSON says it is
//!   acceptable, and a converted event carries the body's id, payment id (canonical spelling),
//!   type, amount and currency.
//! - The converted outcome applied to a processing payment never panics and refuses a
//!   mismatched amount or currency.

#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use payrail::http::webhooks::{convert, read_body, Events};
use payrail_actors::domain::{
    Currency, Disposition, GatewayOutcome, Payment, PaymentId, RefundId, TenantId,
};
use payrail_actors::engine::GatewayEvent;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let read = read_body(data);
    let refusals = [
        read.as_ref().err(),
        read.as_ref().ok().and_then(|r| r.events.as_ref().err()),
    ];
    for code in refusals.into_iter().flatten().map(|e| e.parts()) {
        assert_eq!(code.0.as_u16(), 400, "{code:?}");
        assert!(
            matches!(code.1, "invalid_json" | "invalid_request"),
            "{code:?}"
        );
    }
    let Ok(read) = read else { return };
    let Ok(events) = read.events else { return };
    // The oracle's own reading; serde_json's `Value` refuses numbers out of f64's range that
    // the typed reading skips in fields it ignores.
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    assert_eq!(read.account, json["account"].as_str().unwrap_or_default());
    let account = read.account;
    let (events, raw) = match events {
        Events::Batch(events) => (events, json["events"].as_array().cloned().unwrap()),
        Events::Single(event) => (vec![*event], vec![json]),
    };
    assert_eq!(events.len(), raw.len());
    for (event, raw) in events.into_iter().zip(raw) {
        let converted = convert(&account, event);
        let expected = independently(&account, &raw);
        assert_eq!(
            converted.is_some(),
            expected.is_some(),
            "converted {converted:?} from {raw}"
        );
        if let (Some(event), Some((id, payment, kind))) = (converted, expected) {
            check(&event, &raw, &id, &payment, &kind);
            apply(&event);
        }
    }
});

fn int(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let f = value.as_f64()?;
        (f.fract() == 0.0 && (-9.223372036854775808e18..9.223372036854775808e18).contains(&f))
            .then_some(f as i64)
    })
}

/// What the documented format says of one event: accepted with (id, payment id, type), or not.
fn independently(account: &str, raw: &Value) -> Option<(String, String, String)> {
    let id = raw["id"].as_str()?;
    let kind = raw["type"].as_str()?;
    let data = &raw["data"];
    if raw["account"].as_str().is_some_and(|a| a != account) || id.is_empty() || id.len() > 255 {
        return None;
    }
    let payment = data["paymentId"].as_str()?;
    payment.parse::<PaymentId>().ok()?;
    if let Some(currency) = data["currency"].as_str() {
        currency.parse::<Currency>().ok()?;
    }
    let refund_ok = data["refundId"]
        .as_str()
        .is_some_and(|r| r.parse::<RefundId>().is_ok());
    let ok = match kind {
        "payment.processing" => data["gatewayReference"].is_string(),
        "payment.succeeded" | "payment.failed" => true,
        "refund.succeeded" | "refund.failed" => refund_ok,
        _ => false,
    };
    ok.then(|| (id.to_owned(), payment.to_owned(), kind.to_owned()))
}

fn check(event: &GatewayEvent, raw: &Value, id: &str, payment: &str, kind: &str) {
    let data = &raw["data"];
    assert_eq!(event.id, id);
    assert_eq!(event.payment_id.to_string(), payment);
    let currency = data["currency"]
        .as_str()
        .map(|c| c.parse::<Currency>().unwrap());
    let amount = int(&data["amount"]);
    match (&event.outcome, kind) {
        (GatewayOutcome::Processing { reference }, "payment.processing") => {
            assert_eq!(Some(reference.as_str()), data["gatewayReference"].as_str());
        }
        (
            GatewayOutcome::Succeeded {
                amount: a,
                currency: c,
                ..
            },
            "payment.succeeded",
        )
        | (
            GatewayOutcome::Failed {
                amount: a,
                currency: c,
                ..
            },
            "payment.failed",
        ) => {
            assert_eq!(*a, amount);
            assert_eq!(*c, currency);
        }
        (GatewayOutcome::RefundSucceeded { refund_id }, "refund.succeeded")
        | (GatewayOutcome::RefundFailed { refund_id, .. }, "refund.failed") => {
            assert_eq!(
                Some(refund_id.to_string().as_str()),
                data["refundId"].as_str()
            );
        }
        (outcome, kind) => panic!("{kind} converted to {outcome:?}"),
    }
}

/// The outcome against a processing payment of 1,000 USD.
fn apply(event: &GatewayEvent) {
    let at = Utc.timestamp_opt(1_795_000_000, 0).unwrap();
    let mut payment = Payment::blank(TenantId::from_uuid(uuid::Uuid::nil()), event.payment_id, at);
    payment.amount = 1_000;
    payment.currency = "USD".parse().unwrap();
    let disposition = payment.decide_gateway(&event.outcome);
    match &event.outcome {
        GatewayOutcome::Succeeded {
            amount, currency, ..
        }
        | GatewayOutcome::Failed {
            amount, currency, ..
        } => {
            let mismatch = amount.is_some_and(|a| a != payment.amount)
                || currency.is_some_and(|c| c != payment.currency);
            assert_eq!(
                matches!(disposition, Disposition::Reject(_)),
                mismatch,
                "{disposition:?}"
            );
            if !mismatch {
                assert!(
                    matches!(disposition, Disposition::Apply(_)),
                    "{disposition:?}"
                );
            }
        }
        GatewayOutcome::Processing { .. } => {
            assert!(
                matches!(disposition, Disposition::Apply(_)),
                "{disposition:?}"
            );
        }
        // No refund exists on this payment.
        GatewayOutcome::RefundSucceeded { .. } | GatewayOutcome::RefundFailed { .. } => {
            assert!(
                matches!(disposition, Disposition::Reject(_)),
                "{disposition:?}"
            );
        }
    }
}
