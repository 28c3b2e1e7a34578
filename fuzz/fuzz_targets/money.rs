//! Money and tax arithmetic, invoice totals and the invoice/payment ledger.
//!
//! - `add`, `sub`, `mul`: the exact result when it fits an `i64`, `Overflow` otherwise.
//! - `apply_basis_points`: within half a minor unit of `amount × bps / 10 000`, ties to even
//!   (checked with a truncating reference in `i128`), `Overflow` only when the result does not
//!   fit.
//! - Invoice totals: line amount = quantity × unit amount, subtotal = Σ amounts, tax = the
//!   rounded basis points of the subtotal, total = subtotal + tax, all exact; an invalid field
//!   is a validation error naming it; otherwise `Overflow` exactly when an exact figure does
//!   not fit.
//! - Ledger: reservations, gateway outcomes, refunds, voids in any order never break either
//!   aggregate's invariants, and across them paid = Σ captured payments, pending = Σ
//!   processing payments, refunded = Σ refunded by payments, paid ⇔ fully collected.

#![no_main]

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use payrail_actors::domain::invoice::LineItemInput;
use payrail_actors::domain::money::{add, apply_basis_points, mul, sub};
use payrail_actors::domain::{
    CardSummary, Disposition, DomainError, Event, EventData, EventId, GatewayOutcome, Invoice,
    InvoiceCommand, InvoiceId, InvoiceInput, InvoiceStatus, Payment, PaymentId, PaymentStatus,
    RefundId, StreamId, TenantId,
};
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn run(u: &mut Unstructured) -> Result<()> {
    let a = amount(u)?;
    let b = amount(u)?;
    arithmetic(a, b);
    let bps = match u8::arbitrary(u)? % 3 {
        0 => u.int_in_range(0..=10_000)?,
        _ => i64::arbitrary(u)?,
    };
    tax(a, bps);
    let input = invoice_input(u)?;
    let Some(total) = totals(&input) else {
        return Ok(());
    };
    ledger(u, &input, total)
}

/// An amount biased towards the edges of `i64` and small values.
fn amount(u: &mut Unstructured) -> Result<i64> {
    Ok(match u8::arbitrary(u)? % 8 {
        0 => i64::MAX - i64::from(u8::arbitrary(u)?),
        1 => i64::MIN + i64::from(u8::arbitrary(u)?),
        2 | 3 => i64::from(i16::arbitrary(u)?),
        4 => i64::from(i32::arbitrary(u)?),
        _ => i64::arbitrary(u)?,
    })
}

fn fits(value: i128) -> Option<i64> {
    i64::try_from(value).ok()
}

fn arithmetic(a: i64, b: i64) {
    let (wa, wb) = (i128::from(a), i128::from(b));
    assert_eq!(add(a, b).ok(), fits(wa + wb));
    assert_eq!(sub(a, b).ok(), fits(wa - wb));
    assert_eq!(mul(a, b).ok(), fits(wa * wb));
    for result in [add(a, b), sub(a, b), mul(a, b)] {
        if let Err(e) = result {
            assert_eq!(e, DomainError::Overflow);
        }
    }
}

/// `round_half_even(amount × bps / 10 000)` computed another way: truncate, then look at twice
/// the remainder.
fn reference_tax(amount: i64, bps: i64) -> i128 {
    let product = i128::from(amount) * i128::from(bps);
    let truncated = product / 10_000;
    let twice_remainder = (product % 10_000).abs() * 2;
    let away = truncated + product.signum();
    if twice_remainder > 10_000 || (twice_remainder == 10_000 && truncated % 2 != 0) {
        away
    } else {
        truncated
    }
}

fn tax(amount: i64, bps: i64) {
    let expected = reference_tax(amount, bps);
    match apply_basis_points(amount, bps) {
        Ok(tax) => {
            assert_eq!(i128::from(tax), expected, "{amount} × {bps} bp");
            let error = i128::from(tax) * 10_000 - i128::from(amount) * i128::from(bps);
            assert!(error.abs() <= 5_000, "{amount} × {bps} bp = {tax}");
            if error.abs() == 5_000 {
                assert_eq!(tax % 2, 0, "a tie not rounded to even: {amount} × {bps} bp");
            }
        }
        Err(e) => {
            assert_eq!(e, DomainError::Overflow);
            assert!(fits(expected).is_none(), "{amount} × {bps} bp fits");
        }
    }
}

fn invoice_input(u: &mut Unstructured) -> Result<InvoiceInput> {
    let lines = match u8::arbitrary(u)? % 16 {
        0 => 0,
        1 => u.int_in_range(99..=101)?,
        _ => u.int_in_range(1..=4)?,
    };
    let mut line_items = Vec::with_capacity(lines);
    for _ in 0..lines {
        let small = u8::arbitrary(u)? % 4 != 0;
        let (quantity, unit_amount) = if small {
            (
                i64::from(u.int_in_range(-1..=50)?),
                i64::from(u.int_in_range(-1..=1_000_000)?),
            )
        } else {
            (amount(u)?, amount(u)?)
        };
        line_items.push(LineItemInput {
            description: if bool::arbitrary(u)? { "Seat" } else { " " }.into(),
            quantity,
            unit_amount,
        });
    }
    let tax_rate_bps = match u8::arbitrary(u)? % 4 {
        0 => None,
        1 | 2 => Some(u.int_in_range(0..=10_000)?),
        _ => Some(amount(u)?),
    };
    Ok(InvoiceInput {
        customer_name: "Jane Doe".into(),
        customer_email: None,
        currency: "EUR".parse().unwrap(),
        due_date: None,
        line_items,
        tax_rate_bps,
        metadata: None,
    })
}

/// Validates the input against exact figures; the total if it is a valid invoice.
fn totals(input: &InvoiceInput) -> Option<i64> {
    let bps = input.tax_rate_bps.unwrap_or(0);
    let mut invalid = Vec::new();
    if input.line_items.is_empty() || input.line_items.len() > 100 {
        invalid.push("lineItems".to_owned());
    }
    if !(0..=10_000).contains(&bps) {
        invalid.push("taxRateBps".to_owned());
    }
    for (i, item) in input.line_items.iter().enumerate() {
        if item.description.trim().is_empty() {
            invalid.push(format!("lineItems[{i}].description"));
        }
        if item.quantity < 1 {
            invalid.push(format!("lineItems[{i}].quantity"));
        }
        if item.unit_amount < 1 {
            invalid.push(format!("lineItems[{i}].unitAmount"));
        }
    }
    // Exact figures; `None` once one does not fit an i64.
    let mut exact = Some((Vec::new(), 0i64));
    for item in &input.line_items {
        exact = exact.and_then(|(mut amounts, subtotal): (Vec<i64>, i64)| {
            let amount = fits(i128::from(item.quantity) * i128::from(item.unit_amount))?;
            amounts.push(amount);
            Some((amounts, fits(i128::from(subtotal) + i128::from(amount))?))
        });
    }
    let exact = exact.and_then(|(amounts, subtotal)| {
        let tax = fits(reference_tax(subtotal, bps))?;
        let total = fits(i128::from(subtotal) + i128::from(tax))?;
        Some((amounts, subtotal, tax, total))
    });
    match input.validate() {
        Ok(details) => {
            assert!(invalid.is_empty(), "accepted with invalid {invalid:?}");
            let (amounts, subtotal, tax, total) = exact.expect("accepted figures that overflow");
            let got: Vec<i64> = details.line_items.iter().map(|l| l.amount).collect();
            assert_eq!(got, amounts);
            assert_eq!(details.subtotal, subtotal);
            assert_eq!(details.tax, tax);
            assert_eq!(details.total, total);
            assert_eq!(details.tax_rate_bps, bps);
            assert!(total >= 1);
            Some(total)
        }
        Err(DomainError::Validation(errors)) => {
            assert!(!invalid.is_empty(), "refused a valid input: {errors:?}");
            let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
            for field in &invalid {
                assert!(
                    fields.contains(&field.as_str()),
                    "{field} not in {fields:?}"
                );
            }
            None
        }
        Err(DomainError::Overflow) => {
            assert!(
                invalid.is_empty(),
                "overflow reported over invalid {invalid:?}"
            );
            assert!(exact.is_none(), "overflow reported for {exact:?}");
            None
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

/// Both aggregates, numbered as their streams would be.
struct Ledger {
    invoice: Invoice,
    payments: Vec<Payment>,
    next_id: u128,
    at: DateTime<Utc>,
}

impl Ledger {
    fn id(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128(self.next_id)
    }

    fn event(&mut self, stream: StreamId, version: u64, data: EventData) -> Event {
        Event {
            id: EventId::from_uuid(self.id()),
            tenant_id: self.invoice.tenant_id,
            stream,
            version,
            invoice_id: Some(self.invoice.id),
            actor: "test".into(),
            occurred_at: self.at,
            gateway_event_id: None,
            data,
        }
    }

    fn apply_invoice(&mut self, data: Vec<EventData>) {
        for data in data {
            let version = self.invoice.version + 1;
            let event = self.event(StreamId::Invoice(self.invoice.id), version, data);
            self.invoice.apply(&event);
        }
    }

    /// A payment's events, as the engine applies them: to the payment, then to its invoice,
    /// followed by what the invoice decides in reaction.
    fn apply_payment(&mut self, index: usize, data: Vec<EventData>) {
        for data in data {
            let payment = &self.payments[index];
            let (id, version) = (payment.id, payment.version + 1);
            let event = self.event(StreamId::Payment(id), version, data);
            self.payments[index].apply(&event);
            let reactions = self.invoice.decide_payment_effect(&event.data);
            self.invoice.apply(&event);
            self.apply_invoice(reactions);
        }
    }

    fn check(&self) {
        self.invoice.check_invariants().unwrap();
        let mut paid = 0i128;
        let mut pending = 0i128;
        let mut refunded = 0i128;
        for payment in &self.payments {
            payment.check_invariants().unwrap();
            match payment.status {
                PaymentStatus::Processing => pending += i128::from(payment.amount),
                PaymentStatus::Failed => {}
                _ => paid += i128::from(payment.amount),
            }
            refunded += i128::from(payment.amount_refunded);
            assert!(payment.amount_refunded <= payment.amount);
        }
        assert_eq!(i128::from(self.invoice.amount_paid), paid);
        assert_eq!(i128::from(self.invoice.amount_pending), pending);
        assert_eq!(i128::from(self.invoice.amount_refunded), refunded);
        assert_eq!(
            self.invoice.status == InvoiceStatus::Paid,
            self.invoice.amount_paid == self.invoice.details.total,
            "{:?} with {} of {} paid",
            self.invoice.status,
            self.invoice.amount_paid,
            self.invoice.details.total
        );
    }
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

fn ledger(u: &mut Unstructured, input: &InvoiceInput, total: i64) -> Result<()> {
    let at = Utc.timestamp_opt(1_795_000_000, 0).unwrap();
    let tenant = TenantId::from_uuid(Uuid::from_u128(1));
    let mut ledger = Ledger {
        invoice: Invoice::blank(tenant, InvoiceId::from_uuid(Uuid::from_u128(2)), at),
        payments: Vec::new(),
        next_id: 2,
        at,
    };
    let created = Invoice::decide_create(1, input, true).unwrap();
    ledger.apply_invoice(created);
    assert_eq!(ledger.invoice.details.total, total);
    assert_eq!(ledger.invoice.status, InvoiceStatus::Open);
    ledger.check();
    for _ in 0..u.int_in_range(0..=24)? {
        step(u, &mut ledger)?;
        ledger.check();
    }
    Ok(())
}

fn requested(u: &mut Unstructured, whole: i64) -> Result<Option<i64>> {
    Ok(match u8::arbitrary(u)? % 5 {
        0 => None,
        1 => Some(whole),
        2 => Some(u.int_in_range(1..=whole.max(1))?),
        3 => Some(whole.saturating_add(i64::from(i8::arbitrary(u)?))),
        _ => Some(amount(u)?),
    })
}

fn step(u: &mut Unstructured, ledger: &mut Ledger) -> Result<()> {
    let pick = |u: &mut Unstructured, n: usize| -> Result<Option<usize>> {
        Ok(if n == 0 {
            None
        } else {
            Some(u.choose_index(n)?)
        })
    };
    match u8::arbitrary(u)? % 7 {
        // A payment attempt reserves (part of) what remains.
        0 | 1 => {
            let remaining = ledger.invoice.amount_remaining();
            let payment_id = PaymentId::from_uuid(ledger.id());
            let amount = requested(u, remaining)?;
            match ledger
                .invoice
                .decide(&InvoiceCommand::Reserve { payment_id, amount })
            {
                Ok(data) => {
                    let reserved = amount.unwrap_or(remaining);
                    assert!((1..=remaining).contains(&reserved));
                    ledger.apply_invoice(data);
                    let mut payment =
                        Payment::blank(ledger.invoice.tenant_id, payment_id, ledger.at);
                    let attempted = EventData::PaymentAttempted {
                        invoice_id: ledger.invoice.id,
                        amount: reserved,
                        currency: ledger.invoice.details.currency,
                        payment_method: card().into(),
                        token: None,
                    };
                    let event = ledger.event(StreamId::Payment(payment_id), 1, attempted);
                    payment.apply(&event);
                    ledger.payments.push(payment);
                }
                Err(_) => {
                    let takes = matches!(
                        ledger.invoice.status,
                        InvoiceStatus::Open | InvoiceStatus::Uncollectible
                    );
                    let reserved = amount.unwrap_or(remaining);
                    assert!(
                        !takes || reserved < 1 || reserved > remaining,
                        "refused {reserved} of {remaining}"
                    );
                }
            }
        }
        // The gateway reports on a payment, perhaps with another amount.
        2 | 3 => {
            let Some(i) = pick(u, ledger.payments.len())? else {
                return Ok(());
            };
            let payment = &ledger.payments[i];
            let amount = match u8::arbitrary(u)? % 3 {
                0 => None,
                1 => Some(payment.amount),
                _ => Some(amount(u)?),
            };
            let outcome = if bool::arbitrary(u)? {
                GatewayOutcome::Succeeded {
                    reference: None,
                    amount,
                    currency: None,
                }
            } else {
                GatewayOutcome::Failed {
                    code: "card_declined".into(),
                    message: String::new(),
                    amount,
                    currency: None,
                }
            };
            match payment.decide_gateway(&outcome) {
                Disposition::Apply(data) => ledger.apply_payment(i, data),
                Disposition::Ignore => assert_ne!(payment.status, PaymentStatus::Processing),
                Disposition::Reject(_) => assert_ne!(amount, Some(payment.amount)),
            }
        }
        // A refund of (part of) a captured payment.
        4 => {
            let Some(i) = pick(u, ledger.payments.len())? else {
                return Ok(());
            };
            let refundable = ledger.payments[i].refundable();
            let amount = requested(u, refundable)?;
            let refund_id = RefundId::from_uuid(ledger.id());
            if let Ok(data) = ledger.payments[i].decide_refund(refund_id, amount, None) {
                let refund = amount.unwrap_or(refundable);
                assert!(
                    (1..=refundable).contains(&refund),
                    "{refund} of {refundable}"
                );
                ledger.apply_payment(i, data);
            }
        }
        // The gateway settles a pending refund.
        5 => {
            let Some(i) = pick(u, ledger.payments.len())? else {
                return Ok(());
            };
            let Some(r) = pick(u, ledger.payments[i].refunds.len())? else {
                return Ok(());
            };
            let refund_id = ledger.payments[i].refunds[r].id;
            let outcome = if bool::arbitrary(u)? {
                GatewayOutcome::RefundSucceeded { refund_id }
            } else {
                GatewayOutcome::RefundFailed {
                    refund_id,
                    code: "refund_failed".into(),
                }
            };
            match ledger.payments[i].decide_gateway(&outcome) {
                Disposition::Apply(data) => ledger.apply_payment(i, data),
                Disposition::Ignore => {}
                Disposition::Reject(why) => panic!("a known refund refused: {why}"),
            }
        }
        // Void or mark uncollectible.
        _ => {
            let command = if bool::arbitrary(u)? {
                InvoiceCommand::Void
            } else {
                InvoiceCommand::MarkUncollectible
            };
            if let Ok(data) = ledger.invoice.decide(&command) {
                ledger.apply_invoice(data);
            }
        }
    }
    Ok(())
}
