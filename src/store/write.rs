//! The rows a batch writes and how: table shapes, row builders (shared with the projection
//! rebuild) and multi-row inserts (`unnest` arrays on PostgreSQL, multi-row `VALUES` on SQLite).

use payrail_actors::domain::{Event, Invoice, Payment};
use payrail_actors::ports::{IdempotencyRecord, StoreError};
use std::collections::HashMap;

use super::rows::corrupt;
use super::stmt::{Bind, Dialect, Stmt};

/// Row counts of the multi-row `VALUES` statements on SQLite: a few fixed shapes keep the
/// prepared-statement cache small whatever the batch size.
const SQLITE_CHUNK_ROWS: [usize; 4] = [64, 16, 4, 1];

/// A table the batch writes, with its columns in bind order.
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: &'static [&'static str],
    /// Upserted on `(tenant_id, id)` (projections) rather than plainly inserted.
    pub(crate) upsert: bool,
    /// Columns an upsert never rewrites (set once, at insert). Left out of `DO UPDATE SET`,
    /// SQLite leaves the indexes on them alone instead of rewriting their entries per change.
    pub(crate) fixed: &'static [&'static str],
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
    ],
    upsert: false,
    fixed: &[],
};

pub(crate) const INVOICES: Table = Table {
    name: "invoices",
    columns: &[
        "tenant_id",
        "id",
        "number",
        "status",
        "customer_name",
        "customer_email",
        "currency",
        "total",
        "due_date",
        "created_at",
        "version",
        "data",
    ],
    upsert: true,
    fixed: &["number", "created_at"],
};

pub(crate) const PAYMENTS: Table = Table {
    name: "payments",
    columns: &[
        "tenant_id",
        "id",
        "invoice_id",
        "status",
        "amount",
        "currency",
        "gateway_reference",
        "created_at",
        "version",
        "data",
    ],
    upsert: true,
    fixed: &["invoice_id", "amount", "currency", "created_at"],
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
};

pub(crate) const DEDUP: Table = Table {
    name: "webhook_dedup",
    columns: &["tenant_id", "gateway_event_id", "payment_id", "created_at"],
    upsert: false,
    fixed: &[],
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

pub(crate) fn event_row(tenant: &str, event: &Event) -> Result<Vec<Bind>, StoreError> {
    let data = event.data.data_json().map_err(corrupt)?;
    Ok(vec![
        Bind::text(tenant),
        Bind::Text(event.stream.to_string()),
        Bind::I64(event.version as i64),
        Bind::Text(event.id.to_string()),
        Bind::text(event.event_type()),
        Bind::OptText(event.invoice_id.map(|i| i.to_string())),
        Bind::Text(event.subject_id()),
        Bind::Text(event.actor.clone()),
        Bind::OptText(event.gateway_event_id.clone()),
        Bind::Json(data.to_string()),
        Bind::ts(event.occurred_at),
    ])
}

pub(crate) fn invoice_row(tenant: &str, invoice: &Invoice) -> Result<Vec<Bind>, StoreError> {
    Ok(vec![
        Bind::text(tenant),
        Bind::Text(invoice.id.to_string()),
        Bind::Text(invoice.number.clone()),
        Bind::text(invoice.status.as_str()),
        Bind::Text(invoice.details.customer_name.clone()),
        Bind::OptText(invoice.details.customer_email.clone()),
        Bind::text(invoice.details.currency.as_str()),
        Bind::I64(invoice.details.total),
        Bind::opt_date(invoice.details.due_date),
        Bind::ts(invoice.created_at),
        Bind::I64(invoice.version as i64),
        Bind::Json(serde_json::to_string(invoice).map_err(corrupt)?),
    ])
}

pub(crate) fn payment_row(tenant: &str, payment: &Payment) -> Result<Vec<Bind>, StoreError> {
    Ok(vec![
        Bind::text(tenant),
        Bind::Text(payment.id.to_string()),
        Bind::Text(payment.invoice_id.to_string()),
        Bind::text(payment.status.as_str()),
        Bind::I64(payment.amount),
        Bind::text(payment.currency.as_str()),
        Bind::OptText(payment.gateway_reference.clone()),
        Bind::ts(payment.created_at),
        Bind::I64(payment.version as i64),
        Bind::Json(serde_json::to_string(payment).map_err(corrupt)?),
    ])
}

/// A payment's refunds as `(refund id, row)`.
pub(crate) fn refund_rows(
    tenant: &str,
    payment: &Payment,
) -> Result<Vec<(String, Vec<Bind>)>, StoreError> {
    payment
        .refunds
        .iter()
        .map(|r| {
            let id = r.id.to_string();
            let row = vec![
                Bind::text(tenant),
                Bind::Text(id.clone()),
                Bind::Text(r.payment_id.to_string()),
                Bind::text(r.status.as_str()),
                Bind::I64(r.amount),
                Bind::ts(r.created_at),
                Bind::Json(serde_json::to_string(r).map_err(corrupt)?),
            ];
            Ok((id, row))
        })
        .collect()
}

/// Rows keyed by `(tenant, id)`: a later snapshot of the same entity replaces the earlier one
/// (an upsert may not touch a row twice in one statement).
#[derive(Default)]
pub(crate) struct Upserts {
    index: HashMap<(String, String), usize>,
    pub(crate) rows: Vec<Vec<Bind>>,
}

impl Upserts {
    pub(crate) fn put(&mut self, tenant: &str, id: String, row: Vec<Bind>) {
        match self.index.get(&(tenant.to_owned(), id.clone())) {
            Some(&i) => self.rows[i] = row,
            None => {
                self.index.insert((tenant.to_owned(), id), self.rows.len());
                self.rows.push(row);
            }
        }
    }
}

fn conflict_clause(table: &Table) -> String {
    if !table.upsert {
        return String::new();
    }
    let sets: Vec<String> = table.columns[2..]
        .iter()
        .filter(|c| !table.fixed.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        " ON CONFLICT (tenant_id, id) DO UPDATE SET {}",
        sets.join(", ")
    )
}

/// Multi-row inserts of `rows` (each in `table.columns` order) into `table`.
pub(crate) fn insert_rows(
    d: Dialect,
    table: &Table,
    rows: Vec<Vec<Bind>>,
) -> Result<Vec<Stmt>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    match d {
        Dialect::Postgres => Ok(vec![insert_unnest(table, rows)?]),
        Dialect::Sqlite => Ok(insert_values(table, rows)),
    }
}

/// `INSERT … SELECT … FROM unnest(arrays) WITH ORDINALITY ORDER BY ord`: one statement shape
/// whatever the row count, rows (and so the event sequence) in the given order.
fn insert_unnest(table: &Table, rows: Vec<Vec<Bind>>) -> Result<Stmt, StoreError> {
    let width = table.columns.len();
    let mut columns: Vec<Vec<Bind>> = (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
    for row in rows {
        if row.len() != width {
            return Err(corrupt(format!(
                "row of {} has the wrong width",
                table.name
            )));
        }
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    let mut select = Vec::with_capacity(width);
    let mut binds = Vec::with_capacity(width);
    for (name, values) in table.columns.iter().zip(columns) {
        let (array, cast) = to_array(values)?;
        select.push(format!("u.{name}{cast}"));
        binds.push(array);
    }
    let names = table.columns.join(", ");
    let sql = format!(
        "INSERT INTO {} ({names}) SELECT {} FROM unnest({}) WITH ORDINALITY AS u({names}, ord) \
         ORDER BY u.ord{}",
        table.name,
        select.join(", "),
        vec!["?"; width].join(", "),
        conflict_clause(table)
    );
    Ok(Stmt::new(sql, binds))
}

/// One column's scalars as an array bind, plus the cast its select item needs.
fn to_array(values: Vec<Bind>) -> Result<(Bind, &'static str), StoreError> {
    let mismatch = || corrupt("mixed bind types in one column");
    Ok(match values.first() {
        Some(Bind::Text(_)) | Some(Bind::Json(_)) => {
            let json = matches!(values.first(), Some(Bind::Json(_)));
            let texts = values
                .into_iter()
                .map(|v| match v {
                    Bind::Text(s) | Bind::Json(s) => Ok(s),
                    _ => Err(mismatch()),
                })
                .collect::<Result<_, _>>()?;
            (Bind::TextArr(texts), if json { "::json" } else { "" })
        }
        Some(Bind::OptText(_)) => {
            let texts = values
                .into_iter()
                .map(|v| match v {
                    Bind::OptText(s) => Ok(s),
                    _ => Err(mismatch()),
                })
                .collect::<Result<_, _>>()?;
            (Bind::OptTextArr(texts), "")
        }
        Some(Bind::I64(_)) => {
            let ints = values
                .into_iter()
                .map(|v| match v {
                    Bind::I64(n) => Ok(n),
                    _ => Err(mismatch()),
                })
                .collect::<Result<_, _>>()?;
            (Bind::I64Arr(ints), "")
        }
        Some(Bind::Ts(..)) => {
            let ts = values
                .into_iter()
                .map(|v| match v {
                    Bind::Ts(t, _) => Ok(t),
                    _ => Err(mismatch()),
                })
                .collect::<Result<_, _>>()?;
            (Bind::TsArr(ts), "")
        }
        Some(Bind::OptDate(..)) => {
            let dates = values
                .into_iter()
                .map(|v| match v {
                    Bind::OptDate(d, _) => Ok(d),
                    _ => Err(mismatch()),
                })
                .collect::<Result<_, _>>()?;
            (Bind::OptDateArr(dates), "")
        }
        _ => return Err(corrupt("unsupported column type for a batch insert")),
    })
}

/// Multi-row `VALUES` in chunks of a few fixed sizes (SQLite).
fn insert_values(table: &Table, rows: Vec<Vec<Bind>>) -> Vec<Stmt> {
    let width = table.columns.len();
    let tuple = format!("({})", vec!["?"; width].join(", "));
    let mut stmts = Vec::new();
    let mut rest = rows.into_iter().peekable();
    let mut remaining = rest.len();
    while remaining > 0 {
        let size = SQLITE_CHUNK_ROWS
            .into_iter()
            .find(|&n| n <= remaining)
            .unwrap_or(1);
        let binds: Vec<Bind> = rest.by_ref().take(size).flatten().collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}{}",
            table.name,
            table.columns.join(", "),
            vec![tuple.as_str(); size].join(", "),
            conflict_clause(table)
        );
        stmts.push(Stmt::new(sql, binds));
        remaining -= size;
    }
    stmts
}
