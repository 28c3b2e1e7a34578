//! The snapshots' migrations after the split: `data` and `details` without what the rows'
//! columns hold, and the values set once moved to the details.

use diesel::migration::MigrationSource;
use diesel::QueryableByName;
use diesel_migrations::EmbeddedMigrations;

use payrail_actors::domain::{Invoice, Payment};

use super::super::{on_postgres, on_sqlite, there_and_back, OldDatabase};
use super::{
    invoice, merged, old_payment_sql, payment, select_invoice_split, select_split,
    INVOICE_COLUMN_KEYS, PAYMENT_COLUMN_KEYS, SPLIT_INVOICE_DETAILS, SPLIT_PAYMENT_DETAILS,
};
use crate::store::rows::DataRow;
use crate::store::stmt::Dialect;

/// The migration that leaves out of a payment's `data` what its columns hold.
const WITHOUT_COLUMNS: &str = "payment_data_without_columns";

/// The payment as the schema before that migration stored it: details apart, `data` with the
/// status, gateway reference and version.
fn repeating_row_sql(p: &Payment, created_at: &str) -> String {
    let (details, data) = crate::store::split_json::split(p, &SPLIT_PAYMENT_DETAILS, &[]).unwrap();
    old_payment_sql(p, created_at, &[("details", details), ("data", data)])
}

/// A projection's snapshot as the migrations that leave its columns out of `data` see it.
trait Projection: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug {
    /// The snapshot's keys that are columns of the row as well.
    const COLUMN_KEYS: &'static [&'static str];
    /// A key that stays in `data` either way.
    const STATE_KEY: &'static str;
    /// The snapshot read whole, as the store reads it.
    fn read(row: &DataRow) -> Self;
}

impl Projection for Payment {
    const COLUMN_KEYS: &'static [&'static str] = &PAYMENT_COLUMN_KEYS;
    const STATE_KEY: &'static str = "failureMessage";
    /// The store's reader expects `details` without the keys the row has in columns
    /// (`payment_details_without_columns`); before that migration they are there, so the
    /// columns' values fill in only what the two parts leave out.
    fn read(row: &DataRow) -> Self {
        let mut whole: serde_json::Value =
            serde_json::from_str(row.details.as_deref().unwrap()).unwrap();
        let object = whole.as_object_mut().unwrap();
        let parts: [serde_json::Value; 2] = [
            serde_json::from_str(&row.data).unwrap(),
            serde_json::from_str(&row.payment_columns().unwrap()).unwrap(),
        ];
        for part in parts {
            for (key, value) in part.as_object().unwrap() {
                object.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        serde_json::from_value(whole).unwrap()
    }
}

impl Projection for Invoice {
    const COLUMN_KEYS: &'static [&'static str] = &INVOICE_COLUMN_KEYS;
    const STATE_KEY: &'static str = "amountPending";
    fn read(row: &DataRow) -> Self {
        row.invoice().unwrap()
    }
}

/// Whether the stored `data` repeats the columns' keys, and the snapshot read whole.
fn check_repeats<T: Projection>(rows: Vec<DataRow>, original: &T, repeats: bool) {
    assert_eq!(rows.len(), 1);
    let state: serde_json::Value = serde_json::from_str(&rows[0].data).unwrap();
    for key in T::COLUMN_KEYS {
        assert_eq!(state.get(key).is_some(), repeats, "{key} in {state}");
    }
    assert!(state.get(T::STATE_KEY).is_some(), "{state}");
    if repeats {
        assert_eq!(merged::<T>(&rows[0]), *original);
    } else {
        assert_eq!(T::read(&rows[0]), *original);
    }
}

/// `original`, stored as `old_row` writes it, loses its columns' keys from `data` through the
/// migration named `migration` and gets them back on the way down, read by `select`.
fn data_without_columns<C: OldDatabase, T: Projection>(
    conn: &mut C,
    migration: &str,
    original: &T,
    old_row: &str,
    select: &str,
) where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
{
    there_and_back(
        conn,
        migration,
        old_row,
        |c| check_repeats(c.rows(select), original, false),
        |c| check_repeats(c.rows(select), original, true),
    );
}

fn payment_data_without_columns<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
{
    let original = payment();
    data_without_columns(
        conn,
        WITHOUT_COLUMNS,
        &original,
        &repeating_row_sql(&original, C::NOW),
        &select_split(C::DIALECT),
    );
}

/// The migration that moves a payment's gateway token from `data` to `details`.
const TOKEN_IN_DETAILS: &str = "payment_token_in_details";

/// Where the snapshot's `key` is stored (in `details`, or in `data`), and the snapshot read
/// whole.
fn check_moved<T: Projection + serde::Serialize>(
    rows: Vec<DataRow>,
    original: &T,
    key: &str,
    in_details: bool,
) {
    assert_eq!(rows.len(), 1);
    let details: serde_json::Value =
        serde_json::from_str(rows[0].details.as_deref().unwrap()).unwrap();
    let state: serde_json::Value = serde_json::from_str(&rows[0].data).unwrap();
    let value = serde_json::to_value(original).unwrap()[key].clone();
    assert!(!value.is_null(), "{key} is set in the original");
    let (with, without) = if in_details {
        (&details, &state)
    } else {
        (&state, &details)
    };
    assert_eq!(with.get(key), Some(&value), "{with}");
    assert!(without.get(key).is_none(), "{without}");
    assert_eq!(T::read(&rows[0]), *original);
}

/// `original`, stored as `old_row` writes it, has its `key` moved from `data` to `details` by
/// the migration named `migration` and back on the way down, read by `select`.
fn moved_to_details<C: OldDatabase, T: Projection + serde::Serialize>(
    conn: &mut C,
    migration: &str,
    original: &T,
    key: &str,
    old_row: &str,
    select: &str,
) where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
{
    there_and_back(
        conn,
        migration,
        old_row,
        |c| check_moved(c.rows(select), original, key, true),
        |c| check_moved(c.rows(select), original, key, false),
    );
}

fn payment_token_in_details<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
{
    let original = payment();
    let (details, data) =
        crate::store::split_json::split(&original, &SPLIT_PAYMENT_DETAILS, &PAYMENT_COLUMN_KEYS)
            .unwrap();
    moved_to_details(
        conn,
        TOKEN_IN_DETAILS,
        &original,
        "sourceToken",
        &old_payment_sql(&original, C::NOW, &[("details", details), ("data", data)]),
        &select_split(C::DIALECT),
    );
}

/// The migration that leaves out of an invoice's `data` what its columns hold.
const INVOICE_WITHOUT_COLUMNS: &str = "invoice_data_without_columns";

/// The invoice as the schema before that migration stored it: details apart, `data` with the
/// status and version.
fn invoice_repeating_sql(i: &Invoice, created_at: &str) -> String {
    let (details, data) = crate::store::split_json::split(i, &SPLIT_INVOICE_DETAILS, &[]).unwrap();
    split_invoice_sql(i, created_at, &details, &data)
}

/// The invoice in two parts as the schema stored it since the split.
fn split_invoice_sql(i: &Invoice, created_at: &str, details: &str, data: &str) -> String {
    format!(
        "INSERT INTO invoices (tenant_id, id, number, status, customer_name, currency, total, \
         created_at, version, data, details) VALUES ('{}', '{}', '{}', '{}', '{}', '{}', {}, \
         {created_at}, {}, '{}', '{}')",
        i.tenant_id,
        i.id,
        i.number,
        i.status.as_str(),
        i.details.customer_name.replace('\'', "''"),
        i.details.currency.as_str(),
        i.details.total,
        i.version,
        data.replace('\'', "''"),
        details.replace('\'', "''"),
    )
}

fn invoice_data_without_columns<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
{
    let original = invoice();
    data_without_columns(
        conn,
        INVOICE_WITHOUT_COLUMNS,
        &original,
        &invoice_repeating_sql(&original, C::NOW),
        &select_invoice_split(C::DIALECT),
    );
}

/// The migration that moves an invoice's finalization time from `data` to `details`.
const FINALIZED_IN_DETAILS: &str = "invoice_finalized_at_in_details";

fn invoice_finalized_at_in_details<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
{
    let original = invoice();
    let (details, data) =
        crate::store::split_json::split(&original, &SPLIT_INVOICE_DETAILS, &INVOICE_COLUMN_KEYS)
            .unwrap();
    moved_to_details(
        conn,
        FINALIZED_IN_DETAILS,
        &original,
        "finalizedAt",
        &split_invoice_sql(&original, C::NOW, &details, &data),
        &select_invoice_split(C::DIALECT),
    );
}

/// The migration that leaves a payment's columns out of its details.
const DETAILS_WITHOUT_COLUMNS: &str = "payment_details_without_columns";

/// The keys of a payment's details before that migration that are columns of its row.
const PAYMENT_DETAIL_COLUMN_KEYS: [&str; 6] = [
    "id",
    "tenantId",
    "invoiceId",
    "amount",
    "currency",
    "createdAt",
];

/// Whether the stored details repeat the columns' keys, and the payment read whole: by the
/// store's reader once they no longer do.
fn check_details_repeat(rows: Vec<DataRow>, original: &Payment, repeats: bool) {
    assert_eq!(rows.len(), 1);
    let details: serde_json::Value =
        serde_json::from_str(rows[0].details.as_deref().unwrap()).unwrap();
    for key in PAYMENT_DETAIL_COLUMN_KEYS {
        assert_eq!(details.get(key).is_some(), repeats, "{key} in {details}");
    }
    assert!(details.get("paymentMethod").is_some(), "{details}");
    assert!(details.get("sourceToken").is_some(), "{details}");
    if !repeats {
        assert_eq!(rows[0].payment().unwrap(), *original);
    }
    assert_eq!(Payment::read(&rows[0]), *original);
}

fn payment_details_without_columns<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
{
    let mut original = payment();
    original.created_at += chrono::Duration::microseconds(123_456);
    let mut old_details = SPLIT_PAYMENT_DETAILS.to_vec();
    old_details.push("sourceToken");
    let (details, data) =
        crate::store::split_json::split(&original, &old_details, &PAYMENT_COLUMN_KEYS).unwrap();
    let created_at = match C::DIALECT {
        Dialect::Postgres => format!("'{}'::timestamptz", original.created_at.to_rfc3339()),
        Dialect::Sqlite => original.created_at.timestamp_micros().to_string(),
    };
    let select = select_split(C::DIALECT);
    there_and_back(
        conn,
        DETAILS_WITHOUT_COLUMNS,
        &old_payment_sql(
            &original,
            &created_at,
            &[("details", details), ("data", data)],
        ),
        |c| check_details_repeat(c.rows(&select), &original, false),
        |c| check_details_repeat(c.rows(&select), &original, true),
    );
}

#[test]
fn sqlite_payment_details_leave_out_its_columns() {
    on_sqlite(payment_details_without_columns);
}

#[tokio::test]
async fn postgres_payment_details_leave_out_its_columns() {
    on_postgres(payment_details_without_columns).await;
}

#[test]
fn sqlite_payment_data_leaves_out_its_columns() {
    on_sqlite(payment_data_without_columns);
}

#[tokio::test]
async fn postgres_payment_data_leaves_out_its_columns() {
    on_postgres(payment_data_without_columns).await;
}

#[test]
fn sqlite_invoice_data_leaves_out_its_columns() {
    on_sqlite(invoice_data_without_columns);
}

#[tokio::test]
async fn postgres_invoice_data_leaves_out_its_columns() {
    on_postgres(invoice_data_without_columns).await;
}

#[test]
fn sqlite_payment_token_moves_to_details() {
    on_sqlite(payment_token_in_details);
}

#[tokio::test]
async fn postgres_payment_token_moves_to_details() {
    on_postgres(payment_token_in_details).await;
}

#[test]
fn sqlite_invoice_finalization_time_moves_to_details() {
    on_sqlite(invoice_finalized_at_in_details);
}

#[tokio::test]
async fn postgres_invoice_finalization_time_moves_to_details() {
    on_postgres(invoice_finalized_at_in_details).await;
}
