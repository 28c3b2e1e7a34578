//! The history checker: what must hold of one tenant's durable log and projections once the
//! engine is quiet, whatever failed on the way.

use std::collections::{BTreeMap, HashMap};

use payrail_actors::domain::{
    Event, EventData, Invoice, InvoiceId, Payment, PaymentId, PaymentStatus, StreamId, TenantId,
};

/// One tenant's durable state, read at once: its log in commit order and its projections
/// (invoices with the reservations storage rebuilds from payments still in flight).
#[derive(Debug, Clone, Default)]
pub struct View {
    pub events: Vec<Event>,
    pub invoices: HashMap<InvoiceId, Invoice>,
    pub payments: HashMap<PaymentId, Payment>,
}

fn captured(status: PaymentStatus) -> bool {
    matches!(
        status,
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
    )
}

/// Contiguous versions per stream, each gateway event applied at most once, projections equal
/// to a replay of the log, the domain invariants, and `invoice.paid` backed by its total.
pub fn check_log(tenant: TenantId, view: &View) {
    let events = &view.events;
    assert!(
        events.iter().all(|e| e.tenant_id == tenant),
        "foreign event"
    );
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let mut gateway_ids: HashMap<&str, usize> = HashMap::new();
    for event in events {
        let last = versions.entry(event.stream).or_insert(0);
        assert_eq!(event.version, *last + 1, "non-contiguous {}", event.stream);
        *last = event.version;
        if let Some(id) = &event.gateway_event_id {
            *gateway_ids.entry(id).or_default() += 1;
        }
    }
    for (id, count) in gateway_ids {
        assert_eq!(count, 1, "gateway event {id} applied {count} times");
    }
    let Some(first) = events.first() else { return };
    for stream in versions.keys() {
        match stream {
            StreamId::Invoice(id) => {
                let mut replayed = Invoice::blank(tenant, *id, first.occurred_at);
                events
                    .iter()
                    .filter(|e| e.invoice_id == Some(*id))
                    .for_each(|e| replayed.apply(e));
                let stored = view.invoices.get(id).cloned().expect("invoice projection");
                replayed.created_at = stored.created_at;
                assert_eq!(replayed, stored, "invoice projection differs from replay");
                stored.check_invariants().unwrap();
            }
            StreamId::Payment(id) => {
                let mut replayed = Payment::blank(tenant, *id, first.occurred_at);
                events
                    .iter()
                    .filter(|e| e.stream == *stream)
                    .for_each(|e| replayed.apply(e));
                let stored = view.payments.get(id).cloned().expect("payment projection");
                assert_eq!(replayed, stored, "payment projection differs from replay");
                stored.check_invariants().unwrap();
            }
            StreamId::ApiKey(_) => {}
        }
    }
    for event in events {
        if let (EventData::InvoicePaid { amount_paid }, StreamId::Invoice(id)) =
            (&event.data, event.stream)
        {
            assert_eq!(*amount_paid, view.invoices[&id].details.total);
        }
    }
}

/// Across entities: each invoice's money equals what its payments say, no payment moved
/// money without its reservation on the invoice, and nothing was collected beyond the total.
pub fn check_money(view: &View) {
    // Where in the log each payment's reservation was recorded, and for how much.
    let mut reservations: HashMap<PaymentId, Vec<(usize, InvoiceId, i64)>> = HashMap::new();
    for (at, event) in view.events.iter().enumerate() {
        if let (EventData::InvoicePaymentPending { payment_id, amount }, StreamId::Invoice(inv)) =
            (&event.data, event.stream)
        {
            reservations
                .entry(*payment_id)
                .or_default()
                .push((at, inv, *amount));
        }
    }
    for (at, event) in view.events.iter().enumerate() {
        let StreamId::Payment(payment) = event.stream else {
            continue;
        };
        let amount = match &event.data {
            EventData::PaymentAttempted { amount, .. } => *amount,
            EventData::PaymentSucceeded { amount, .. } => *amount,
            _ => continue,
        };
        let held = reservations.get(&payment).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(
            held.len(),
            1,
            "payment {payment}: {} reservations",
            held.len()
        );
        let (reserved_at, invoice, reserved) = held[0];
        assert!(
            reserved_at <= at,
            "{} of {payment} before its reservation",
            event.event_type()
        );
        assert_eq!(
            reserved, amount,
            "{payment} moved other money than it reserved"
        );
        assert_eq!(
            event.invoice_id,
            Some(invoice),
            "{payment} on another invoice"
        );
    }
    for payment in view.payments.values() {
        assert!(
            view.invoices.contains_key(&payment.invoice_id),
            "payment {} on an invoice of another tenant",
            payment.id
        );
    }
    for (id, invoice) in &view.invoices {
        let payments: Vec<&Payment> = view
            .payments
            .values()
            .filter(|p| p.invoice_id == *id)
            .collect();
        let paid: i64 = payments
            .iter()
            .filter(|p| captured(p.status))
            .map(|p| p.amount)
            .sum();
        let refunded: i64 = payments.iter().map(|p| p.amount_refunded).sum();
        let in_flight: BTreeMap<PaymentId, i64> = payments
            .iter()
            .filter(|p| p.status == PaymentStatus::Processing)
            .map(|p| (p.id, p.amount))
            .collect();
        let context = format!("invoice {id}: {invoice:?} with {payments:?}");
        assert_eq!(
            paid - refunded,
            invoice.amount_paid - invoice.amount_refunded,
            "succeeded payments minus refunds differ from amount_paid − amount_refunded; {context}"
        );
        assert_eq!(paid, invoice.amount_paid, "amount_paid; {context}");
        assert_eq!(
            refunded, invoice.amount_refunded,
            "amount_refunded; {context}"
        );
        assert_eq!(
            in_flight.values().sum::<i64>(),
            invoice.amount_pending,
            "amount_pending differs from payments processing; {context}"
        );
        let reserved: BTreeMap<PaymentId, i64> =
            invoice.reservations.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(in_flight, reserved, "reservations; {context}");
        assert!(
            invoice.amount_paid + invoice.amount_pending <= invoice.details.total,
            "collected beyond the total; {context}"
        );
    }
}
