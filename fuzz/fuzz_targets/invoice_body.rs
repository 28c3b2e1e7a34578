//! `POST /api/invoices` bodies as the handler reads them: the JSON body type, then the
//! validation and event the engine decides from it.
//!
//! - Any bytes: no panic; a refused body is a 400 (`invalid_json` / `invalid_request`).
//! - A parsed body either becomes `invoice.created` (then `invoice.finalized` if asked), or is
//!   refused with field errors (422), never anything else.
//! - An accepted invoice's figures are exact (checked in `i128`) and within the documented
//!   limits; its event and its state survive the JSON they are stored as; the state built from
//!   the events holds the invoice invariants, and its API view shows the same figures.

#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use payrail::http::invoices::CreateInvoice;
use payrail::http::json_body::parse;
use payrail::http::views;
use payrail_actors::domain::{
    DomainError, Event, EventData, EventId, Invoice, InvoiceId, InvoiceStatus, StreamId, TenantId,
};
use serde_json::Value;
use uuid::Uuid;

const FIELDS: [&str; 6] = [
    "customerName",
    "customerEmail",
    "lineItems",
    "taxRateBps",
    "metadata",
    "lineItems[",
];

fuzz_target!(|data: &[u8]| {
    let body = match parse::<CreateInvoice>(data) {
        Ok(body) => body,
        Err(e) => {
            let (status, code, _) = e.parts();
            assert_eq!(status.as_u16(), 400, "{code}");
            assert!(matches!(code, "invalid_json" | "invalid_request"), "{code}");
            return;
        }
    };
    let (input, finalize) = body.into_input();
    let decided = Invoice::decide_create(7, &input, finalize);
    let events = match decided {
        Ok(events) => events,
        Err(DomainError::Validation(errors)) => {
            assert!(!errors.is_empty());
            for error in &errors {
                assert!(
                    FIELDS.iter().any(|f| error.field.starts_with(f)),
                    "unknown field {}",
                    error.field
                );
            }
            return;
        }
        Err(DomainError::Overflow) => {
            let exact: i128 = input
                .line_items
                .iter()
                .map(|l| i128::from(l.quantity) * i128::from(l.unit_amount))
                .fold(0, i128::saturating_add);
            // The subtotal or, with tax, the total exceeds i64 (a line alone may too).
            let with_tax =
                exact.saturating_mul(10_000 + i128::from(input.tax_rate_bps.unwrap_or(0)));
            assert!(with_tax > i128::from(i64::MAX) * 10_000 - 5_000, "{exact}");
            return;
        }
        Err(other) => panic!("unexpected refusal {other:?}"),
    };
    assert_eq!(events.len(), 1 + usize::from(finalize));
    let EventData::InvoiceCreated { number, details } = &events[0] else {
        panic!("first event {:?}", events[0]);
    };
    assert_eq!(number, "INV-000007");
    let lines = &details.line_items;
    assert!((1..=100).contains(&lines.len()));
    assert_eq!(lines.len(), input.line_items.len());
    let mut subtotal = 0i128;
    for (line, given) in lines.iter().zip(&input.line_items) {
        assert!(line.quantity >= 1 && line.unit_amount >= 1);
        assert_eq!(
            i128::from(line.amount),
            i128::from(given.quantity) * i128::from(given.unit_amount)
        );
        assert_eq!(line.description, given.description.trim());
        assert!(!line.description.is_empty() && line.description.chars().count() <= 500);
        subtotal += i128::from(line.amount);
    }
    assert_eq!(i128::from(details.subtotal), subtotal);
    assert!((0..=10_000).contains(&details.tax_rate_bps));
    let tax_error = i128::from(details.tax) * 10_000 - subtotal * i128::from(details.tax_rate_bps);
    assert!(tax_error.abs() <= 5_000);
    assert_eq!(details.total, details.subtotal + details.tax);
    let name = details.customer_name.as_str();
    assert!(!name.is_empty() && name == name.trim() && name.chars().count() <= 200);
    assert!(details.metadata.len() <= 50);

    // Stored as JSON, read back the same.
    for event in &events {
        let json = serde_json::to_value(event).unwrap();
        let back: EventData = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{json} does not read back: {e}"));
        assert_eq!(&back, event);
    }

    // The state the events make.
    let at = Utc.timestamp_opt(1_795_000_000, 0).unwrap();
    let id = InvoiceId::from_uuid(Uuid::from_u128(2));
    let tenant = TenantId::from_uuid(Uuid::from_u128(1));
    let mut invoice = Invoice::blank(tenant, id, at);
    for (i, data) in events.into_iter().enumerate() {
        invoice.apply(&Event {
            id: EventId::from_uuid(Uuid::from_u128(10 + i as u128)),
            tenant_id: tenant,
            stream: StreamId::Invoice(id),
            version: i as u64 + 1,
            invoice_id: Some(id),
            actor: "key_test".into(),
            occurred_at: at,
            gateway_event_id: None,
            data,
        });
    }
    invoice.check_invariants().unwrap();
    let expected_status = if finalize {
        InvoiceStatus::Open
    } else {
        InvoiceStatus::Draft
    };
    assert_eq!(invoice.status, expected_status);
    assert_eq!(invoice.amount_remaining(), invoice.details.total);
    let snapshot = serde_json::to_string(&invoice.snapshot()).unwrap();
    let restored: Invoice = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(restored, invoice.snapshot());

    let view: Value = serde_json::from_str(&views::to_json(&views::invoice(&invoice))).unwrap();
    assert_eq!(
        view["total"].as_i64(),
        Some(invoice.details.total),
        "{view}"
    );
    assert_eq!(view["subtotal"].as_i64(), Some(invoice.details.subtotal));
    assert_eq!(view["tax"].as_i64(), Some(invoice.details.tax));
    assert_eq!(view["id"].as_str(), Some(id.to_string().as_str()));
});
