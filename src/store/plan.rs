//! Group commit, backend-neutral: what a batch must check (`keys`, `precheck`), which units pass
//! given what is already stored (`plan`, the same rules as `memory.rs`), and the multi-row
//! statements that write the passing ones (`insert_rows`: `unnest` arrays on PostgreSQL, multi-row
//! `VALUES` on SQLite).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use payrail_actors::domain::{Event, Invoice, Payment};
use payrail_actors::ports::{Snapshot, StoreError, Unit};

use super::rows::{corrupt, KeyRow};
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
};

const DEDUP: Table = Table {
    name: "webhook_dedup",
    columns: &["tenant_id", "gateway_event_id", "payment_id", "created_at"],
    upsert: false,
};

const IDEMPOTENCY: Table = Table {
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
};

pub(crate) fn event_row(tenant: &str, event: &Event) -> Vec<Bind> {
    vec![
        Bind::text(tenant),
        Bind::Text(event.stream.to_string()),
        Bind::I64(event.version as i64),
        Bind::Text(event.id.to_string()),
        Bind::text(event.event_type()),
        Bind::OptText(event.invoice_id.map(|i| i.to_string())),
        Bind::Text(event.subject_id()),
        Bind::Text(event.actor.clone()),
        Bind::OptText(event.gateway_event_id.clone()),
        Bind::Json(event.data.data_json().to_string()),
        Bind::ts(event.occurred_at),
    ]
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

/// The keys a batch must check against what is stored.
#[derive(Default)]
pub(crate) struct Keys {
    pub(crate) streams: Vec<(String, String)>,
    pub(crate) dedup: Vec<(String, String)>,
    pub(crate) idempotency: Vec<(String, String)>,
}

pub(crate) fn keys(units: &[Unit]) -> Keys {
    let mut seen = HashSet::new();
    let mut keys = Keys::default();
    for unit in units {
        let Some(tenant) = unit.tenant_id.map(|t| t.to_string()) else {
            continue;
        };
        for s in &unit.streams {
            let k = (tenant.clone(), s.stream.to_string());
            if seen.insert(('v', k.clone())) {
                keys.streams.push(k);
            }
        }
        for d in &unit.dedup_keys {
            let k = (tenant.clone(), d.gateway_event_id.clone());
            if seen.insert(('d', k.clone())) {
                keys.dedup.push(k);
            }
        }
        if let Some(r) = &unit.idempotency {
            let k = (tenant.clone(), r.key.clone());
            if seen.insert(('i', k.clone())) {
                keys.idempotency.push(k);
            }
        }
    }
    keys
}

fn split(pairs: &[(String, String)]) -> (Bind, Bind) {
    let (a, b): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
    (Bind::TextArr(a), Bind::TextArr(b))
}

/// The statements that read what a batch's keys already are (rows: `KeyRow`). PostgreSQL: one
/// round trip with array binds. SQLite: one cached point query per key, all inside the one
/// blocking job, where a statement costs microseconds.
pub(crate) fn precheck(d: Dialect, keys: &Keys) -> Vec<Stmt> {
    match d {
        Dialect::Postgres => {
            let (vt, vs) = split(&keys.streams);
            let (dt, dg) = split(&keys.dedup);
            let (it, ik) = split(&keys.idempotency);
            vec![Stmt::new(
                "SELECT 'v'::text AS kind, k.t AS tenant_id, k.s AS key, \
                   (SELECT max(e.version) FROM events e WHERE e.tenant_id = k.t AND e.stream_id = k.s) AS n \
                 FROM unnest(?, ?) AS k(t, s) \
                 UNION ALL SELECT 'd'::text, w.tenant_id, w.gateway_event_id, NULL::int8 \
                 FROM webhook_dedup w JOIN unnest(?, ?) AS k(t, g) ON w.tenant_id = k.t AND w.gateway_event_id = k.g \
                 UNION ALL SELECT 'i'::text, i.tenant_id, i.key, NULL::int8 \
                 FROM idempotency_keys i JOIN unnest(?, ?) AS k(t, g) ON i.tenant_id = k.t AND i.key = k.g",
                vec![vt, vs, dt, dg, it, ik],
            )]
        }
        Dialect::Sqlite => {
            let point = |sql: &str, (t, k): &(String, String)| {
                Stmt::new(sql, vec![Bind::text(t), Bind::text(k)])
            };
            let versions = keys.streams.iter().map(|k| {
                point(
                    "SELECT 'v' AS kind, tenant_id, stream_id AS key, max(version) AS n FROM events \
                     WHERE tenant_id = ? AND stream_id = ? GROUP BY tenant_id, stream_id",
                    k,
                )
            });
            let dedup = keys.dedup.iter().map(|k| {
                point(
                    "SELECT 'd' AS kind, tenant_id, gateway_event_id AS key, NULL AS n \
                     FROM webhook_dedup WHERE tenant_id = ? AND gateway_event_id = ?",
                    k,
                )
            });
            let idem = keys.idempotency.iter().map(|k| {
                point(
                    "SELECT 'i' AS kind, tenant_id, key, NULL AS n \
                     FROM idempotency_keys WHERE tenant_id = ? AND key = ?",
                    k,
                )
            });
            versions.chain(dedup).chain(idem).collect()
        }
    }
}

/// What is already stored for a batch's keys; updated as units pass, so later units in a batch
/// see the effects of earlier ones (as in `memory.rs`).
#[derive(Default)]
pub(crate) struct Existing {
    versions: HashMap<(String, String), u64>,
    dedup: HashSet<(String, String)>,
    idempotency: HashSet<(String, String)>,
}

impl Existing {
    pub(crate) fn from_rows(rows: Vec<KeyRow>) -> Self {
        let mut existing = Self::default();
        for row in rows {
            let key = (row.tenant_id, row.key);
            match row.kind.as_str() {
                "v" => {
                    let version = row.n.unwrap_or(0).max(0) as u64;
                    existing.versions.insert(key, version);
                }
                "d" => {
                    existing.dedup.insert(key);
                }
                _ => {
                    existing.idempotency.insert(key);
                }
            }
        }
        existing
    }

    fn check(&self, tenant: &str, unit: &Unit) -> Result<(), StoreError> {
        for append in &unit.streams {
            let stream = append.stream.to_string();
            let current = self
                .versions
                .get(&(tenant.to_owned(), stream.clone()))
                .copied()
                .unwrap_or(0);
            if current != append.expected_version {
                return Err(StoreError::VersionConflict(stream));
            }
            for (i, event) in append.events.iter().enumerate() {
                if event.version != append.expected_version + 1 + i as u64
                    || event.stream != append.stream
                    || event.tenant_id.to_string() != tenant
                {
                    return Err(StoreError::Corrupt(format!(
                        "event {} does not belong at its place in {stream}",
                        event.id
                    )));
                }
            }
        }
        for key in &unit.dedup_keys {
            if self
                .dedup
                .contains(&(tenant.to_owned(), key.gateway_event_id.clone()))
            {
                return Err(StoreError::DuplicateGatewayEvent(
                    key.gateway_event_id.clone(),
                ));
            }
        }
        if let Some(record) = &unit.idempotency {
            if self
                .idempotency
                .contains(&(tenant.to_owned(), record.key.clone()))
            {
                return Err(StoreError::IdempotencyKeyTaken);
            }
        }
        Ok(())
    }

    fn record(&mut self, tenant: &str, unit: &Unit) {
        for append in &unit.streams {
            let version = append.expected_version + append.events.len() as u64;
            self.versions
                .insert((tenant.to_owned(), append.stream.to_string()), version);
        }
        for key in &unit.dedup_keys {
            self.dedup
                .insert((tenant.to_owned(), key.gateway_event_id.clone()));
        }
        if let Some(record) = &unit.idempotency {
            self.idempotency
                .insert((tenant.to_owned(), record.key.clone()));
        }
    }
}

/// The rows of the units that passed.
#[derive(Default)]
pub(crate) struct Writes {
    pub(crate) events: Vec<Vec<Bind>>,
    pub(crate) invoices: Upserts,
    pub(crate) payments: Upserts,
    pub(crate) refunds: Upserts,
    dedup: Vec<Vec<Bind>>,
    idempotency: Vec<Vec<Bind>>,
}

impl Writes {
    /// Adds a unit's rows; on error nothing of the unit is added.
    fn add(&mut self, tenant: &str, unit: &Unit, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut invoices = Vec::new();
        let mut payments = Vec::new();
        let mut refunds = Vec::new();
        for snapshot in &unit.snapshots {
            match snapshot {
                Snapshot::Invoice(i) => invoices.push((i.id.to_string(), invoice_row(tenant, i)?)),
                Snapshot::Payment(p) => {
                    payments.push((p.id.to_string(), payment_row(tenant, p)?));
                    refunds.extend(refund_rows(tenant, p)?);
                }
            }
        }
        for append in &unit.streams {
            self.events
                .extend(append.events.iter().map(|e| event_row(tenant, e)));
        }
        for (id, row) in invoices {
            self.invoices.put(tenant, id, row);
        }
        for (id, row) in payments {
            self.payments.put(tenant, id, row);
        }
        for (id, row) in refunds {
            self.refunds.put(tenant, id, row);
        }
        for key in &unit.dedup_keys {
            self.dedup.push(vec![
                Bind::text(tenant),
                Bind::Text(key.gateway_event_id.clone()),
                Bind::Text(key.payment_id.to_string()),
                Bind::ts(now),
            ]);
        }
        if let Some(r) = &unit.idempotency {
            self.idempotency.push(vec![
                Bind::text(tenant),
                Bind::Text(r.key.clone()),
                Bind::Text(r.fingerprint.clone()),
                Bind::I64(i64::from(r.status)),
                Bind::Text(r.body.clone()),
                Bind::ts(r.created_at),
            ]);
        }
        Ok(())
    }

    pub(crate) fn statements(self, d: Dialect) -> Result<Vec<Stmt>, StoreError> {
        let mut stmts = insert_rows(d, &EVENTS, self.events)?;
        stmts.extend(insert_rows(d, &INVOICES, self.invoices.rows)?);
        stmts.extend(insert_rows(d, &PAYMENTS, self.payments.rows)?);
        stmts.extend(insert_rows(d, &REFUNDS, self.refunds.rows)?);
        stmts.extend(insert_rows(d, &DEDUP, self.dedup)?);
        stmts.extend(insert_rows(d, &IDEMPOTENCY, self.idempotency)?);
        Ok(stmts)
    }
}

/// The outcome of planning a batch: one result per unit and the statements writing the
/// units that passed.
pub(crate) struct Planned {
    pub(crate) results: Vec<Result<(), StoreError>>,
    pub(crate) statements: Vec<Stmt>,
}

pub(crate) fn plan(
    d: Dialect,
    units: &[Unit],
    mut existing: Existing,
    now: DateTime<Utc>,
) -> Result<Planned, StoreError> {
    let mut writes = Writes::default();
    let mut results = Vec::with_capacity(units.len());
    for unit in units {
        let Some(tenant) = unit.tenant_id.map(|t| t.to_string()) else {
            results.push(Err(StoreError::Corrupt("unit without tenant".into())));
            continue;
        };
        let result = existing
            .check(&tenant, unit)
            .and_then(|()| writes.add(&tenant, unit, now));
        if result.is_ok() {
            existing.record(&tenant, unit);
        }
        results.push(result);
    }
    Ok(Planned {
        results,
        statements: writes.statements(d)?,
    })
}

fn conflict_clause(table: &Table) -> String {
    if !table.upsert {
        return String::new();
    }
    let sets: Vec<String> = table.columns[2..]
        .iter()
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
            (Bind::TextArr(texts), if json { "::jsonb" } else { "" })
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
