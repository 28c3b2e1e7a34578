//! An update of a stored invoice's row sets only the columns its events can have changed
//! (`invoice_sets`): what it leaves out must be what did not change, at every step of an
//! invoice's life, and the row stored after each batch must be the one a full write leaves.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use payrail_actors::domain::{
    EventData, Invoice, InvoiceDetails, InvoiceStatus, Payment, RefundId, StreamId, TenantId,
};
use payrail_actors::ports::{Snapshot, Unit};

use super::fixtures::*;
use crate::store::rows::CountRow;
use crate::store::stmt::{Bind, Dialect, Stmt};
use crate::store::tables::{
    invoice_row, invoice_sets, invoice_whole, payment_rest, payment_row, Sets, INVOICES,
    INVOICE_HEAD, PAYMENTS, PAYMENT_HEAD,
};
use crate::store::write::Upserts;
use crate::store::Db;

on_both!(a_stored_invoice_is_what_a_full_write_would_leave_after_every_change);
on_both!(a_row_left_behind_its_stream_is_written_whole);
on_both!(one_batch_of_many_changes_writes_what_any_of_them_set);
on_both!(a_settlement_after_a_restart_writes_its_rows_whole, with_url);

/// Every step of two invoices' lives, in order: `step` gets the invoice before the step
/// (`None` for its creation), after it, and the unit writing the step.
async fn lives(tenant: TenantId, mut step: impl AsyncFnMut(Option<&Invoice>, &Invoice, Unit)) {
    // A draft, edited, finalized, paid by two payments (one fails), paid, refunded.
    let (mut paid, created) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 1,
            finalize: false,
            ..Default::default()
        },
    );
    let mut units = vec![(None, created)];
    let mut edited = InvoiceDetails::clone(&paid.details);
    edited.customer_name = "John Roe".into();
    edited.customer_email = None;
    edited.due_date = Some(date(2027, 1, 31));
    edited.subtotal = 1500;
    edited.total = 1500;
    let change = |invoice: &mut Invoice, datas: Vec<EventData>, minute: i64| {
        let before = Some(invoice.clone());
        (before, invoice_change(invoice, datas, at(minute)))
    };
    units.push(change(
        &mut paid,
        vec![EventData::InvoiceUpdated {
            details: Arc::new(edited),
        }],
        1,
    ));
    units.push(change(&mut paid, vec![EventData::InvoiceFinalized {}], 2));
    let before = Some(paid.clone());
    let (mut failing, attempt) = attempt_payment(&mut paid, 500, at(3));
    units.push((before, attempt));
    let before = Some(paid.clone());
    let (mut payment, attempt) = attempt_payment(&mut paid, 1000, at(3));
    units.push((before, attempt));
    let outcome = |payment: &mut Payment, invoice: &mut Invoice, data: EventData, minute| {
        let before = Some(invoice.clone());
        let unit = payment_change(payment, Some(invoice), vec![data], None, at(minute));
        (before, unit)
    };
    units.push(outcome(
        &mut failing,
        &mut paid,
        EventData::PaymentFailed {
            amount: 500,
            failure_code: "card_declined".into(),
            failure_message: "declined".into(),
        },
        4,
    ));
    units.push(outcome(
        &mut payment,
        &mut paid,
        EventData::PaymentSucceeded {
            amount: 1000,
            gateway_reference: None,
        },
        5,
    ));
    let before = Some(paid.clone());
    let (mut rest, attempt) = attempt_payment(&mut paid, 500, at(6));
    units.push((before, attempt));
    units.push(outcome(
        &mut rest,
        &mut paid,
        EventData::PaymentSucceeded {
            amount: 500,
            gateway_reference: None,
        },
        7,
    ));
    units.push(change(
        &mut paid,
        vec![EventData::InvoicePaid { amount_paid: 1500 }],
        7,
    ));
    let refund_id = RefundId::new();
    units.push(outcome(
        &mut payment,
        &mut paid,
        EventData::RefundCreated {
            refund_id,
            amount: 400,
            reason: None,
        },
        8,
    ));
    units.push(outcome(
        &mut payment,
        &mut paid,
        EventData::RefundSucceeded {
            refund_id,
            amount: 400,
        },
        9,
    ));
    assert_eq!(paid.status, InvoiceStatus::Paid);
    assert_eq!(paid.amount_refunded, 400);

    // Open, marked uncollectible, voided.
    let (mut written_off, created) = create_invoice(
        tenant,
        &InvoiceSpec {
            number: 2,
            customer: "Ann Other",
            ..Default::default()
        },
    );
    units.push((None, created));
    units.push(change(
        &mut written_off,
        vec![EventData::InvoiceMarkedUncollectible {}],
        10,
    ));
    units.push(change(
        &mut written_off,
        vec![EventData::InvoiceVoided {}],
        11,
    ));
    assert_eq!(written_off.status, InvoiceStatus::Void);

    for (before, unit) in units {
        let after = match unit.snapshots.first() {
            Some(Snapshot::Invoice(i)) => (**i).clone(),
            _ => panic!("every step's unit writes its invoice first"),
        };
        step(before.as_ref(), &after, unit).await;
    }
}

/// `payment` succeeding for its whole amount, settled on `invoice`.
fn succeeded(payment: &mut Payment, invoice: &mut Invoice, at: DateTime<Utc>) -> Unit {
    let amount = payment.amount;
    payment_change(
        payment,
        Some(invoice),
        vec![EventData::PaymentSucceeded {
            amount,
            gateway_reference: None,
        }],
        None,
        at,
    )
}

/// The snapshot of `invoice` that `unit` writes.
fn invoice_in<'a>(unit: &'a Unit, invoice: &Invoice) -> &'a Invoice {
    unit.snapshots
        .iter()
        .find_map(|s| match s {
            Snapshot::Invoice(i) if i.id == invoice.id => Some(&**i),
            _ => None,
        })
        .expect("the unit writes the invoice")
}

/// What an update of the stored `invoice` by `unit` sets.
fn sets_of(unit: &Unit, invoice: &Invoice) -> Sets {
    let stream = StreamId::Invoice(invoice.id);
    invoice_sets(
        unit.streams
            .iter()
            .filter(|a| a.stream == stream)
            .flat_map(|a| &a.events)
            .map(|e| &e.data),
    )
}

/// Every column whose value a change moves is one its update sets (and never the key or a
/// column fixed at insert). It fails if an event's columns are left out of `invoice_sets`.
#[tokio::test]
async fn an_update_sets_every_column_its_events_change() {
    let tenant = TenantId::new();
    let mut updates = 0;
    lives(
        tenant,
        async |before: Option<&Invoice>, after: &Invoice, unit: Unit| {
            let Some(before) = before else {
                return; // created: inserted, not updated
            };
            updates += 1;
            let sets = sets_of(&unit, before);
            let old = invoice_row(tenant, before, true).unwrap();
            let new = invoice_row(tenant, after, true).unwrap();
            for (i, column) in INVOICES.columns.iter().enumerate() {
                if old[i] != new[i] {
                    assert!(
                        i >= 2 && !INVOICES.fixed.contains(column) && sets.has(i),
                        "{column} changed from {:?} to {:?} but is not set",
                        old[i],
                        new[i]
                    );
                }
            }
        },
    )
    .await;
    assert_eq!(updates, 13);
}

/// A settlement sets the invoice's amounts and version alone; an event of its own stream adds
/// its columns; two changes of one invoice in a batch set what either changed.
#[test]
fn a_settlement_updates_data_and_version_alone() {
    let tenant = TenantId::new();
    let (mut invoice, _) = create_invoice(tenant, &InvoiceSpec::default());
    let (mut payment, attempt) = attempt_payment(&mut invoice, 1000, at(1));
    let settled = succeeded(&mut payment, &mut invoice, at(2));
    let paid = invoice_change(
        &mut invoice,
        vec![EventData::InvoicePaid { amount_paid: 1000 }],
        at(2),
    );
    let row = |unit: &Unit| invoice_row(tenant, invoice_in(unit, &invoice), true).unwrap();
    let update_sql = |units: &[&Unit]| {
        let mut upserts = Upserts::default();
        for unit in units {
            upserts.put(
                (tenant, invoice.id.uuid()),
                row(unit),
                true,
                sets_of(unit, &invoice),
            );
        }
        let stmts = upserts.statements(Dialect::Sqlite, &INVOICES).unwrap();
        assert_eq!(stmts.len(), 1);
        stmts[0].sql.clone()
    };
    assert_eq!(
        update_sql(&[&settled]),
        "UPDATE invoices SET version = ?, data = ? WHERE tenant_id = ? AND id = ?"
    );
    assert_eq!(
        update_sql(&[&attempt]),
        "UPDATE invoices SET version = ?, data = ? WHERE tenant_id = ? AND id = ?"
    );
    assert_eq!(
        update_sql(&[&settled, &paid]),
        "UPDATE invoices SET status = ?, version = ?, data = ? WHERE tenant_id = ? AND id = ?"
    );
    // Their rows bind the head alone: none of the invoice's texts is copied for them.
    for unit in [&attempt, &settled, &paid] {
        let sets = sets_of(unit, &invoice);
        assert!(!invoice_whole(sets), "{sets:?}");
        let short = invoice_row(tenant, invoice_in(unit, &invoice), false).unwrap();
        assert_eq!(short.len(), INVOICE_HEAD);
        assert_eq!(short[..], row(unit)[..INVOICE_HEAD]);
    }
    assert!(invoice_whole(Sets::ALL));
}

/// Each change in a batch of its own, so every write after the first is an update of a stored
/// row: after each, the row's columns are the invoice's and the invoice reads back whole.
async fn a_stored_invoice_is_what_a_full_write_would_leave_after_every_change(db: Db) {
    let tenant = TenantId::new();
    let mut checked = 0;
    lives(
        tenant,
        async |_: Option<&Invoice>, after: &Invoice, unit: Unit| {
            commit(&db, vec![unit]).await;
            assert_row_is(&db, tenant, after).await;
            checked += 1;
        },
    )
    .await;
    assert_eq!(checked, 15);
}

/// Every change after an invoice's creation in one batch. A unit renders the details of its
/// rows only when its own events change them; here a later unit's row, rendered without them,
/// replaces an earlier one whose update (or a payment's insert) sets them, so the planner
/// completes it. The rows stored are those a full write of each entity leaves.
async fn one_batch_of_many_changes_writes_what_any_of_them_set(db: Db) {
    let tenant = TenantId::new();
    let mut batch = Vec::new();
    let mut last = std::collections::HashMap::new();
    lives(
        tenant,
        async |before: Option<&Invoice>, after: &Invoice, unit: Unit| {
            if before.is_none() {
                commit(&db, vec![unit]).await;
            } else {
                batch.push(unit);
            }
            last.insert(after.id, after.clone());
        },
    )
    .await;
    assert_eq!((batch.len(), last.len()), (13, 2));
    // Each payment as its last unit leaves it (a later snapshot replaces an earlier one).
    let latest: std::collections::HashMap<_, Payment> = batch
        .iter()
        .flat_map(|unit| &unit.snapshots)
        .filter_map(|s| match s {
            Snapshot::Payment(p) => Some((p.id, (**p).clone())),
            Snapshot::Invoice(_) => None,
        })
        .collect();
    commit(&db, batch).await;
    for invoice in last.values() {
        assert_row_is(&db, tenant, invoice).await;
    }
    // Its card details, written by its insert, included.
    assert_eq!(latest.len(), 3);
    for payment in latest.values() {
        let stored = db.get_payment(tenant, payment.id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(payment));
    }
}

/// After a restart (a new handle on the same database, which vouches for no row) a settlement's
/// rows are not known current: rendered without their details, as the unit's events leave them
/// alone, the invoice's is completed and written whole, and both read back as the entities.
async fn a_settlement_after_a_restart_writes_its_rows_whole(db: Db, url: String) {
    let tenant = TenantId::new();
    let (mut invoice, created) = create_invoice(tenant, &InvoiceSpec::default());
    let (mut payment, attempt) = attempt_payment(&mut invoice, 1000, at(1));
    commit(&db, vec![created]).await;
    commit(&db, vec![attempt]).await;
    let keys = db.keys.clone();
    drop(db);
    let db = Db::connect(&url, 2, keys).await.unwrap();
    let settled = succeeded(&mut payment, &mut invoice, at(2));
    let details = INVOICES.columns.len() - 1;
    assert!(
        !sets_of(&settled, &invoice).has(details),
        "its events leave the details alone"
    );
    commit(&db, vec![settled]).await;
    assert_row_is(&db, tenant, &invoice).await;
    let stored = db.get_payment(tenant, payment.id).await.unwrap();
    assert_eq!(stored, Some(payment));
}

/// The stored row of `invoice` holds in every column what a whole write of it would (the JSON
/// columns, which PostgreSQL cannot compare, through the invoice read back whole).
async fn assert_row_is(db: &Db, tenant: TenantId, invoice: &Invoice) {
    let row = invoice_row(tenant, invoice, true).unwrap();
    let (mut conditions, mut binds) = (Vec::new(), Vec::new());
    for (column, bind) in INVOICES.columns.iter().zip(row) {
        if !matches!(bind, Bind::Json(_)) {
            conditions.push(format!("{column} IS NOT DISTINCT FROM ?"));
            binds.push(bind);
        }
    }
    assert_eq!(conditions.len(), INVOICES.columns.len() - 2);
    let columns = Stmt::new(
        format!(
            "SELECT count(*) AS n FROM invoices WHERE {}",
            conditions.join(" AND ")
        ),
        binds,
    );
    let rows: Vec<CountRow> = db.load(columns).await.unwrap();
    assert_eq!(
        rows[0].n, 1,
        "the row's columns are the invoice's: {invoice:?}"
    );
    // The reservations are read from the payments when an actor loads the invoice; the
    // projection row does not hold them.
    let mut expected = invoice.clone();
    expected.reservations.clear();
    let stored = db.get_invoice(tenant, invoice.id).await.unwrap();
    assert_eq!(stored, Some(expected));
}

/// A unit may append to an invoice's stream without its snapshot (no actor does; the store
/// loads such an invoice as its row plus the trailing events). The row is then behind: the
/// next update of it writes every column, whether in a later batch or in the same one, so a
/// status changed by the trailing events reaches the row with the next snapshot.
async fn a_row_left_behind_its_stream_is_written_whole(db: Db) {
    let tenant = TenantId::new();
    for (number, same_batch) in [(1, false), (2, true)] {
        let (mut invoice, created) = create_invoice(
            tenant,
            &InvoiceSpec {
                number,
                ..Default::default()
            },
        );
        commit(&db, vec![created]).await;
        let mut behind = invoice_change(
            &mut invoice,
            vec![EventData::InvoiceMarkedUncollectible {}],
            at(1),
        );
        behind.snapshots.clear();
        // Sets only the amounts, were the row known current.
        let (_, reserved) = attempt_payment(&mut invoice, 400, at(2));
        if same_batch {
            commit(&db, vec![behind, reserved]).await;
        } else {
            commit(&db, vec![behind]).await;
            commit(&db, vec![reserved]).await;
        }
        assert_eq!(invoice.status, InvoiceStatus::Uncollectible);
        assert_row_is(&db, tenant, &invoice).await;
    }
}

/// A payment's row for a write after its insert binds the columns its changes set alone; what
/// it leaves out is fixed at the insert, and a whole row is the short one completed.
#[test]
fn a_payment_row_leaves_what_its_insert_fixed_to_the_insert() {
    let tenant = TenantId::new();
    let (mut invoice, _) = create_invoice(tenant, &InvoiceSpec::default());
    let (payment, _) = attempt_payment(&mut invoice, 1000, at(1));
    let short = payment_row(tenant, &payment, false).unwrap();
    assert_eq!(short.len(), PAYMENT_HEAD);
    for column in &PAYMENTS.columns[PAYMENT_HEAD..] {
        assert!(PAYMENTS.fixed.contains(column), "{column} is not fixed");
    }
    let mut completed = short;
    completed.extend(payment_rest(&payment).unwrap());
    assert_eq!(completed, payment_row(tenant, &payment, true).unwrap());
    assert_eq!(completed.len(), PAYMENTS.columns.len());
}
