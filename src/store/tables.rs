//! The tables a batch writes, with their columns in bind order, and the row builders that
//! turn domain values into those rows (shared with the projection rebuild). `write.rs` turns
//! the rows into statements.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Timelike, Utc};
use payrail_actors::domain::{Event, EventData, Invoice, Payment, Refund, TenantId};
use payrail_actors::ports::{IdempotencyRecord, StoreError};
use serde::Serialize;
use uuid::Uuid;

use super::rows::corrupt;
use super::split_json;
use super::stmt::Bind;

/// A table the batch writes, with its columns in bind order.
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: &'static [&'static str],
    /// Upserted on `(tenant_id, id)` (projections) rather than plainly inserted.
    pub(crate) upsert: bool,
    /// Columns an upsert never rewrites (set once, at insert). Left out of `DO UPDATE SET`,
    /// SQLite leaves the indexes on them alone instead of rewriting their entries per change.
    pub(crate) fixed: &'static [&'static str],
    /// Columns the database computes from the bound row (`u.<column>`): `(column, expression)`.
    pub(crate) derived: &'static [(&'static str, &'static str)],
}

pub(crate) const EVENTS: Table = Table {
    name: "events",
    columns: &[
        "tenant_id",
        "stream_id",
        "version",
        "event_id",
        "event_type",
        "invoice_id",
        "subject_id",
        "actor",
        "gateway_event_id",
        "data",
        "occurred_at",
        "seq",
    ],
    upsert: false,
    fixed: &[],
    // The row binds how many events of its tenant follow it in the batch; the tenant's counter
    // has already been bumped past the whole batch (`insert_events`). This is SQLite's form;
    // PostgreSQL joins the counters its upsert returns instead.
    derived: &[(
        "seq",
        "(SELECT c.last_seq FROM event_counters c WHERE c.tenant_id = u.tenant_id) - u.seq",
    )],
};

/// An invoice's columns, in the order its rows bind them: first those that a change of a
/// stored invoice may set alone (a settlement sets `version` and `data`, paying it `status`),
/// then those that only its creation, an edit or its finalization set, which a row for any
/// other change leaves out (`invoice_row`).
pub(crate) const INVOICES: Table = Table {
    name: "invoices",
    columns: &[
        "tenant_id",
        "id",
        "status",
        "version",
        "data",
        // The rest (`INVOICE_HEAD` on).
        "number",
        "customer_name",
        "customer_email",
        "currency",
        "total",
        "due_date",
        "created_at",
        "details",
    ],
    upsert: true,
    fixed: &["number", "created_at"],
    derived: &[],
};

/// Which of a table's columns an update of a stored row sets, a bit per position in
/// `Table::columns`; the key and the `fixed` columns are left alone whatever it holds. Setting
/// a column to the value it already holds is not free on SQLite: it deletes and reinserts the
/// row's entry in every index on that column without comparing the values. A settlement that
/// set an invoice's status, customer, currency, total and due date again dirtied a page of each
/// of five indexes for nothing (`invoice_sets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Sets(u32);

impl Sets {
    /// Every column: a row whose changes are not told apart.
    pub(crate) const ALL: Self = Self(u32::MAX);
    const NONE: Self = Self(0);

    /// The columns of `table` named in `names`; a name that is not one of its columns fails
    /// the build.
    const fn of(table: &Table, names: &[&str]) -> Self {
        let mut bits = 0;
        let mut n = 0;
        while n < names.len() {
            bits |= 1 << position(table.columns, names[n]);
            n += 1;
        }
        Self(bits)
    }

    pub(crate) const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub(crate) fn has(self, position: usize) -> bool {
        position < 32 && self.0 & (1 << position) != 0
    }
}

/// Where `name` is in `columns`, at compile time.
const fn position(columns: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < columns.len() {
        let (a, b) = (columns[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut k = 0;
            while k < a.len() && a[k] == b[k] {
                k += 1;
            }
            if k == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a column of the table")
}

/// What every change of an invoice sets: its amounts, reservations and times (`data`), and its
/// version.
const INVOICE_DATA: Sets = Sets::of(&INVOICES, &["version", "data"]);
const INVOICE_STATUS: Sets = Sets::of(&INVOICES, &["status"]);
/// What an edit of a draft changes.
const INVOICE_EDIT: Sets = Sets::of(
    &INVOICES,
    &[
        "customer_name",
        "customer_email",
        "currency",
        "total",
        "due_date",
        "details",
    ],
);
/// The finalization time is kept with the details (`INVOICE_DETAILS`).
const INVOICE_FINALIZED: Sets = INVOICE_STATUS.with(Sets::of(&INVOICES, &["details"]));

/// The columns of a stored invoice's row that a unit holding `events` (those of the invoice's
/// own stream) changes. Only its own events move its status and details; its payments' events
/// move its amounts, which are in `data`, as is every time but the finalization's. Each event
/// is named, so a new one has to say what it changes. This holds for a row that was current
/// before the unit; the planner writes any other whole (`Writes::add`).
pub(crate) fn invoice_sets<'a>(events: impl IntoIterator<Item = &'a EventData>) -> Sets {
    events.into_iter().fold(INVOICE_DATA, |sets, event| {
        sets.with(match event {
            // Its first event: the row is inserted, never updated, by the unit that holds it.
            EventData::InvoiceCreated { .. } => Sets::ALL,
            EventData::InvoiceUpdated { .. } => INVOICE_EDIT,
            EventData::InvoiceFinalized {} => INVOICE_FINALIZED,
            EventData::InvoicePaid { .. }
            | EventData::InvoiceVoided {}
            | EventData::InvoiceMarkedUncollectible {} => INVOICE_STATUS,
            EventData::InvoicePaymentPending { .. }
            | EventData::PaymentAttempted { .. }
            | EventData::PaymentProcessing { .. }
            | EventData::PaymentSucceeded { .. }
            | EventData::PaymentFailed { .. }
            | EventData::RefundCreated { .. }
            | EventData::RefundSucceeded { .. }
            | EventData::RefundFailed { .. }
            | EventData::ApiKeyCreated { .. }
            | EventData::ApiKeyRevoked {} => Sets::NONE,
        })
    })
}

/// A payment's columns, in the order its rows bind them: first those its changes set, then
/// those fixed at its insert, which a row for any later write leaves out (`payment_row`).
pub(crate) const PAYMENTS: Table = Table {
    name: "payments",
    columns: &[
        "tenant_id",
        "id",
        "status",
        "gateway_reference",
        "version",
        "data",
        // The rest (`PAYMENT_HEAD` on), all fixed.
        "invoice_id",
        "amount",
        "currency",
        "created_at",
        "details",
    ],
    upsert: true,
    fixed: &["invoice_id", "amount", "currency", "created_at", "details"],
    derived: &[],
};

pub(crate) const REFUNDS: Table = Table {
    name: "refunds",
    columns: &[
        "tenant_id",
        "id",
        "payment_id",
        "status",
        "amount",
        "created_at",
        "data",
    ],
    upsert: true,
    fixed: &["payment_id", "amount", "created_at"],
    derived: &[],
};

pub(crate) const DEDUP: Table = Table {
    name: "webhook_dedup",
    columns: &["tenant_id", "gateway_event_id", "payment_id", "created_at"],
    upsert: false,
    fixed: &[],
    derived: &[],
};

pub(crate) const IDEMPOTENCY: Table = Table {
    name: "idempotency_keys",
    columns: &[
        "tenant_id",
        "key",
        "fingerprint",
        "status",
        "body",
        "created_at",
    ],
    upsert: false,
    fixed: &[],
    derived: &[],
};

pub(crate) fn idempotency_row(scope: &str, r: &IdempotencyRecord) -> Vec<Bind> {
    vec![
        Bind::text(scope),
        Bind::Text(r.key.clone()),
        Bind::Text(r.fingerprint.clone()),
        Bind::I64(i64::from(r.status)),
        Bind::Text(r.body.clone()),
        Bind::ts(r.created_at),
    ]
}

pub(crate) fn event_row(event: &Event) -> Result<Vec<Bind>, StoreError> {
    // The content of the adjacently tagged `EventData` (`{"eventType": …, "data": {…}}`).
    let data = split_json::field(&event.data, "data")
        .map_err(corrupt)?
        .ok_or_else(|| corrupt(format!("{} serialized without data", event.event_type())))?;
    // Room for every column: the batch adds `seq` (`insert_events`).
    let mut row = Vec::with_capacity(EVENTS.columns.len());
    row.extend([
        Bind::key(event.tenant_id),
        Bind::key(event.stream),
        Bind::I64(event.version as i64),
        Bind::key(event.id),
        Bind::Word(event.event_type()),
        Bind::opt_key(event.invoice_id),
        // The subject only where it is not the stream (a refund's events), to keep the row short.
        Bind::opt_key(event.data.refund_id()),
        match &event.actor {
            Cow::Borrowed(actor) => Bind::Word(actor),
            Cow::Owned(actor) => Bind::Text(actor.clone()),
        },
        Bind::OptText(event.gateway_event_id.clone()),
        Bind::Json(data),
        Bind::ts(event.occurred_at),
    ]);
    Ok(row)
}

/// How many of `INVOICES`' columns every row of an invoice binds.
pub(crate) const INVOICE_HEAD: usize = 5;

/// An invoice's row. Without `whole` it stops short of the columns from `INVOICE_HEAD` on, for
/// a write that sets none of them (most do: `invoice_sets`), rendering only what it writes; a
/// settlement's row then copies none of the invoice's texts. `invoice_rest` completes it if
/// the write turns out to set them.
pub(crate) fn invoice_row(
    tenant: TenantId,
    invoice: &Invoice,
    whole: bool,
) -> Result<Vec<Bind>, StoreError> {
    let head: [Bind; INVOICE_HEAD] = [
        Bind::id(tenant),
        Bind::id(invoice.id),
        Bind::Word(invoice.status.as_str()),
        Bind::I64(invoice.version as i64),
        json(&InvoiceData::of(invoice))?,
    ];
    let rest = whole.then(|| invoice_rest(invoice)).transpose()?;
    Ok(projection_row(&INVOICES, head, rest))
}

/// A projection row of `table`: its `head`, then `rest`, the columns after it, if the row is
/// written whole. Sized for what it holds.
fn projection_row<const HEAD: usize>(
    table: &Table,
    head: [Bind; HEAD],
    rest: Option<Vec<Bind>>,
) -> Vec<Bind> {
    let width = if rest.is_some() {
        table.columns.len()
    } else {
        HEAD
    };
    let mut row = Vec::with_capacity(width);
    row.extend(head);
    row.extend(rest.into_iter().flatten());
    row
}

/// Whether a write of an invoice's row that sets `sets` needs it whole (`invoice_row`).
pub(crate) fn invoice_whole(sets: Sets) -> bool {
    (INVOICE_HEAD..INVOICES.columns.len()).any(|i| sets.has(i))
}

/// The columns of an invoice's row from `INVOICE_HEAD` on, which `invoice_row` can leave out.
pub(crate) fn invoice_rest(invoice: &Invoice) -> Result<Vec<Bind>, StoreError> {
    let d = &invoice.details;
    Ok(vec![
        Bind::Text(invoice.number.clone()),
        Bind::Text(d.customer_name.clone()),
        Bind::OptText(d.customer_email.clone()),
        Bind::text(d.currency.as_str()),
        Bind::I64(d.total),
        Bind::opt_date(d.due_date),
        Bind::ts(invoice.created_at),
        invoice_details(invoice)?,
    ])
}

/// The last column of an invoice's row.
pub(crate) fn invoice_details(invoice: &Invoice) -> Result<Bind, StoreError> {
    details(invoice, &INVOICE_DETAILS)
}

/// The keys of an invoice's snapshot that only an edit of a draft changes (its ids, number,
/// customer, line items and totals) and its finalization time, set once. They are stored apart
/// (`details`) from the rest (`data`: amounts and the other times), which a payment's
/// settlement rewrites. An update sets `details` only with the events that change them
/// (`invoice_sets`); a settlement writes `data` instead of the whole snapshot with its line
/// items.
pub(crate) const INVOICE_DETAILS: [&str; 15] = [
    "id",
    "tenantId",
    "number",
    "customerName",
    "customerEmail",
    "currency",
    "dueDate",
    "lineItems",
    "subtotal",
    "taxRateBps",
    "tax",
    "total",
    "metadata",
    "createdAt",
    "finalizedAt",
];

/// The keys of an invoice's snapshot that are columns of its row as well: `DataRow::invoice`
/// reads them there, so `data`, which PostgreSQL logs whole with each change, does not repeat
/// them.
#[cfg(test)]
pub(crate) const INVOICE_COLUMNS: [&str; 2] = ["status", "version"];

/// What an invoice's `data` holds: the keys of its snapshot in neither `INVOICE_DETAILS` nor
/// `INVOICE_COLUMNS` (its amounts and the times that follow its creation), written field by
/// field: picking them out of the whole snapshot routed every key by name, the details'
/// flattened ones too. `DataRow::invoice` joins `details`, `data` and the columns again; a test
/// (`store::tests::snapshot_parts`) keeps the three lists covering the whole snapshot.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvoiceData<'a> {
    amount_paid: i64,
    amount_pending: i64,
    amount_refunded: i64,
    updated_at: Rfc3339<'a>,
    paid_at: Option<Rfc3339<'a>>,
    voided_at: Option<Rfc3339<'a>>,
}

impl<'a> InvoiceData<'a> {
    pub(crate) fn of(invoice: &'a Invoice) -> Self {
        Self {
            amount_paid: invoice.amount_paid,
            amount_pending: invoice.amount_pending,
            amount_refunded: invoice.amount_refunded,
            updated_at: Rfc3339(&invoice.updated_at),
            paid_at: invoice.paid_at.as_ref().map(Rfc3339),
            voided_at: invoice.voided_at.as_ref().map(Rfc3339),
        }
    }
}

/// The keys of a payment's snapshot that never change once it exists and have no column of
/// their own (the gateway token too: given at creation, kept to re-send a charge). They are
/// stored apart (`details`, written at insert) from the rest (`data`), which every change
/// rewrites: less to write and, on PostgreSQL, an update that logs only what follows the
/// unchanged columns.
pub(crate) const PAYMENT_DETAILS: [&str; 2] = ["paymentMethod", "sourceToken"];

/// The keys of a payment's snapshot that are columns of its row as well (ids, amount,
/// currency, creation time, `status`, `gateway_reference`, `version`): `DataRow::payment` reads
/// them there, so neither `details` nor `data` repeats them. A narrower row keeps more of the
/// table in the database's cache.
#[cfg(test)]
pub(crate) const PAYMENT_COLUMNS: [&str; 9] = [
    "id",
    "tenantId",
    "invoiceId",
    "amount",
    "currency",
    "createdAt",
    "status",
    "gatewayReference",
    "version",
];

/// What a payment's `data` holds: the keys of its snapshot in neither `PAYMENT_DETAILS` nor
/// `PAYMENT_COLUMNS` (what its outcome and refunds change), written field by field as
/// `InvoiceData` is. `DataRow::payment` joins `details`, `data` and the columns again.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PaymentData<'a> {
    amount_refunded: i64,
    failure_code: &'a Option<String>,
    failure_message: &'a Option<String>,
    updated_at: Rfc3339<'a>,
    refunds: &'a [Refund],
}

impl<'a> PaymentData<'a> {
    pub(crate) fn of(payment: &'a Payment) -> Self {
        Self {
            amount_refunded: payment.amount_refunded,
            failure_code: &payment.failure_code,
            failure_message: &payment.failure_message,
            updated_at: Rfc3339(&payment.updated_at),
            refunds: &payment.refunds,
        }
    }
}

/// How many of `PAYMENTS`' columns every row of a payment binds.
pub(crate) const PAYMENT_HEAD: usize = 6;

/// A payment's row. Without `whole` it stops short of the columns fixed at its insert (from
/// `PAYMENT_HEAD` on), which only the insert writes; `payment_rest` completes it for one.
pub(crate) fn payment_row(
    tenant: TenantId,
    payment: &Payment,
    whole: bool,
) -> Result<Vec<Bind>, StoreError> {
    let head: [Bind; PAYMENT_HEAD] = [
        Bind::id(tenant),
        Bind::id(payment.id),
        Bind::Word(payment.status.as_str()),
        Bind::OptText(payment.gateway_reference.clone()),
        Bind::I64(payment.version as i64),
        json(&PaymentData::of(payment))?,
    ];
    let rest = whole.then(|| payment_rest(payment)).transpose()?;
    Ok(projection_row(&PAYMENTS, head, rest))
}

/// The columns of a payment's row from `PAYMENT_HEAD` on, which `payment_row` can leave out.
pub(crate) fn payment_rest(payment: &Payment) -> Result<Vec<Bind>, StoreError> {
    Ok(vec![
        Bind::id(payment.invoice_id),
        Bind::I64(payment.amount),
        Bind::text(payment.currency.as_str()),
        Bind::ts(payment.created_at),
        payment_details(payment)?,
    ])
}

/// The last column of a payment's row.
pub(crate) fn payment_details(payment: &Payment) -> Result<Bind, StoreError> {
    details(payment, &PAYMENT_DETAILS)
}

/// A time as chrono serializes it (RFC 3339, `Z`, the fraction in whole milli-, micro- or
/// nanoseconds, none if zero), written straight into a buffer: chrono's own goes through the
/// formatting machinery a character at a time, and every settlement writes a few of them.
/// Years outside 0–9999 and leap seconds are left to chrono.
#[derive(Clone, Copy)]
pub(crate) struct Rfc3339<'a>(pub(crate) &'a DateTime<Utc>);

impl Serialize for Rfc3339<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let nano = t.nanosecond();
        if !(0..=9999).contains(&t.year()) || nano >= 1_000_000_000 {
            return t.serialize(serializer);
        }
        let mut text = *b"0000-00-00T00:00:00.000000000Z";
        let fields = [
            (0..4, t.year() as u32),
            (5..7, t.month()),
            (8..10, t.day()),
            (11..13, t.hour()),
            (14..16, t.minute()),
            (17..19, t.second()),
        ];
        for (at, value) in fields {
            decimal(&mut text[at], value);
        }
        let end = match nano {
            0 => 19,
            n if n % 1_000_000 == 0 => fraction(&mut text, 3, n / 1_000_000),
            n if n % 1_000 == 0 => fraction(&mut text, 6, n / 1_000),
            n => fraction(&mut text, 9, n),
        };
        text[end] = b'Z';
        match std::str::from_utf8(&text[..=end]) {
            Ok(s) => serializer.serialize_str(s),
            Err(_) => t.serialize(serializer),
        }
    }
}

/// `value`'s last `out.len()` decimal digits, zero-padded.
fn decimal(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// `value` as a fraction of `digits` digits after the seconds; where the text ends.
fn fraction(text: &mut [u8; 30], digits: usize, value: u32) -> usize {
    decimal(&mut text[20..20 + digits], value);
    20 + digits
}

/// A row's JSON column: `data` written into room for a typical row's (serde_json's own buffer
/// starts smaller and grows a few times on the way).
fn json<T: Serialize>(data: &T) -> Result<Bind, StoreError> {
    let mut out = Vec::with_capacity(split_json::PART_CAPACITY);
    serde_json::to_writer(&mut out, data).map_err(corrupt)?;
    String::from_utf8(out).map(Bind::Json).map_err(corrupt)
}

/// A snapshot's `details` column: its keys named in `names`.
fn details<T: Serialize>(snapshot: &T, names: &[&str]) -> Result<Bind, StoreError> {
    split_json::only(snapshot, names)
        .map(Bind::Json)
        .map_err(corrupt)
}

/// A payment's refunds as `(refund id, row)`.
pub(crate) fn refund_rows(
    tenant: TenantId,
    payment: &Payment,
) -> Result<Vec<(Uuid, Vec<Bind>)>, StoreError> {
    payment
        .refunds
        .iter()
        .map(|r| {
            let row = vec![
                Bind::id(tenant),
                Bind::id(r.id),
                Bind::id(r.payment_id),
                Bind::Word(r.status.as_str()),
                Bind::I64(r.amount),
                Bind::ts(r.created_at),
                json(r)?,
            ];
            Ok((r.id.uuid(), row))
        })
        .collect()
}
