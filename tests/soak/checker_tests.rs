//! The checker itself: silent on a consistent history, loud on each kind of breach.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::checker::{Checker, Received};
use crate::history::{Attempt, Entry, Kind, Op};
use crate::state::TenantState;

const INVOICE: &str = "inv_1";
const PAYMENT: &str = "pay_1";

fn event(sequence: i64, kind: &str, subject: &str, data: Value) -> Value {
    json!({"sequence": sequence, "eventType": kind, "subjectId": subject, "data": data})
}

/// One invoice of 1,000 paid by one payment, as a settled engine shows it.
fn paid_invoice() -> TenantState {
    let timeline = vec![
        event(
            1,
            "invoice.created",
            INVOICE,
            json!({"number": "INV-000001"}),
        ),
        event(2, "invoice.finalized", INVOICE, json!({})),
        event(3, "payment.attempted", PAYMENT, json!({"amount": 1000})),
        event(
            4,
            "invoice.payment_pending",
            INVOICE,
            json!({"paymentId": PAYMENT, "amount": 1000}),
        ),
        event(5, "payment.processing", PAYMENT, json!({})),
        event(6, "payment.succeeded", PAYMENT, json!({"amount": 1000})),
        event(7, "invoice.paid", INVOICE, json!({"amountPaid": 1000})),
    ];
    TenantState {
        invoices: vec![
            json!({"id": INVOICE, "number": "INV-000001", "customerName": "k-inv",
            "status": "paid", "total": 1000, "amountPaid": 1000, "amountPending": 0,
            "amountRefunded": 0}),
        ],
        payments: vec![json!({"id": PAYMENT, "invoiceId": INVOICE, "amount": 1000,
            "status": "succeeded", "amountRefunded": 0})],
        events: timeline.clone(),
        timelines: HashMap::from([(INVOICE.to_owned(), timeline)]),
        refund_owners: HashMap::new(),
    }
}

fn acked(kind: Kind, key: &str, invoice: Option<&str>, body: Value) -> Entry {
    Entry {
        op: Op {
            tenant: 0,
            kind,
            key: key.into(),
            path: String::new(),
            body: Some(json!({})),
            invoice: invoice.map(str::to_owned),
            payment: None,
        },
        attempts: vec![Attempt {
            status: Some(201),
            code: None,
            elapsed: Duration::from_millis(5),
        }],
        acked: Some(body),
    }
}

fn history() -> Vec<Entry> {
    vec![
        acked(Kind::CreateInvoice, "k-inv", None, json!({"id": INVOICE})),
        acked(
            Kind::Pay,
            "k-pay",
            Some(INVOICE),
            json!({"id": PAYMENT, "invoiceId": INVOICE}),
        ),
    ]
}

fn violations(
    state: &TenantState,
    entries: &[Entry],
    charges: &Received,
    creations: u32,
) -> Vec<String> {
    let refunds = Received::new();
    let count = move |_: &str| creations;
    let mut checker = Checker::new(charges, &refunds, &count);
    let own: Vec<&Entry> = entries.iter().collect();
    checker.tenant(0, &own, state);
    checker.phantoms(std::slice::from_ref(state));
    checker.violations
}

fn charged_once() -> Received {
    HashMap::from([(PAYMENT.to_owned(), HashMap::from([(PAYMENT.to_owned(), 1)]))])
}

fn assert_caught(found: &[String], fragment: &str) {
    assert!(
        found.iter().any(|v| v.contains(fragment)),
        "expected a violation with {fragment:?}, got {found:#?}"
    );
}

#[test]
fn a_consistent_history_passes() {
    let found = violations(&paid_invoice(), &history(), &charged_once(), 1);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_second_charge_is_caught_per_payment() {
    let found = violations(&paid_invoice(), &history(), &charged_once(), 2);
    assert_caught(&found, "charged 2 times");
    let mut two_keys = charged_once();
    two_keys
        .get_mut(PAYMENT)
        .unwrap()
        .insert("other-key".into(), 1);
    let found = violations(&paid_invoice(), &history(), &two_keys, 1);
    assert_caught(&found, "under 2 keys");
}

#[test]
fn a_phantom_charge_is_caught() {
    let mut charges = charged_once();
    charges.insert(
        "pay_never_committed".into(),
        HashMap::from([("k".into(), 1)]),
    );
    let found = violations(&paid_invoice(), &history(), &charges, 1);
    assert_caught(&found, "a payment the engine does not have");
}

#[test]
fn money_breaches_are_caught() {
    let mut state = paid_invoice();
    state.invoices[0]["amountPaid"] = json!(1200);
    let found = violations(&state, &history(), &charged_once(), 1);
    assert_caught(&found, "over-collected");
    assert_caught(&found, "≠ replay");
    let mut state = paid_invoice();
    state.invoices[0]["amountPending"] = json!(300);
    let found = violations(&state, &history(), &charged_once(), 1);
    assert_caught(&found, "keeps a reservation");
}

#[test]
fn lost_writes_and_gaps_are_caught() {
    let mut state = paid_invoice();
    state.events.remove(2);
    let found = violations(&state, &history(), &charged_once(), 1);
    assert_caught(&found, "sequence has a gap");
    let mut entries = history();
    entries.push(acked(
        Kind::CreateInvoice,
        "k-lost",
        None,
        json!({"id": "inv_lost"}),
    ));
    let found = violations(&paid_invoice(), &entries, &charged_once(), 1);
    assert_caught(&found, "acknowledged invoice inv_lost (k-lost) lost");
    let mut entries = history();
    entries[0].attempts[0].status = Some(500);
    let found = violations(&paid_invoice(), &entries, &charged_once(), 1);
    assert_caught(&found, "answered 500");
}
