//! A snapshot's row parts (`details`, `data` and the keys kept in columns) cover every key of
//! the snapshot exactly once, each with the snapshot's own value: a field added to `Invoice` or
//! `Payment` without a place in its row fails here instead of being lost on write. The parts'
//! times read as chrono writes them.

use std::collections::BTreeSet;

use payrail_actors::domain::{Payment, Refund, RefundId, RefundStatus, TenantId};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::fixtures::*;
use crate::store::stmt::Bind;
use crate::store::tables::{
    invoice_details, payment_details, InvoiceData, PaymentData, Rfc3339, INVOICE_COLUMNS,
    PAYMENT_COLUMNS,
};

fn object(value: impl serde::Serialize) -> Map<String, Value> {
    match serde_json::to_value(value).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn json_bind(bind: Bind) -> Map<String, Value> {
    match bind {
        Bind::Json(text) => object(serde_json::from_str::<Value>(&text).unwrap()),
        _ => panic!("details are not JSON"),
    }
}

/// `snapshot`'s keys are `details`, `data` and `columns`, none twice, and each part holds the
/// snapshot's value of every key it has. Every value is set, so that a key serialized only when
/// set cannot hide.
fn assert_parts_cover(
    snapshot: impl serde::Serialize,
    details: Bind,
    data: impl serde::Serialize,
    columns: &[&str],
) {
    let whole = object(snapshot);
    assert!(whole.values().all(|v| !v.is_null()), "{whole:?}");
    let (details, data) = (json_bind(details), object(data));
    let mut seen = BTreeSet::new();
    for part in [&details, &data] {
        for (key, value) in part {
            assert!(seen.insert(key.as_str()), "{key} is in two parts");
            assert_eq!(Some(value), whole.get(key), "{key}");
        }
    }
    for key in columns {
        assert!(seen.insert(key), "{key} is in a part and a column");
    }
    let all: BTreeSet<&str> = whole.keys().map(String::as_str).collect();
    assert_eq!(seen, all);
}

#[test]
fn an_invoice_row_holds_every_key_of_its_snapshot_once() {
    let (mut invoice, _) = create_invoice(
        TenantId::new(),
        &InvoiceSpec {
            due: Some(date(2027, 1, 31)),
            ..InvoiceSpec::default()
        },
    );
    invoice.amount_paid = 700;
    invoice.amount_pending = 300;
    invoice.amount_refunded = 100;
    invoice.paid_at = Some(at(5));
    invoice.voided_at = Some(at(6));
    assert_parts_cover(
        &invoice,
        invoice_details(&invoice).unwrap(),
        InvoiceData::of(&invoice),
        &INVOICE_COLUMNS,
    );
}

#[test]
fn a_payment_row_holds_every_key_of_its_snapshot_once() {
    let (mut invoice, _) = create_invoice(TenantId::new(), &InvoiceSpec::default());
    let (mut payment, _) = attempt_payment(&mut invoice, 1000, at(1));
    payment.source_token = Some("tok_visa".into());
    payment.gateway_reference = Some("ch_1".into());
    payment.failure_code = Some("card_declined".into());
    payment.failure_message = Some("declined".into());
    payment.amount_refunded = 400;
    payment.refunds.push(refund(&payment));
    assert_parts_cover(
        &payment,
        payment_details(&payment).unwrap(),
        PaymentData::of(&payment),
        &PAYMENT_COLUMNS,
    );
}

fn refund(payment: &Payment) -> Refund {
    Refund {
        id: RefundId::new(),
        payment_id: payment.id,
        invoice_id: payment.invoice_id,
        amount: 400,
        currency: payment.currency,
        reason: Some("requested_by_customer".into()),
        status: RefundStatus::Succeeded,
        failure_code: None,
        created_at: at(2),
        updated_at: at(3),
    }
}

proptest! {
    /// The data parts' times read exactly as chrono writes them: fractions of every length,
    /// years outside 0–9999 and leap seconds included.
    #[test]
    fn times_are_written_as_chrono_writes_them(
        seconds in -65_000_000_000i64..260_000_000_000,
        nanos in prop_oneof![
            Just(0u32),
            (0u32..1_000).prop_map(|ms| ms * 1_000_000),
            (0u32..1_000_000).prop_map(|us| us * 1_000),
            0u32..1_000_000_000,
        ],
        leap in proptest::bool::weighted(0.05),
    ) {
        let Some(mut time) = chrono::DateTime::from_timestamp(seconds, nanos) else {
            return Ok(());
        };
        if leap {
            let second = time.date_naive().and_hms_nano_opt(23, 59, 59, 1_000_000_000 + nanos);
            if let Some(second) = second {
                time = second.and_utc();
            }
        }
        prop_assert_eq!(
            serde_json::to_string(&Rfc3339(&time)).unwrap(),
            serde_json::to_string(&time).unwrap()
        );
    }
}
