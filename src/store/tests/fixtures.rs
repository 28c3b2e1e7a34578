//! Builders of events, units and entities for the store tests, using the domain's own
//! `decide`/`apply` so snapshots are exactly what the actors would write.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use payrail_actors::domain::card::CardSummary;
use payrail_actors::domain::invoice::LineItemInput;
use payrail_actors::domain::{
    Currency, Event, EventData, EventId, Invoice, InvoiceId, InvoiceInput, Payment, PaymentId,
    StreamId, TenantId,
};
use payrail_actors::ports::{EventStore, IdempotencyRecord, Snapshot, StreamAppend, Unit};

use crate::store::stmt::{Bind, Stmt};
use crate::store::Db;

/// A fixed instant with whole microseconds (what both SQL backends keep).
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

pub fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

pub fn event(
    tenant: TenantId,
    stream: StreamId,
    version: u64,
    invoice_id: Option<InvoiceId>,
    data: EventData,
    occurred_at: DateTime<Utc>,
) -> Event {
    Event {
        id: EventId::new(),
        tenant_id: tenant,
        stream,
        version,
        invoice_id,
        actor: "key_test".into(),
        occurred_at,
        gateway_event_id: None,
        data,
    }
}

pub struct InvoiceSpec<'a> {
    pub number: u64,
    pub customer: &'a str,
    pub email: Option<&'a str>,
    pub currency: &'a str,
    pub amount: i64,
    pub due: Option<NaiveDate>,
    pub finalize: bool,
    pub at: DateTime<Utc>,
}

impl Default for InvoiceSpec<'_> {
    fn default() -> Self {
        Self {
            number: 1,
            customer: "Jane Doe",
            email: Some("jane@example.com"),
            currency: "USD",
            amount: 1000,
            due: None,
            finalize: true,
            at: t0(),
        }
    }
}

/// A default invoice of `tenant` taking invoice number `number`.
pub fn numbered_invoice(tenant: TenantId, number: u64) -> (Invoice, Unit) {
    create_invoice(
        tenant,
        &InvoiceSpec {
            number,
            ..InvoiceSpec::default()
        },
    )
}

/// A new invoice: its events applied to a blank state, and the unit that stores both.
pub fn create_invoice(tenant: TenantId, spec: &InvoiceSpec<'_>) -> (Invoice, Unit) {
    let id = InvoiceId::new();
    let input = InvoiceInput {
        customer_name: spec.customer.into(),
        customer_email: spec.email.map(Into::into),
        currency: spec.currency.parse().unwrap_or(Currency::XXX),
        due_date: spec.due,
        line_items: vec![LineItemInput {
            description: "Seat".into(),
            quantity: 1,
            unit_amount: spec.amount,
        }],
        tax_rate_bps: None,
        metadata: None,
    };
    let datas = Invoice::decide_create(spec.number, &input, spec.finalize).unwrap();
    let mut invoice = Invoice::blank(tenant, id, spec.at);
    let events = to_events(tenant, StreamId::Invoice(id), 0, Some(id), datas, spec.at);
    for e in &events {
        invoice.apply(e);
    }
    let mut unit = Unit::new(tenant);
    unit.streams.push(StreamAppend {
        stream: StreamId::Invoice(id),
        expected_version: 0,
        events,
    });
    unit.snapshots
        .push(Snapshot::Invoice(Box::new(invoice.clone())));
    (invoice, unit)
}

pub fn to_events(
    tenant: TenantId,
    stream: StreamId,
    from_version: u64,
    invoice_id: Option<InvoiceId>,
    datas: Vec<EventData>,
    at: DateTime<Utc>,
) -> Vec<Event> {
    datas
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            event(
                tenant,
                stream,
                from_version + 1 + i as u64,
                invoice_id,
                d,
                at,
            )
        })
        .collect()
}

/// Applies `datas` to the invoice as one unit (events + new snapshot).
pub fn invoice_change(invoice: &mut Invoice, datas: Vec<EventData>, at: DateTime<Utc>) -> Unit {
    let stream = StreamId::Invoice(invoice.id);
    let events = to_events(
        invoice.tenant_id,
        stream,
        invoice.version,
        Some(invoice.id),
        datas,
        at,
    );
    let expected = invoice.version;
    for e in &events {
        invoice.apply(e);
    }
    let mut unit = Unit::new(invoice.tenant_id);
    unit.streams.push(StreamAppend {
        stream,
        expected_version: expected,
        events,
    });
    unit.snapshots
        .push(Snapshot::Invoice(Box::new(invoice.clone())));
    unit
}

pub fn card() -> CardSummary {
    CardSummary {
        kind: "card".into(),
        brand: "visa".into(),
        last4: "4242".into(),
        exp_month: 12,
        exp_year: 2030,
        fingerprint: "fp".into(),
    }
}

/// A payment attempt on `invoice`: the payment's `payment.attempted` plus the invoice's
/// reservation, in one unit (as the invoice actor commits it).
pub fn attempt_payment(invoice: &mut Invoice, amount: i64, at: DateTime<Utc>) -> (Payment, Unit) {
    let tenant = invoice.tenant_id;
    let id = PaymentId::new();
    let mut payment = Payment::blank(tenant, id, at);
    let pay_events = to_events(
        tenant,
        StreamId::Payment(id),
        0,
        Some(invoice.id),
        vec![EventData::PaymentAttempted {
            invoice_id: invoice.id,
            amount,
            currency: invoice.details.currency,
            payment_method: card().into(),
            token: None,
        }],
        at,
    );
    for e in &pay_events {
        payment.apply(e);
    }
    let mut unit = invoice_change(
        invoice,
        vec![EventData::InvoicePaymentPending {
            payment_id: id,
            amount,
        }],
        at,
    );
    unit.streams.push(StreamAppend {
        stream: StreamId::Payment(id),
        expected_version: 0,
        events: pay_events,
    });
    unit.snapshots
        .push(Snapshot::Payment(std::sync::Arc::new(payment.clone())));
    (payment, unit)
}

/// Payment events (applied to the payment, and to the invoice for money moves) as one unit.
pub fn payment_change(
    payment: &mut Payment,
    invoice: Option<&mut Invoice>,
    datas: Vec<EventData>,
    gateway_event: Option<&str>,
    at: DateTime<Utc>,
) -> Unit {
    let stream = StreamId::Payment(payment.id);
    let mut events = to_events(
        payment.tenant_id,
        stream,
        payment.version,
        Some(payment.invoice_id),
        datas,
        at,
    );
    for e in &mut events {
        e.gateway_event_id = gateway_event.map(Into::into);
    }
    let expected = payment.version;
    for e in &events {
        payment.apply(e);
    }
    let mut unit = Unit::new(payment.tenant_id);
    if let Some(invoice) = invoice {
        for e in &events {
            invoice.apply(e);
        }
        unit.snapshots
            .push(Snapshot::Invoice(Box::new(invoice.clone())));
    }
    unit.streams.push(StreamAppend {
        stream,
        expected_version: expected,
        events,
    });
    unit.snapshots
        .push(Snapshot::Payment(std::sync::Arc::new(payment.clone())));
    unit
}

pub fn idempotency(key: &str, at: DateTime<Utc>) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.into(),
        fingerprint: format!("fp-{key}"),
        status: 201,
        body: "{\"ok\":true}".into(),
        created_at: at,
    }
}

/// Commits the units as one batch and asserts every one of them passed.
pub async fn commit(db: &Db, units: Vec<Unit>) {
    let n = units.len();
    assert_eq!(db.append_batch(units).await, vec![Ok(()); n]);
}

/// The gateway accepting the payment's charge (`payment.processing`, reference `ch_1`),
/// reported by gateway event `gw_1`.
pub fn charge_accepted(payment: &mut Payment, at: DateTime<Utc>) -> Unit {
    payment_change(
        payment,
        None,
        vec![EventData::PaymentProcessing {
            gateway_reference: "ch_1".into(),
        }],
        Some("gw_1"),
        at,
    )
}

/// Deletes a payment's projection row behind the store's back, as another session might: the
/// next batch that updates it touches no row.
pub async fn delete_payment_row(db: &Db, tenant: TenantId, payment: PaymentId) {
    db.transact(vec![Stmt::new(
        "DELETE FROM payments WHERE tenant_id = ? AND id = ?",
        vec![
            Bind::Text(tenant.to_string()),
            Bind::Text(payment.to_string()),
        ],
    )])
    .await
    .unwrap();
}
