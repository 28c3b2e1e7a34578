//! The invoice and payment snapshots' migrations: whole snapshots split into details and state
//! (and joined again by the way back). `keys` has the later ones, which move keys between the
//! parts and the row's columns.

mod keys;

use diesel::migration::MigrationSource;
use diesel::QueryableByName;
use diesel_migrations::EmbeddedMigrations;

use payrail_actors::domain::{Invoice, Payment};

use super::{on_postgres, on_sqlite, there_and_back, OldDatabase};
use crate::store::rows::{snapshot_columns, DataRow};
use crate::store::stmt::Dialect;

/// The migration that stores a payment's details apart from its state.
const DETAILS_APART: &str = "payment_details_apart";

/// A payment whose charge was accepted, with text that needs quoting.
fn payment() -> Payment {
    use crate::store::tests::fixtures::{at, attempt_payment, charge_accepted, create_invoice};
    let tenant = payrail_actors::domain::TenantId::new();
    let (mut invoice, _) = create_invoice(tenant, &Default::default());
    let (mut payment, _) = attempt_payment(&mut invoice, 600, at(1));
    charge_accepted(&mut payment, at(2));
    payment.failure_message = Some("a \"quoted\" message".to_owned());
    payment.source_token = Some("tok_'quoted'".to_owned());
    payment
}

/// A payment's details as the schema kept them from the split (`payment_details_apart`) until
/// the gateway token joined them (`payment_token_in_details`).
const SPLIT_PAYMENT_DETAILS: [&str; 7] = [
    "id",
    "tenantId",
    "invoiceId",
    "amount",
    "currency",
    "paymentMethod",
    "createdAt",
];

/// An invoice's details as the schema kept them from the split (`invoice_details_apart`) until
/// the finalization time joined them (`invoice_finalized_at_in_details`).
const SPLIT_INVOICE_DETAILS: [&str; 14] = [
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
];

/// The keys of an invoice's snapshot that are its columns as well.
const INVOICE_COLUMN_KEYS: [&str; 2] = ["status", "version"];

/// The keys of a payment's snapshot that are its columns as well.
const PAYMENT_COLUMN_KEYS: [&str; 3] = ["status", "gatewayReference", "version"];

/// The payment as an earlier version stored it, its snapshot in the JSON columns `json`
/// (`data` alone, or `details` and `data`), each `(column, JSON)`.
fn old_payment_sql(p: &Payment, created_at: &str, json: &[(&str, String)]) -> String {
    let names: Vec<&str> = json.iter().map(|(name, _)| *name).collect();
    let values: Vec<String> = json
        .iter()
        .map(|(_, value)| format!("'{}'", value.replace('\'', "''")))
        .collect();
    format!(
        "INSERT INTO payments (tenant_id, id, invoice_id, status, amount, currency, \
         gateway_reference, created_at, version, {}) VALUES ('{}', '{}', '{}', '{}', {}, \
         '{}', '{}', {created_at}, {}, {})",
        names.join(", "),
        p.tenant_id,
        p.id,
        p.invoice_id,
        p.status.as_str(),
        p.amount,
        p.currency.as_str(),
        p.gateway_reference.as_deref().unwrap_or_default(),
        p.version,
        values.join(", "),
    )
}

/// The payment as the first version stored it: its whole snapshot in `data`.
fn whole_row_sql(p: &Payment, created_at: &str) -> String {
    old_payment_sql(
        p,
        created_at,
        &[("data", serde_json::to_string(p).unwrap())],
    )
}

#[derive(QueryableByName, Debug)]
struct Whole {
    #[diesel(sql_type = diesel::sql_types::Text)]
    data: String,
}

/// The split row read back: the state without the details, and the two parts the payment
/// whole again (at this point `data` still repeats the columns, which the store no longer
/// reads that way; see `check_repeats`).
fn check_split(rows: Vec<DataRow>, original: &Payment) {
    assert_eq!(rows.len(), 1);
    let state: serde_json::Value = serde_json::from_str(&rows[0].data).unwrap();
    assert!(state.get("paymentMethod").is_none(), "{state}");
    assert!(state.get("status").is_some(), "{state}");
    assert_eq!(merged::<Payment>(&rows[0]), *original);
}

/// A projection row's details and data merged as JSON values.
fn merged<T: serde::de::DeserializeOwned>(row: &DataRow) -> T {
    let mut whole: serde_json::Value =
        serde_json::from_str(row.details.as_deref().unwrap()).unwrap();
    let state: serde_json::Value = serde_json::from_str(&row.data).unwrap();
    whole
        .as_object_mut()
        .unwrap()
        .extend(state.as_object().unwrap().clone());
    serde_json::from_value(whole).unwrap()
}

/// The snapshot after the split was reverted: whole again.
fn check_whole(rows: Vec<Whole>, original: &Payment) {
    let back: Payment = serde_json::from_str(&rows[0].data).unwrap();
    assert_eq!(&back, original);
}

fn select_split(d: Dialect) -> String {
    format!(
        "SELECT {} FROM payments",
        snapshot_columns(d, "payments", "")
    )
}

fn select_whole(d: Dialect) -> String {
    format!("SELECT {} AS data FROM payments", d.json_out("data"))
}

/// The migration that stores an invoice's details apart from its state.
const INVOICE_DETAILS_APART: &str = "invoice_details_apart";

/// An open invoice with a payment settled on it, with text that needs quoting.
fn invoice() -> Invoice {
    use crate::store::tests::fixtures::{at, attempt_payment, create_invoice, InvoiceSpec};
    let tenant = payrail_actors::domain::TenantId::new();
    let (mut invoice, _) = create_invoice(
        tenant,
        &InvoiceSpec {
            customer: "O'Brien \"Ltd\"",
            ..Default::default()
        },
    );
    attempt_payment(&mut invoice, 600, at(1));
    invoice.reservations.clear();
    invoice
}

/// The invoice as an earlier version stored it: its whole snapshot in `data`.
fn whole_invoice_sql(i: &Invoice, created_at: &str) -> String {
    format!(
        "INSERT INTO invoices (tenant_id, id, number, status, customer_name, currency, total, \
         created_at, version, data) VALUES ('{}', '{}', '{}', '{}', '{}', '{}', {}, \
         {created_at}, {}, '{}')",
        i.tenant_id,
        i.id,
        i.number,
        i.status.as_str(),
        i.details.customer_name.replace('\'', "''"),
        i.details.currency.as_str(),
        i.details.total,
        i.version,
        serde_json::to_string(i).unwrap().replace('\'', "''"),
    )
}

fn select_invoice_split(d: Dialect) -> String {
    format!(
        "SELECT {} FROM invoices",
        snapshot_columns(d, "invoices", "")
    )
}

/// The split row read back: the line items in the details, the status in the state (which a
/// later migration removes), and the two parts the invoice whole again.
fn check_invoice_split(rows: Vec<DataRow>, original: &Invoice) {
    assert_eq!(rows.len(), 1);
    let details: serde_json::Value =
        serde_json::from_str(rows[0].details.as_deref().unwrap()).unwrap();
    let state: serde_json::Value = serde_json::from_str(&rows[0].data).unwrap();
    assert!(details.get("lineItems").is_some(), "{details}");
    assert!(details.get("status").is_none(), "{details}");
    assert!(state.get("lineItems").is_none(), "{state}");
    assert!(state.get("amountPending").is_some(), "{state}");
    assert!(state.get("status").is_some(), "{state}");
    assert_eq!(&merged::<Invoice>(&rows[0]), original);
}

fn check_invoice_whole(rows: Vec<Whole>, original: &Invoice) {
    let back: Invoice = serde_json::from_str(&rows[0].data).unwrap();
    assert_eq!(&back, original);
}

fn payments_split<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
    Whole: QueryableByName<C::Db>,
{
    let original = payment();
    there_and_back(
        conn,
        DETAILS_APART,
        &whole_row_sql(&original, C::NOW),
        |c| check_split(c.rows(&select_split(C::DIALECT)), &original),
        |c| check_whole(c.rows(&select_whole(C::DIALECT)), &original),
    );
}

fn invoices_split<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    DataRow: QueryableByName<C::Db>,
    Whole: QueryableByName<C::Db>,
{
    let original = invoice();
    let whole = format!(
        "SELECT {} AS data FROM invoices",
        C::DIALECT.json_out("data")
    );
    there_and_back(
        conn,
        INVOICE_DETAILS_APART,
        &whole_invoice_sql(&original, C::NOW),
        |c| check_invoice_split(c.rows(&select_invoice_split(C::DIALECT)), &original),
        |c| check_invoice_whole(c.rows(&whole), &original),
    );
}

#[test]
fn sqlite_payments_are_split_into_details_and_state() {
    on_sqlite(payments_split);
}

#[tokio::test]
async fn postgres_payments_are_split_into_details_and_state() {
    on_postgres(payments_split).await;
}

#[test]
fn sqlite_invoices_are_split_into_details_and_state() {
    on_sqlite(invoices_split);
}

#[tokio::test]
async fn postgres_invoices_are_split_into_details_and_state() {
    on_postgres(invoices_split).await;
}
