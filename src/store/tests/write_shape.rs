//! The physical shape of the write path: what a batch makes the database do to its tables and
//! indexes (PostgreSQL's own statistics), and the plain updates of rows a batch knows exist.

use std::time::{Duration, Instant};

use payrail_actors::domain::{EventData, StreamId, TenantId};
use payrail_actors::ports::{EventStore, StoreError};

use super::fixtures::*;
use super::sql::paid_and_refunded;
use crate::store::rows::{CountRow, TextRow};
use crate::store::stmt::{Bind, Stmt};
use crate::store::Db;

/// A table's `(updates, HOT updates)` once the writers' statistics have reached the shared
/// counters (each backend flushes its own within about a second of going idle).
async fn updates(db: &Db, table: &str, at_least: i64) -> (i64, i64) {
    let read = |column: &str| {
        Stmt::new(
            format!("SELECT {column} AS n FROM pg_stat_user_tables WHERE relname = ?"),
            vec![Bind::text(table)],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<CountRow> = db.load(read("n_tup_upd")).await.unwrap();
        let hot: Vec<CountRow> = db.load(read("n_tup_hot_upd")).await.unwrap();
        let (all, hot) = (all[0].n, hot[0].n);
        if all >= at_least || Instant::now() > deadline {
            return (all, hot);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No index reads a payment's status: settling it and refunding it rewrite the row in place
/// (HOT) without a new entry in any index. Only the charge's acceptance, which takes the
/// payment out of the awaiting-charge index, may not.
#[tokio::test]
async fn a_payment_settles_and_refunds_without_touching_its_indexes() {
    let (db, _) = crate::store::testing::fresh_postgres().await.unwrap();
    paid_and_refunded(&db, TenantId::new()).await;
    // The payment's row is written by three of the four batches: created, then charged and
    // settled together, then refunded.
    let (all, hot) = updates(&db, "payments", 2).await;
    assert_eq!(all, 2, "two updates of the payment's row");
    assert_eq!(
        hot, 1,
        "the refund (a status change) is a HOT update; only leaving the awaiting-charge \
         index is not"
    );
}

/// Every text column an index reads has collation "C": B-tree comparisons of ids are `memcmp`,
/// whatever the database's locale (the test cluster's is the machine's, e.g. `C.UTF-8`). A
/// key column added with the default collation would also break joins and `UNION`s with the
/// columns already collated "C".
#[tokio::test]
async fn every_indexed_text_column_compares_bytewise() {
    let (db, _) = crate::store::testing::fresh_postgres().await.unwrap();
    let indexed = |collation: &str| {
        Stmt::new(
            format!(
                "SELECT DISTINCT c.relname || '.' || a.attname AS value \
                 FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE c.relnamespace = current_schema()::regnamespace \
                   AND c.relname <> '__diesel_schema_migrations' \
                   AND a.atttypid = 'text'::regtype \
                   AND a.attcollation {collation} (SELECT oid FROM pg_collation \
                                                    WHERE collname = 'C') \
                 ORDER BY value"
            ),
            vec![],
        )
    };
    let other: Vec<TextRow> = db.load(indexed("<>")).await.unwrap();
    let other: Vec<String> = other.into_iter().map(|r| r.value).collect();
    assert_eq!(
        other,
        Vec::<String>::new(),
        "indexed text columns not collated \"C\""
    );
    let bytewise: Vec<TextRow> = db.load(indexed("=")).await.unwrap();
    let bytewise: Vec<String> = bytewise.into_iter().map(|r| r.value).collect();
    for column in [
        "events.event_type",
        "events.gateway_event_id",
        "invoices.number",
        "payments.id",
    ] {
        assert!(
            bytewise.iter().any(|c| c == column),
            "{column} in {bytewise:?}"
        );
    }
}

on_both!(an_update_of_a_missing_row_fails_its_unit_and_writes_nothing_of_it);

/// A batch updates the rows of entities whose streams it found stored. If such a row is gone
/// (a projection deleted by hand), its unit fails and none of its events is written: never an
/// event whose projection silently stayed behind. The rest of the batch is written.
async fn an_update_of_a_missing_row_fails_its_unit_and_writes_nothing_of_it(db: Db) {
    let tenant = TenantId::new();
    let (mut invoice, created) = create_invoice(tenant, &InvoiceSpec::default());
    let (mut payment, attempt) = attempt_payment(&mut invoice, 1000, at(1));
    commit(&db, vec![created, attempt]).await;
    delete_payment_row(&db, tenant, payment.id).await;

    let processing = charge_accepted(&mut payment, at(2));
    let elsewhere = TenantId::new();
    let (other, other_created) = create_invoice(elsewhere, &InvoiceSpec::default());
    let results = db.append(vec![processing, other_created]).await;
    assert!(
        matches!(
            results.as_slice(),
            [
                Err(StoreError::Unavailable(_) | StoreError::Corrupt(_)),
                Ok(())
            ]
        ),
        "{results:?}"
    );
    let stream = db
        .load_stream(tenant, StreamId::Payment(payment.id))
        .await
        .unwrap();
    assert_eq!(stream.len(), 1, "only the attempt is stored");
    assert!(db
        .load_invoice(elsewhere, other.id)
        .await
        .unwrap()
        .is_some());
}

on_both!(a_batch_updates_many_stored_rows_each_with_its_own_values);

/// A batch's updates of many stored rows (grouped into one statement on PostgreSQL): 85
/// payments, stored by one batch and moved on by the next, each read back with its own values,
/// none with a neighbour's.
async fn a_batch_updates_many_stored_rows_each_with_its_own_values(db: Db) {
    const PAYMENTS: usize = 85;
    let tenant = TenantId::new();
    let spec = InvoiceSpec {
        amount: 100 * PAYMENTS as i64,
        ..InvoiceSpec::default()
    };
    let (mut invoice, created) = create_invoice(tenant, &spec);
    let mut payments = Vec::new();
    let mut units = vec![created];
    for _ in 0..PAYMENTS {
        let (payment, attempt) = attempt_payment(&mut invoice, 100, at(1));
        payments.push(payment);
        units.push(attempt);
    }
    commit(&db, units).await;

    let accepted = payments
        .iter_mut()
        .enumerate()
        .map(|(i, payment)| {
            payment_change(
                payment,
                None,
                vec![EventData::PaymentProcessing {
                    gateway_reference: format!("ch_{i}"),
                }],
                Some(&format!("gw_{i}")),
                at(2),
            )
        })
        .collect();
    commit(&db, accepted).await;

    for (i, payment) in payments.iter().enumerate() {
        let loaded = db.load_payment(tenant, payment.id).await.unwrap().unwrap();
        assert!(
            loaded.trailing.is_empty(),
            "payment {i}: row behind its stream"
        );
        assert_eq!(&loaded.snapshot, payment, "payment {i}");
        assert_eq!(
            loaded.snapshot.gateway_reference.as_deref(),
            Some(format!("ch_{i}").as_str())
        );
    }
}
