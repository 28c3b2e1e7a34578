//! A unit's event and projection rows, rendered once, ahead of its batch where possible; the
//! planner (`plan.rs`) adds the rows of the units that pass to the batch's writes.

use payrail_actors::domain::{InvoiceId, PaymentId, StreamId};
use payrail_actors::ports::{Snapshot, StoreError, Unit};
use uuid::Uuid;

use super::stmt::Bind;
use super::tables::{Sets, DEDUP, INVOICE_HEAD, PAYMENT_HEAD};
use super::write::{
    event_row, idempotency_row, invoice_rest, invoice_row, invoice_sets, invoice_whole,
    payment_rest, payment_row, refund_rows,
};

/// A unit's event and projection rows, rendered once: ahead of its batch while it waits in
/// the writer's queue (`Db::prepare`), or by the batch itself.
pub(crate) struct UnitRows {
    pub(super) events: Vec<Vec<Bind>>,
    /// With the columns an update of a stored row sets (`invoice_sets`). A projection row is
    /// rendered whole only if the unit's own events say its write sets the columns it can
    /// leave out (an invoice's past `INVOICE_HEAD`, a payment's past `PAYMENT_HEAD`); the
    /// planner completes one whose write turns out to (`Writes::add`).
    pub(super) invoices: Vec<(InvoiceId, Vec<Bind>, Sets)>,
    pub(super) payments: Vec<(PaymentId, Vec<Bind>)>,
    pub(super) refunds: Vec<(Uuid, Vec<Bind>)>,
    /// Its gateway events' dedup rows, but for their time, which is the batch's.
    pub(super) dedup: Vec<Vec<Bind>>,
    pub(super) idempotency: Option<Vec<Bind>>,
}

/// The invoice streams `unit` appends to without carrying the invoice's snapshot (no actor of
/// the engine does; the store allows it and loads such an invoice as its row plus the
/// trailing events). Its row then falls behind its stream: no update of it may trust that
/// the columns it leaves out are current until a whole row is written again.
pub(crate) fn unsnapshotted_invoices(unit: &Unit) -> impl Iterator<Item = StreamId> + '_ {
    unit.streams
        .iter()
        .map(|append| append.stream)
        .filter(move |stream| match stream {
            StreamId::Invoice(id) => !unit
                .snapshots
                .iter()
                .any(|s| matches!(s, Snapshot::Invoice(i) if i.id == *id)),
            _ => false,
        })
}

impl UnitRows {
    /// The rows of `unit`, refused if any snapshot is another tenant's.
    pub(crate) fn render(unit: &Unit) -> Result<Self, StoreError> {
        let tenant_id = unit
            .tenant_id
            .ok_or_else(|| StoreError::Corrupt("unit without tenant".into()))?;
        let mut rows = Self {
            events: Vec::with_capacity(unit.event_count()),
            invoices: Vec::new(),
            payments: Vec::new(),
            refunds: Vec::new(),
            dedup: unit
                .dedup_keys
                .iter()
                .map(|key| {
                    // Room for every column: the batch adds the time.
                    let mut row = Vec::with_capacity(DEDUP.columns.len());
                    row.extend([
                        Bind::id(tenant_id),
                        Bind::Text(key.gateway_event_id.clone()),
                        Bind::id(key.payment_id),
                    ]);
                    row
                })
                .collect(),
            idempotency: unit
                .idempotency
                .as_ref()
                .map(|r| idempotency_row(&tenant_id.to_string(), r)),
        };
        for snapshot in &unit.snapshots {
            let owner = match snapshot {
                Snapshot::Invoice(i) => i.tenant_id,
                Snapshot::Payment(p) => p.tenant_id,
            };
            // Invariant 4: a unit never writes another tenant's rows.
            if owner != tenant_id {
                return Err(StoreError::Corrupt(format!(
                    "snapshot of tenant {owner} in a unit of tenant {tenant_id}"
                )));
            }
            match snapshot {
                Snapshot::Invoice(i) => {
                    let stream = StreamId::Invoice(i.id);
                    let own_events = unit
                        .streams
                        .iter()
                        .filter(|append| append.stream == stream)
                        .flat_map(|append| &append.events);
                    let sets = invoice_sets(own_events.map(|e| &e.data));
                    rows.invoices.push((
                        i.id,
                        invoice_row(tenant_id, i, invoice_whole(sets))?,
                        sets,
                    ));
                }
                Snapshot::Payment(p) => {
                    // What is fixed at its insert is written once, by its first unit.
                    let first = unit.streams.iter().any(|append| {
                        append.stream == StreamId::Payment(p.id) && append.expected_version == 0
                    });
                    rows.payments
                        .push((p.id, payment_row(tenant_id, p, first)?));
                    rows.refunds.extend(refund_rows(tenant_id, p)?);
                }
            }
        }
        for append in &unit.streams {
            for event in &append.events {
                rows.events.push(event_row(event)?);
            }
        }
        Ok(rows)
    }

    /// Renders `unit`'s rows into `unit.prepared`, for the batch that will write it. A unit
    /// that only records an ignored gateway event too: its dedup row is one of the most
    /// frequent rows a batch writes.
    pub(crate) fn prepare(unit: &Unit) {
        unit.prepared.put(Box::new(Self::render(unit)));
    }

    /// What was rendered ahead for `unit`, or its rows rendered now.
    pub(super) fn of(unit: &Unit) -> Result<Self, StoreError> {
        match unit.prepared.take::<Result<Self, StoreError>>() {
            Some(prepared) => prepared,
            None => Self::render(unit),
        }
    }
}

/// The columns after the head of the row of `stream`'s entity, rendered from the snapshot
/// `unit` carries, for a row rendered short of them (`width` columns, its head) whose write
/// sets them (`Writes::add`).
pub(super) fn rest_of(
    unit: &Unit,
    stream: StreamId,
    width: usize,
) -> Result<Vec<Bind>, StoreError> {
    for snapshot in &unit.snapshots {
        let (head, rest) = match snapshot {
            Snapshot::Invoice(i) if stream == StreamId::Invoice(i.id) => {
                (INVOICE_HEAD, invoice_rest(i))
            }
            Snapshot::Payment(p) if stream == StreamId::Payment(p.id) => {
                (PAYMENT_HEAD, payment_rest(p))
            }
            _ => continue,
        };
        if width != head {
            return Err(StoreError::Corrupt(format!(
                "row of {stream} cut short at {width} columns, not at its head's {head}"
            )));
        }
        return rest;
    }
    Err(StoreError::Corrupt(format!(
        "row of {stream} without its snapshot"
    )))
}
