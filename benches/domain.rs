//! The pure domain's hot paths, without actors or storage: deciding and applying invoice and
//! payment changes, and the event JSON round trip every stored event goes through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/summary.rs"]
mod summary;

use chrono::Utc;
use criterion::{Criterion, Throughput};
use payrail_actors::domain::{
    CardSummary, Event, EventData, EventId, GatewayOutcome, Invoice, InvoiceCommand, InvoiceId,
    InvoiceInput, Payment, PaymentId, StreamId, TenantId,
};
use payrail_actors::domain::{Disposition, PaymentStatus};

/// Line items on the benchmark invoice: a typical subscription invoice, not the 100 maximum.
const LINE_ITEMS: usize = 3;

fn invoice_input() -> InvoiceInput {
    let items: Vec<_> = (0..LINE_ITEMS)
        .map(|i| serde_json::json!({"description": format!("Seat {i}"), "quantity": 2, "unitAmount": 1_650}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "customerName": "Jane Doe",
        "customerEmail": "jane@example.com",
        "currency": "USD",
        "dueDate": "2026-12-31",
        "lineItems": items,
        "taxRateBps": 825,
        "metadata": {"order": "A-1042"},
    }))
    .unwrap()
}

/// Wraps `data` as the next event of `stream`, as the entity actors do before committing.
fn event(tenant: TenantId, stream: StreamId, version: u64, data: EventData) -> Event {
    let invoice_id = match stream {
        StreamId::Invoice(id) => Some(id),
        _ => None,
    };
    Event {
        id: EventId::new(),
        tenant_id: tenant,
        stream,
        version,
        invoice_id,
        actor: "key_bench".into(),
        occurred_at: Utc::now(),
        gateway_event_id: None,
        data,
    }
}

/// Decides `invoice.created` + `invoice.finalized` and applies them to a blank invoice.
fn create_invoice(tenant: TenantId, input: &InvoiceInput) -> Invoice {
    let id = InvoiceId::new();
    let mut invoice = Invoice::blank(tenant, id, Utc::now());
    let events = Invoice::decide_create(1, input, true).unwrap();
    for data in events {
        let next = event(tenant, StreamId::Invoice(id), invoice.version + 1, data);
        invoice.apply(&next);
    }
    invoice
}

/// A payment of `invoice` in `processing` with a gateway reference: waiting for its outcome.
fn processing_payment(invoice: &Invoice) -> Payment {
    let id = PaymentId::new();
    let stream = StreamId::Payment(id);
    let mut payment = Payment::blank(invoice.tenant_id, id, Utc::now());
    let attempted = EventData::PaymentAttempted {
        invoice_id: invoice.id,
        amount: invoice.details.total,
        currency: invoice.details.currency,
        payment_method: CardSummary {
            kind: "card".into(),
            brand: "visa".into(),
            last4: "4242".into(),
            exp_month: 12,
            exp_year: 2040,
            fingerprint: "fp_0123456789abcdef".into(),
        }
        .into(),
        token: None,
    };
    let processing = EventData::PaymentProcessing {
        gateway_reference: format!("ch_{id}"),
    };
    for data in [attempted, processing] {
        payment.apply(&event(invoice.tenant_id, stream, payment.version + 1, data));
    }
    payment
}

fn bench_invoice(c: &mut Criterion) {
    let tenant = TenantId::new();
    let input = invoice_input();
    let open = create_invoice(tenant, &input);
    let mut group = c.benchmark_group("invoice");
    group.throughput(Throughput::Elements(1));
    summary::bench(&mut group, "invoice", "decide_create+apply", || {
        create_invoice(tenant, &input)
    });
    summary::bench_batched(
        &mut group,
        "invoice",
        "decide_reserve+apply",
        || (open.clone(), PaymentId::new()),
        |(mut invoice, payment_id)| {
            let command = InvoiceCommand::Reserve {
                payment_id,
                amount: None,
            };
            for data in invoice.decide(&command).unwrap() {
                let next = event(
                    tenant,
                    StreamId::Invoice(invoice.id),
                    invoice.version + 1,
                    data,
                );
                invoice.apply(&next);
            }
            invoice
        },
    );
    group.finish();
}

fn bench_payment(c: &mut Criterion) {
    let invoice = create_invoice(TenantId::new(), &invoice_input());
    let processing = processing_payment(&invoice);
    let outcome = GatewayOutcome::Succeeded {
        reference: processing.gateway_reference.clone(),
        amount: Some(processing.amount),
        currency: Some(processing.currency),
    };
    let mut group = c.benchmark_group("payment");
    group.throughput(Throughput::Elements(1));
    summary::bench_batched(
        &mut group,
        "payment",
        "decide_gateway_succeeded+apply",
        || processing.clone(),
        |mut payment| {
            let Disposition::Apply(events) = payment.decide_gateway(&outcome) else {
                unreachable!("a processing payment applies its success");
            };
            for data in events {
                let mut next = event(
                    payment.tenant_id,
                    StreamId::Payment(payment.id),
                    payment.version + 1,
                    data,
                );
                next.gateway_event_id = Some("evt_gw_bench".into());
                payment.apply(&next);
            }
            debug_assert_eq!(payment.status, PaymentStatus::Succeeded);
            payment
        },
    );
    group.finish();
}

/// `data_json` → stored text → parsed → `from_parts`: what writing and reading one event costs.
fn round_trip(data: &EventData) -> EventData {
    let text = data.data_json().unwrap().to_string();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    EventData::from_parts(data.event_type(), value).unwrap()
}

fn bench_event_json(c: &mut Criterion) {
    let input = invoice_input();
    let created = Invoice::decide_create(1, &input, false).unwrap().remove(0);
    let succeeded = EventData::PaymentSucceeded {
        amount: 7_145,
        gateway_reference: Some(format!("ch_{}", PaymentId::new())),
    };
    let mut group = c.benchmark_group("event_json");
    group.throughput(Throughput::Elements(1));
    for data in [&succeeded, &created] {
        assert_eq!(&round_trip(data), data);
        summary::bench(&mut group, "event_json", data.event_type(), || {
            round_trip(data)
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_invoice(&mut criterion);
    bench_payment(&mut criterion);
    bench_event_json(&mut criterion);
    criterion.final_summary();
    summary::print("domain");
}
