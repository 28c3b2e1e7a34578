//! State-transition tests: every allowed move and every forbidden one.

use chrono::Utc;

use super::*;
use crate::actors::EventBuilderForTests as Builder;

fn input(unit_amount: i64, quantity: i64, tax_bps: Option<i64>) -> InvoiceInput {
    serde_json::from_value(serde_json::json!({
        "customerName": "Jane Doe",
        "customerEmail": "jane@example.com",
        "currency": "USD",
        "lineItems": [{"description": "Seat", "quantity": quantity, "unitAmount": unit_amount}],
        "taxRateBps": tax_bps,
    }))
    .unwrap()
}

fn card() -> CardSummary {
    CardSummary {
        kind: "card".into(),
        brand: "visa".into(),
        last4: "4242".into(),
        exp_month: 12,
        exp_year: 2030,
        fingerprint: "f".into(),
    }
}

/// Applies decided events to an invoice, numbering them after its version.
fn run(invoice: &mut Invoice, data: Vec<EventData>) {
    let events = Builder::invoice(invoice.tenant_id, invoice.id).build(invoice.version, data);
    events.iter().for_each(|e| invoice.apply(e));
}

fn new_invoice(finalize: bool) -> Invoice {
    let mut invoice = Invoice::blank(TenantId::new(), InvoiceId::new(), Utc::now());
    run(
        &mut invoice,
        Invoice::decide_create(1, &input(1_000, 3, Some(1_000)), finalize).unwrap(),
    );
    invoice
}

fn reserve(invoice: &mut Invoice, amount: Option<i64>) -> PaymentId {
    let payment_id = PaymentId::new();
    let data = invoice
        .decide(&InvoiceCommand::Reserve { payment_id, amount })
        .unwrap();
    run(invoice, data);
    payment_id
}

fn payment_event(invoice: &mut Invoice, payment: PaymentId, data: EventData) {
    let event = Builder::payment(invoice.tenant_id, payment)
        .build(1, vec![data])
        .remove(0);
    let reactions = invoice.decide_payment_effect(&event.data);
    invoice.apply(&event);
    run(invoice, reactions);
}

#[test]
fn create_computes_totals_and_numbers() {
    let invoice = new_invoice(false);
    assert_eq!(invoice.number, "INV-000001");
    assert_eq!(invoice.status, InvoiceStatus::Draft);
    assert_eq!(invoice.details.subtotal, 3_000);
    assert_eq!(invoice.details.tax, 300);
    assert_eq!(invoice.details.total, 3_300);
    assert_eq!(invoice.amount_remaining(), 3_300);
    assert_eq!(invoice.version, 1);
    assert_eq!(new_invoice(true).status, InvoiceStatus::Open);
}

#[test]
fn validation_reports_every_field_and_overflow() {
    let mut bad = input(0, 0, Some(20_000));
    bad.customer_name = " ".into();
    bad.customer_email = Some("nope".into());
    match bad.validate() {
        Err(DomainError::Validation(errors)) => {
            let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
            for f in [
                "customerName",
                "customerEmail",
                "taxRateBps",
                "lineItems[0].quantity",
                "lineItems[0].unitAmount",
            ] {
                assert!(fields.contains(&f), "{f} missing from {fields:?}");
            }
        }
        other => panic!("expected validation error, got {other:?}"),
    }
    assert_eq!(
        input(i64::MAX, 2, None).validate(),
        Err(DomainError::Overflow)
    );
    let mut many = input(1, 1, None);
    many.line_items = vec![many.line_items[0].clone(); 101];
    assert!(many.validate().is_err());
    // Two items that overflow only when summed.
    let mut sum = input(i64::MAX / 2 + 1, 1, None);
    sum.line_items.push(sum.line_items[0].clone());
    assert_eq!(sum.validate(), Err(DomainError::Overflow));
}

#[test]
fn only_drafts_are_edited_or_finalized() {
    let mut draft = new_invoice(false);
    let data = draft
        .decide(&InvoiceCommand::Update(input(500, 1, None)))
        .unwrap();
    run(&mut draft, data);
    assert_eq!(draft.details.total, 500);
    let data = draft.decide(&InvoiceCommand::Finalize).unwrap();
    run(&mut draft, data);
    assert_eq!(draft.status, InvoiceStatus::Open);
    assert!(draft.finalized_at.is_some());
    for command in [
        InvoiceCommand::Update(input(1, 1, None)),
        InvoiceCommand::Finalize,
    ] {
        assert!(matches!(
            draft.decide(&command),
            Err(DomainError::InvalidState(_))
        ));
    }
}

#[test]
fn drafts_cannot_be_paid_voided_or_marked() {
    let draft = new_invoice(false);
    for command in [
        InvoiceCommand::Void,
        InvoiceCommand::MarkUncollectible,
        InvoiceCommand::Reserve {
            payment_id: PaymentId::new(),
            amount: None,
        },
    ] {
        assert!(
            matches!(draft.decide(&command), Err(DomainError::InvalidState(_))),
            "{command:?}"
        );
    }
}

#[test]
fn open_to_paid_through_partial_payments() {
    let mut invoice = new_invoice(true);
    let first = reserve(&mut invoice, Some(1_000));
    assert_eq!(
        (invoice.amount_pending, invoice.amount_remaining()),
        (1_000, 2_300)
    );
    payment_event(
        &mut invoice,
        first,
        EventData::PaymentSucceeded {
            amount: 1_000,
            gateway_reference: None,
        },
    );
    assert_eq!((invoice.amount_paid, invoice.amount_pending), (1_000, 0));
    assert_eq!(invoice.status, InvoiceStatus::Open);
    let second = reserve(&mut invoice, None);
    assert_eq!(invoice.amount_remaining(), 0);
    payment_event(
        &mut invoice,
        second,
        EventData::PaymentSucceeded {
            amount: 2_300,
            gateway_reference: None,
        },
    );
    assert_eq!(invoice.status, InvoiceStatus::Paid);
    assert!(invoice.paid_at.is_some());
    for command in [InvoiceCommand::Void, InvoiceCommand::MarkUncollectible] {
        assert!(invoice.decide(&command).is_err());
    }
    assert!(invoice.check_invariants().is_ok());
}

#[test]
fn reservations_never_exceed_the_total() {
    let mut invoice = new_invoice(true);
    reserve(&mut invoice, Some(3_000));
    let over = invoice.decide(&InvoiceCommand::Reserve {
        payment_id: PaymentId::new(),
        amount: Some(301),
    });
    assert!(matches!(
        over,
        Err(DomainError::AmountExceedsRemaining { remaining: 300, .. })
    ));
    reserve(&mut invoice, Some(300));
    let none_left = invoice.decide(&InvoiceCommand::Reserve {
        payment_id: PaymentId::new(),
        amount: None,
    });
    assert!(matches!(
        none_left,
        Err(DomainError::AmountExceedsRemaining { remaining: 0, .. })
    ));
}

#[test]
fn failure_releases_the_reservation_and_void_needs_none_in_flight() {
    let mut invoice = new_invoice(true);
    let payment = reserve(&mut invoice, None);
    assert!(matches!(
        invoice.decide(&InvoiceCommand::Void),
        Err(DomainError::InvalidState(_))
    ));
    payment_event(
        &mut invoice,
        payment,
        EventData::PaymentFailed {
            amount: 3_300,
            failure_code: "card_declined".into(),
            failure_message: "no".into(),
        },
    );
    assert_eq!(
        (invoice.amount_pending, invoice.amount_remaining()),
        (0, 3_300)
    );
    let data = invoice.decide(&InvoiceCommand::Void).unwrap();
    run(&mut invoice, data);
    assert_eq!(invoice.status, InvoiceStatus::Void);
    assert!(invoice
        .decide(&InvoiceCommand::Reserve {
            payment_id: PaymentId::new(),
            amount: None
        })
        .is_err());
}

#[test]
fn uncollectible_can_still_be_paid_or_voided() {
    let mut invoice = new_invoice(true);
    let data = invoice.decide(&InvoiceCommand::MarkUncollectible).unwrap();
    run(&mut invoice, data);
    assert_eq!(invoice.status, InvoiceStatus::Uncollectible);
    assert!(invoice.decide(&InvoiceCommand::MarkUncollectible).is_err());
    assert!(invoice.decide(&InvoiceCommand::Void).is_ok());
    let payment = reserve(&mut invoice, None);
    payment_event(
        &mut invoice,
        payment,
        EventData::PaymentSucceeded {
            amount: 3_300,
            gateway_reference: None,
        },
    );
    assert_eq!(invoice.status, InvoiceStatus::Paid);
}

fn new_payment(amount: i64) -> Payment {
    let mut payment = Payment::blank(TenantId::new(), PaymentId::new(), Utc::now());
    let data = EventData::PaymentAttempted {
        invoice_id: InvoiceId::new(),
        amount,
        currency: "USD".parse().unwrap(),
        payment_method: card().into(),
        token: None,
    };
    apply_payment(&mut payment, Disposition::Apply(vec![data]));
    payment
}

fn apply_payment(payment: &mut Payment, disposition: Disposition) {
    let Disposition::Apply(data) = disposition else {
        panic!("expected Apply, got {disposition:?}")
    };
    let events = Builder::payment(payment.tenant_id, payment.id).build(payment.version, data);
    events.iter().for_each(|e| payment.apply(e));
}

fn apply_with(payment: &mut Payment, decide: impl FnOnce(&Payment) -> Disposition) {
    let disposition = decide(payment);
    apply_payment(payment, disposition);
}

fn succeeded() -> GatewayOutcome {
    GatewayOutcome::Succeeded {
        reference: Some("ch_1".into()),
        amount: Some(500),
        currency: None,
    }
}

fn failed() -> GatewayOutcome {
    GatewayOutcome::Failed {
        code: "card_declined".into(),
        message: "no".into(),
        amount: None,
        currency: None,
    }
}

#[test]
fn payment_moves_forward_only() {
    let mut payment = new_payment(500);
    assert_eq!(payment.status, PaymentStatus::Processing);
    let processing = GatewayOutcome::Processing {
        reference: "ch_1".into(),
    };
    apply_with(&mut payment, |p| p.decide_gateway(&processing));
    assert_eq!(payment.decide_gateway(&processing), Disposition::Ignore);
    apply_with(&mut payment, |p| p.decide_gateway(&succeeded()));
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    // A late failure, a repeated success or a late processing are all stale.
    for stale in [failed(), succeeded(), processing] {
        assert_eq!(payment.decide_gateway(&stale), Disposition::Ignore);
    }
    let mut other = new_payment(500);
    apply_with(&mut other, |p| p.decide_gateway(&failed()));
    assert_eq!(other.status, PaymentStatus::Failed);
    assert_eq!(other.decide_gateway(&succeeded()), Disposition::Ignore);
    assert!(other.decide_refund(RefundId::new(), None, None).is_err());
}

#[test]
fn mismatched_outcomes_are_rejected() {
    let payment = new_payment(500);
    let wrong_amount = GatewayOutcome::Succeeded {
        reference: None,
        amount: Some(499),
        currency: None,
    };
    assert!(matches!(
        payment.decide_gateway(&wrong_amount),
        Disposition::Reject(_)
    ));
    let wrong_currency = GatewayOutcome::Succeeded {
        reference: None,
        amount: None,
        currency: Some("EUR".parse().unwrap()),
    };
    assert!(matches!(
        payment.decide_gateway(&wrong_currency),
        Disposition::Reject(_)
    ));
    let unknown_refund = GatewayOutcome::RefundSucceeded {
        refund_id: RefundId::new(),
    };
    assert!(matches!(
        payment.decide_gateway(&unknown_refund),
        Disposition::Reject(_)
    ));
}

#[test]
fn refunds_never_exceed_the_capture() {
    let mut payment = new_payment(500);
    assert!(matches!(
        payment.decide_refund(RefundId::new(), Some(1), None),
        Err(DomainError::InvalidState(_))
    ));
    apply_with(&mut payment, |p| p.decide_gateway(&succeeded()));
    let first = RefundId::new();
    apply_with(&mut payment, |p| {
        Disposition::Apply(
            p.decide_refund(first, Some(200), Some("requested_by_customer".into()))
                .unwrap(),
        )
    });
    assert_eq!(payment.refundable(), 300);
    assert!(matches!(
        payment.decide_refund(RefundId::new(), Some(301), None),
        Err(DomainError::RefundExceedsCaptured {
            refundable: 300,
            ..
        })
    ));
    apply_with(&mut payment, |p| {
        p.decide_gateway(&GatewayOutcome::RefundSucceeded { refund_id: first })
    });
    assert_eq!(payment.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(payment.amount_refunded, 200);
    assert_eq!(
        payment.decide_gateway(&GatewayOutcome::RefundSucceeded { refund_id: first }),
        Disposition::Ignore
    );
    // A failed refund gives its amount back.
    let second = RefundId::new();
    apply_with(&mut payment, |p| {
        Disposition::Apply(p.decide_refund(second, None, None).unwrap())
    });
    apply_with(&mut payment, |p| {
        p.decide_gateway(&GatewayOutcome::RefundFailed {
            refund_id: second,
            code: "x".into(),
        })
    });
    assert_eq!(payment.refundable(), 300);
    let third = RefundId::new();
    apply_with(&mut payment, |p| {
        Disposition::Apply(p.decide_refund(third, None, None).unwrap())
    });
    apply_with(&mut payment, |p| {
        p.decide_gateway(&GatewayOutcome::RefundSucceeded { refund_id: third })
    });
    assert_eq!(payment.status, PaymentStatus::Refunded);
    assert_eq!(payment.refundable(), 0);
    assert!(payment.decide_refund(RefundId::new(), None, None).is_err());
    assert!(payment.check_invariants().is_ok());
    assert_eq!(payment.version, 8);
}
