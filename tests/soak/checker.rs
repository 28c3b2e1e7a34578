//! The history checker: judges the recorded writes and the gateway's ledger against the final
//! state. Every acknowledged write is reflected; nothing is applied or charged twice; no
//! invoice collects more than its total or keeps a reservation; payments, refunds and invoices
//! agree; projections equal a replay of the timeline; sequences and invoice numbers have no gap.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::history::{Entry, Kind, REQUEST_TIMEOUT};
use crate::state::TenantState;

/// What the gateway received: per payment (or refund) id, idempotency key → requests.
pub type Received = HashMap<String, HashMap<String, u32>>;

pub struct Checker<'a> {
    pub violations: Vec<String>,
    charges: &'a Received,
    refunds: &'a Received,
    creations: &'a dyn Fn(&str) -> u32,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

const COLLECTED: [&str; 3] = ["succeeded", "partially_refunded", "refunded"];

/// A payment as its events say it is.
#[derive(Default, Debug)]
struct ReplayedPayment {
    amount: i64,
    status: String,
    refunded: i64,
    counts: HashMap<String, usize>,
}

/// An invoice and its payments as the timeline says they are.
#[derive(Default, Debug)]
struct Replayed {
    status: String,
    paid: i64,
    pending: i64,
    refunded: i64,
    reservations: HashMap<String, i64>,
    payments: HashMap<String, ReplayedPayment>,
    refunds_created: HashMap<String, i64>,
    refund_outcomes: HashMap<String, usize>,
}

fn replay(timeline: &[Value], refund_owners: &HashMap<String, String>) -> Replayed {
    let mut r = Replayed::default();
    for e in timeline {
        let kind = s(&e["eventType"]);
        let data = &e["data"];
        let subject = s(&e["subjectId"]);
        let payment = if subject.starts_with("pay_") {
            subject.clone()
        } else if let Some(owner) = refund_owners.get(&s(&data["refundId"])) {
            owner.clone()
        } else {
            s(&data["paymentId"])
        };
        if kind.starts_with("payment.") || kind.starts_with("refund.") {
            *r.payments
                .entry(payment.clone())
                .or_default()
                .counts
                .entry(kind.clone())
                .or_default() += 1;
        }
        match kind.as_str() {
            "invoice.created" => r.status = "draft".into(),
            "invoice.finalized" => r.status = "open".into(),
            "invoice.paid" => r.status = "paid".into(),
            "invoice.voided" => r.status = "void".into(),
            "invoice.marked_uncollectible" => r.status = "uncollectible".into(),
            "invoice.payment_pending" => {
                r.reservations
                    .insert(s(&data["paymentId"]), i(&data["amount"]));
                r.pending += i(&data["amount"]);
            }
            "payment.attempted" => {
                let p = r.payments.entry(payment).or_default();
                p.amount = i(&data["amount"]);
                p.status = "processing".into();
            }
            "payment.succeeded" | "payment.failed" => {
                let succeeded = kind == "payment.succeeded";
                if let Some(amount) = r.reservations.remove(&payment) {
                    r.pending -= amount;
                    if succeeded {
                        r.paid += amount;
                    }
                }
                let p = r.payments.entry(payment).or_default();
                if p.status == "processing" {
                    p.status = if succeeded { "succeeded" } else { "failed" }.into();
                }
            }
            "refund.created" => {
                r.refunds_created
                    .insert(s(&data["refundId"]), i(&data["amount"]));
            }
            "refund.succeeded" | "refund.failed" => {
                *r.refund_outcomes.entry(s(&data["refundId"])).or_default() += 1;
                if kind == "refund.succeeded" {
                    r.refunded += i(&data["amount"]);
                    let p = r.payments.entry(payment).or_default();
                    p.refunded += i(&data["amount"]);
                    p.status = if p.refunded >= p.amount {
                        "refunded"
                    } else {
                        "partially_refunded"
                    }
                    .into();
                }
            }
            _ => {}
        }
    }
    r
}

impl<'a> Checker<'a> {
    pub fn new(
        charges: &'a Received,
        refunds: &'a Received,
        creations: &'a dyn Fn(&str) -> u32,
    ) -> Self {
        Checker {
            violations: Vec::new(),
            charges,
            refunds,
            creations,
        }
    }

    fn fail(&mut self, tenant: usize, what: String) {
        self.violations.push(format!("tenant {tenant}: {what}"));
    }

    /// Every check on one tenant: its writes (`entries`) against its final `state`.
    pub fn tenant(&mut self, tenant: usize, entries: &[&Entry], state: &TenantState) {
        self.history(tenant, entries, state);
        self.numbers(tenant, state);
        let payments: HashMap<String, &Value> =
            state.payments.iter().map(|p| (s(&p["id"]), p)).collect();
        for invoice in &state.invoices {
            self.invoice(tenant, invoice, &payments, state);
        }
        for payment in &state.payments {
            self.charged_once(tenant, payment);
        }
    }

    fn history(&mut self, tenant: usize, entries: &[&Entry], state: &TenantState) {
        let invoices: HashMap<String, &Value> =
            state.invoices.iter().map(|v| (s(&v["id"]), v)).collect();
        let payments: HashMap<String, &Value> =
            state.payments.iter().map(|v| (s(&v["id"]), v)).collect();
        let refunds: HashSet<String> = state
            .timelines
            .values()
            .flatten()
            .filter(|e| e["eventType"] == "refund.created")
            .map(|e| s(&e["data"]["refundId"]))
            .collect();
        let mut markers: HashMap<String, usize> = HashMap::new();
        for invoice in &state.invoices {
            *markers.entry(s(&invoice["customerName"])).or_default() += 1;
        }
        let attempted: HashSet<&str> = entries
            .iter()
            .filter(|e| e.op.kind == Kind::CreateInvoice)
            .map(|e| e.op.key.as_str())
            .collect();
        for (marker, count) in &markers {
            if *count > 1 {
                self.fail(
                    tenant,
                    format!("invoice write {marker} applied {count} times"),
                );
            }
            if !attempted.contains(marker.as_str()) {
                self.fail(tenant, format!("invoice {marker} was never written"));
            }
        }
        // Writes with no acknowledgement, per invoice (payments) and per payment (refunds):
        // each may have been applied once, no more.
        let mut pay_keys: HashMap<String, usize> = HashMap::new();
        let mut refund_keys: HashMap<String, usize> = HashMap::new();
        let acked_ids: HashSet<String> = entries
            .iter()
            .filter_map(|e| e.acked.as_ref().map(|b| s(&b["id"])))
            .collect();
        for entry in entries {
            if let (Some(invoice), None) = (&entry.op.invoice, &entry.acked) {
                if entry.op.kind == Kind::Pay {
                    *pay_keys.entry(invoice.clone()).or_default() += 1;
                }
            }
            if let (Some(payment), None) = (&entry.op.payment, &entry.acked) {
                *refund_keys.entry(payment.clone()).or_default() += 1;
            }
            for attempt in &entry.attempts {
                if attempt.status.is_none() && attempt.elapsed >= REQUEST_TIMEOUT {
                    self.fail(
                        tenant,
                        format!(
                            "{} hung past {REQUEST_TIMEOUT:?} without an answer",
                            entry.op.key
                        ),
                    );
                }
                let status = attempt.status.unwrap_or(0);
                if status >= 500 && status != 503 {
                    self.fail(
                        tenant,
                        format!("{} answered {status} ({:?})", entry.op.key, attempt.code),
                    );
                }
                if attempt.code.as_deref() == Some("idempotency_key_reused") {
                    self.fail(
                        tenant,
                        format!("{}: same key and body refused as reused", entry.op.key),
                    );
                }
            }
            let Some(body) = &entry.acked else { continue };
            let id = s(&body["id"]);
            let key = &entry.op.key;
            match entry.op.kind {
                Kind::CreateInvoice => match invoices.get(&id) {
                    Some(found) if found["customerName"] == Value::String(key.clone()) => {}
                    Some(_) => self.fail(
                        tenant,
                        format!("acknowledged invoice {id} ({key}) changed hands"),
                    ),
                    None => self.fail(tenant, format!("acknowledged invoice {id} ({key}) lost")),
                },
                Kind::Pay => match payments.get(&id) {
                    Some(found) => {
                        let body_amount = &entry
                            .op
                            .body
                            .as_ref()
                            .map_or(Value::Null, |b| b["amount"].clone());
                        if found["invoiceId"] != body["invoiceId"]
                            || (!body_amount.is_null() && found["amount"] != *body_amount)
                        {
                            self.fail(
                                tenant,
                                format!("acknowledged payment {id} ({key}) differs: {found}"),
                            );
                        }
                    }
                    None => self.fail(tenant, format!("acknowledged payment {id} ({key}) lost")),
                },
                Kind::Refund => {
                    if !refunds.contains(&id) {
                        self.fail(tenant, format!("acknowledged refund {id} ({key}) lost"));
                    }
                }
                Kind::Void => {
                    let invoice = entry.op.invoice.clone().unwrap_or_default();
                    if invoices.get(&invoice).map(|v| s(&v["status"])) != Some("void".into()) {
                        self.fail(
                            tenant,
                            format!("acknowledged void of {invoice} ({key}) not reflected"),
                        );
                    }
                }
            }
        }
        let mut per_invoice: HashMap<String, usize> = HashMap::new();
        for payment in &state.payments {
            if !acked_ids.contains(&s(&payment["id"])) {
                *per_invoice.entry(s(&payment["invoiceId"])).or_default() += 1;
            }
        }
        for (invoice, count) in per_invoice {
            let keys = pay_keys.get(&invoice).copied().unwrap_or(0);
            if count > keys {
                self.fail(
                    tenant,
                    format!("invoice {invoice} has {count} unacknowledged payments from {keys} unacknowledged writes"),
                );
            }
        }
        let mut per_payment: HashMap<String, usize> = HashMap::new();
        for e in state.timelines.values().flatten() {
            if e["eventType"] == "refund.created" {
                let refund = s(&e["data"]["refundId"]);
                if !acked_ids.contains(&refund) {
                    let owner = state.refund_owners.get(&refund).cloned().unwrap_or(refund);
                    *per_payment.entry(owner).or_default() += 1;
                }
            }
        }
        for (payment, count) in per_payment {
            let keys = refund_keys.get(&payment).copied().unwrap_or(0);
            if count > keys {
                self.fail(
                    tenant,
                    format!("payment {payment} has {count} unacknowledged refunds from {keys} unacknowledged writes"),
                );
            }
        }
    }

    /// Sequences 1..=n in the tenant's log; invoice numbers INV-000001..=n.
    fn numbers(&mut self, tenant: usize, state: &TenantState) {
        let sequences: Vec<i64> = state.events.iter().map(|e| i(&e["sequence"])).collect();
        if let Some(at) = sequences
            .iter()
            .enumerate()
            .position(|(n, seq)| *seq != n as i64 + 1)
        {
            self.fail(
                tenant,
                format!(
                    "event sequence has a gap: position {} holds {}",
                    at + 1,
                    sequences[at]
                ),
            );
        }
        let mut numbers: Vec<String> = state.invoices.iter().map(|v| s(&v["number"])).collect();
        numbers.sort();
        for (n, number) in numbers.iter().enumerate() {
            if *number != format!("INV-{:06}", n + 1) {
                self.fail(
                    tenant,
                    format!("invoice numbers have a gap: {number} at position {}", n + 1),
                );
                break;
            }
        }
    }

    fn invoice(
        &mut self,
        tenant: usize,
        invoice: &Value,
        payments: &HashMap<String, &Value>,
        state: &TenantState,
    ) {
        let id = s(&invoice["id"]);
        let (total, paid, pending, refunded) = (
            i(&invoice["total"]),
            i(&invoice["amountPaid"]),
            i(&invoice["amountPending"]),
            i(&invoice["amountRefunded"]),
        );
        if paid + pending > total {
            self.fail(
                tenant,
                format!("{id} over-collected: paid {paid} + pending {pending} > total {total}"),
            );
        }
        if pending != 0 {
            self.fail(
                tenant,
                format!("{id} keeps a reservation of {pending} once settled"),
            );
        }
        if invoice["status"] == "paid" && paid != total {
            self.fail(tenant, format!("{id} paid with {paid} of {total}"));
        }
        let own: Vec<&&Value> = payments
            .values()
            .filter(|p| p["invoiceId"] == invoice["id"])
            .collect();
        let succeeded: i64 = own
            .iter()
            .filter(|p| COLLECTED.contains(&p["status"].as_str().unwrap_or("")))
            .map(|p| i(&p["amount"]))
            .sum();
        let refunds: i64 = own.iter().map(|p| i(&p["amountRefunded"])).sum();
        if succeeded - refunds != paid - refunded || succeeded != paid {
            self.fail(tenant, format!("{id}: payments {succeeded} − refunds {refunds} ≠ paid {paid} − refunded {refunded}"));
        }
        let timeline = state
            .timelines
            .get(&id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let sequences: Vec<i64> = timeline.iter().map(|e| i(&e["sequence"])).collect();
        if sequences.windows(2).any(|w| w[0] >= w[1]) {
            self.fail(tenant, format!("{id}: timeline out of sequence order"));
        }
        let r = replay(timeline, &state.refund_owners);
        let replayed = (r.status.as_str(), r.paid, r.pending, r.refunded);
        let projected = (
            invoice["status"].as_str().unwrap_or(""),
            paid,
            pending,
            refunded,
        );
        if replayed != projected {
            self.fail(
                tenant,
                format!("{id}: projection {projected:?} ≠ replay {replayed:?}"),
            );
        }
        for refund in r.refunds_created.keys() {
            match r.refund_outcomes.get(refund).copied().unwrap_or(0) {
                1 => {}
                0 => self.fail(tenant, format!("{id}: refund {refund} stranded pending")),
                n => self.fail(tenant, format!("{id}: refund {refund} has {n} outcomes")),
            }
            let keys = self.refunds.get(refund).map_or(0, HashMap::len);
            if keys > 1 {
                self.fail(
                    tenant,
                    format!("refund {refund} sent to the gateway under {keys} keys"),
                );
            }
        }
        for p in &own {
            let pid = s(&p["id"]);
            let Some(rp) = r.payments.get(&pid) else {
                self.fail(
                    tenant,
                    format!("{id}: payment {pid} missing from the timeline"),
                );
                continue;
            };
            let projected = (p["status"].as_str().unwrap_or(""), i(&p["amountRefunded"]));
            if projected != (rp.status.as_str(), rp.refunded) {
                self.fail(
                    tenant,
                    format!(
                        "{pid}: projection {projected:?} ≠ replay {:?}",
                        (&rp.status, rp.refunded)
                    ),
                );
            }
            let count = |k: &str| rp.counts.get(k).copied().unwrap_or(0);
            let outcomes = count("payment.succeeded") + count("payment.failed");
            if count("payment.attempted") != 1 || count("payment.processing") > 1 || outcomes != 1 {
                self.fail(tenant, format!("{pid}: events {:?}", rp.counts));
            }
        }
    }

    /// The gateway created at most one charge for the payment, under one key; a collected
    /// payment was charged exactly once.
    fn charged_once(&mut self, tenant: usize, payment: &Value) {
        let id = s(&payment["id"]);
        let keys = self.charges.get(&id).cloned().unwrap_or_default();
        if keys.len() > 1 {
            self.fail(
                tenant,
                format!(
                    "{id} sent to the gateway under {} keys: {keys:?}",
                    keys.len()
                ),
            );
        }
        let created: u32 = keys.keys().map(|k| (self.creations)(k)).sum();
        if created > 1 {
            self.fail(tenant, format!("{id} charged {created} times"));
        }
        if payment["status"] == "failed" && payment["failureCode"] != "card_declined" && created > 0
        {
            self.fail(
                tenant,
                format!(
                    "{id} failed ({}) but the gateway created its charge",
                    payment["failureCode"]
                ),
            );
        }
        if i(&payment["amountRefunded"]) > i(&payment["amount"]) {
            self.fail(tenant, format!("{id} refunded more than its amount"));
        }
        let collected = COLLECTED.contains(&payment["status"].as_str().unwrap_or(""));
        if collected && created != 1 {
            self.fail(
                tenant,
                format!(
                    "{id} is {} but the gateway created {created} charges",
                    payment["status"]
                ),
            );
        }
    }

    /// Charges and refunds the gateway received for payments and refunds the engine does not
    /// have (a charge sent for a write that never committed).
    pub fn phantoms(&mut self, states: &[TenantState]) {
        let payments: HashSet<String> = states
            .iter()
            .flat_map(|t| t.payments.iter().map(|p| s(&p["id"])))
            .collect();
        let refunds: HashSet<String> = states
            .iter()
            .flat_map(|t| t.timelines.values().flatten())
            .filter(|e| e["eventType"] == "refund.created")
            .map(|e| s(&e["data"]["refundId"]))
            .collect();
        for (id, keys) in self.charges {
            let created: u32 = keys.keys().map(|k| (self.creations)(k)).sum();
            if !payments.contains(id) && created > 0 {
                self.violations.push(format!(
                    "gateway charged {id}, a payment the engine does not have"
                ));
            }
        }
        for id in self.refunds.keys() {
            if !refunds.contains(id) {
                self.violations.push(format!(
                    "gateway received refund {id}, which the engine does not have"
                ));
            }
        }
    }
}
