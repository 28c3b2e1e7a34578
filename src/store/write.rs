//! How a batch writes its rows: multi-row inserts (`unnest` arrays on PostgreSQL, multi-row
//! `VALUES` on SQLite), plain updates of rows known to exist, and the numbered audit log. The
//! tables and their row builders are in `tables.rs`.

use payrail_actors::domain::{IdMap, TenantId};
use payrail_actors::ports::StoreError;
use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::rows::corrupt;
use super::stmt::{Bind, Day, Dialect, Key, Stmt};
use super::tables::{Sets, Table, EVENTS};

pub(crate) use super::tables::{
    event_row, idempotency_row, invoice_rest, invoice_row, invoice_sets, invoice_whole,
    payment_rest, payment_row, refund_rows, DEDUP, IDEMPOTENCY, INVOICES, PAYMENTS, REFUNDS,
};

/// Row counts of the multi-row `VALUES` statements on SQLite: a few fixed shapes keep the
/// prepared-statement cache small whatever the batch size.
const SQLITE_CHUNK_ROWS: [usize; 4] = [64, 16, 4, 1];

/// Rows keyed by `(tenant, id)` (the id's UUID: one table holds one kind of id): a later
/// snapshot of the same entity replaces the earlier one (a statement may not touch a row
/// twice), and the row's update then sets what either changed. Each row is written by an
/// insert (with an upsert's conflict clause) unless it was known to be stored when the batch
/// began: those get a plain `UPDATE` of the columns their changes set, which neither probes for
/// a conflict nor locks the row before changing it.
#[derive(Default)]
pub(crate) struct Upserts {
    index: IdMap<(TenantId, Uuid), usize>,
    rows: Vec<Upsert>,
}

struct Upsert {
    row: Vec<Bind>,
    stored: bool,
    sets: Sets,
}

impl Upserts {
    /// Room for `rows` rows without growing.
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Self {
            index: IdMap::with_capacity_and_hasher(rows, Default::default()),
            rows: Vec::with_capacity(rows),
        }
    }

    pub(crate) fn put(
        &mut self,
        (tenant, id): (TenantId, Uuid),
        row: Vec<Bind>,
        stored: bool,
        sets: Sets,
    ) {
        match self.index.entry((tenant, id)) {
            Entry::Occupied(i) => {
                let earlier = &mut self.rows[*i.get()];
                earlier.row = row;
                earlier.sets = earlier.sets.with(sets);
            }
            Entry::Vacant(slot) => {
                slot.insert(self.rows.len());
                self.rows.push(Upsert { row, stored, sets });
            }
        }
    }

    /// Whether `row`, put now for `key`, stops short of a column its write sets: an insert
    /// writes every column, an update those in its sets (with those of an earlier row for the
    /// key, which it replaces) but the fixed.
    pub(crate) fn lacks(
        &self,
        table: &Table,
        key: (TenantId, Uuid),
        row: &[Bind],
        stored: bool,
        sets: Sets,
    ) -> bool {
        if row.len() >= table.columns.len() {
            return false;
        }
        let (stored, sets) = match self.index.get(&key) {
            Some(&i) => (self.rows[i].stored, self.rows[i].sets.with(sets)),
            None => (stored, sets),
        };
        !stored || (row.len()..table.columns.len()).any(|i| updated(table, sets, i))
    }

    /// The statements writing these rows into `table`: the inserts, then the updates, one
    /// statement (PostgreSQL) or statement shape (SQLite) per set of columns updated.
    pub(crate) fn statements(self, d: Dialect, table: &Table) -> Result<Vec<Stmt>, StoreError> {
        let mut inserts = Vec::new();
        let mut updates: BTreeMap<Sets, Vec<Vec<Bind>>> = BTreeMap::new();
        for Upsert { row, stored, sets } in self.rows {
            if stored {
                updates.entry(sets).or_default().push(row);
            } else {
                inserts.push(row);
            }
        }
        let mut stmts = insert_rows(d, table, inserts)?;
        for (sets, rows) in updates {
            stmts.extend(update_rows(d, table, sets, rows)?);
        }
        Ok(stmts)
    }
}

/// Which of `table`'s columns, by position, an update setting `sets` binds: the key
/// `(tenant_id, id)` and every column in `sets` that is not fixed at insert.
fn updated_columns(table: &Table, sets: Sets) -> Vec<bool> {
    (0..table.columns.len())
        .map(|i| updated(table, sets, i))
        .collect()
}

/// Whether an update setting `sets` binds `table`'s column at position `i`.
fn updated(table: &Table, sets: Sets, i: usize) -> bool {
    i < 2 || (sets.has(i) && !table.fixed.contains(&table.columns[i]))
}

/// Updates of rows known to exist, each statement expecting every one of its rows. A row may
/// stop short of trailing columns its update does not set (`invoice_row`).
fn update_rows(
    d: Dialect,
    table: &Table,
    sets: Sets,
    rows: Vec<Vec<Bind>>,
) -> Result<Vec<Stmt>, StoreError> {
    let kept = updated_columns(table, sets);
    let names: Vec<&str> = table
        .columns
        .iter()
        .zip(&kept)
        .filter_map(|(&name, &kept)| kept.then_some(name))
        .collect();
    if rows.is_empty() || names.len() <= 2 {
        return Ok(Vec::new());
    }
    let mut narrowed = Vec::with_capacity(rows.len());
    for row in rows {
        if row.len() > kept.len() || kept[row.len()..].contains(&true) {
            return Err(wrong_width(table.name));
        }
        narrowed.push(
            row.into_iter()
                .zip(&kept)
                .filter_map(|(bind, &kept)| kept.then_some(bind))
                .collect::<Vec<_>>(),
        );
    }
    let count = narrowed.len();
    match d {
        Dialect::Postgres => {
            let (select, binds) = unnest_columns(table.name, &names, narrowed, |column, cast| {
                format!("{column} = u.{column}{cast}")
            })?;
            let sql = format!(
                "UPDATE {table} AS t SET {} FROM unnest({}) AS u({}) \
                 WHERE t.tenant_id = u.tenant_id AND t.id = u.id",
                select[2..].join(", "),
                vec!["?"; binds.len()].join(", "),
                names.join(", "),
                table = table.name,
            );
            Ok(vec![Stmt::new(sql, binds).expecting_rows(count)])
        }
        Dialect::Sqlite => {
            let sets: Vec<String> = names[2..].iter().map(|c| format!("{c} = ?")).collect();
            let sql = format!(
                "UPDATE {} SET {} WHERE tenant_id = ? AND id = ?",
                table.name,
                sets.join(", ")
            );
            Ok(narrowed
                .into_iter()
                .map(|mut row| {
                    // The key goes last, after the values it sets.
                    row.rotate_left(2);
                    Stmt::new(sql.clone(), row).expecting_rows(1)
                })
                .collect())
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
        Dialect::Sqlite => insert_values(table, rows),
    }
}

/// `INSERT … SELECT … FROM unnest(arrays) WITH ORDINALITY ORDER BY ord`: one statement shape
/// whatever the row count, rows (and so the event sequence) in the given order.
fn insert_unnest(table: &Table, rows: Vec<Vec<Bind>>) -> Result<Stmt, StoreError> {
    let (select, binds) = unnest_columns(table.name, table.columns, rows, |column, cast| {
        select_item(table, column, cast)
    })?;
    let names = table.columns.join(", ");
    let sql = format!(
        "INSERT INTO {} ({names}) SELECT {} FROM unnest({}) WITH ORDINALITY AS u({names}, ord) \
         ORDER BY u.ord{}",
        table.name,
        select.join(", "),
        vec!["?"; binds.len()].join(", "),
        conflict_clause(table)
    );
    Ok(Stmt::new(sql, binds))
}

/// The select items (from the bound row `u`, as `item` writes them) and the array binds of
/// `rows` (rows of `table` with the columns `names`), one array per column.
fn unnest_columns(
    table: &str,
    names: &[&str],
    rows: Vec<Vec<Bind>>,
    item: impl Fn(&str, &str) -> String,
) -> Result<(Vec<String>, Vec<Bind>), StoreError> {
    let width = names.len();
    let mut columns: Vec<Vec<Bind>> = (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
    for row in rows {
        if row.len() != width {
            return Err(wrong_width(table));
        }
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    let mut select = Vec::with_capacity(width);
    let mut binds = Vec::with_capacity(width);
    for (name, values) in names.iter().zip(columns) {
        let (array, cast) = to_array(values)?;
        select.push(item(name, cast));
        binds.push(array);
    }
    Ok((select, binds))
}

/// What an insert's `SELECT` takes for `column` from the bound row `u`.
fn select_item(table: &Table, column: &str, cast: &str) -> String {
    match table.derived.iter().find(|(name, _)| *name == column) {
        Some((_, expression)) => expression.to_string(),
        None => format!("u.{column}{cast}"),
    }
}

/// One column's scalars as an array bind, plus the cast its select item needs.
fn to_array(values: Vec<Bind>) -> Result<(Bind, &'static str), StoreError> {
    // The column's `$scalar` binds as one `$array` bind, each value as `$element` makes it
    // (itself by default); a bind of another type is an error.
    macro_rules! array {
        ($scalar:ident, $array:ident, $cast:literal) => {
            array!($scalar, $array, $cast, |value| value)
        };
        ($scalar:ident, $array:ident, $cast:literal, $element:expr) => {
            (
                Bind::$array(scalars(values, |v| match v {
                    Bind::$scalar(value, ..) => Some($element(value)),
                    _ => None,
                })?),
                $cast,
            )
        };
    }
    Ok(match values.first() {
        Some(Bind::Json(_)) => array!(Json, TextArr, "::json"),
        // Text held for good and text of its own may share a column (an event's actor: the
        // gateway, or an API key's name): borrowed while every value is the former.
        Some(Bind::Word(_)) if values.iter().all(|v| matches!(v, Bind::Word(_))) => {
            array!(Word, WordArr, "")
        }
        Some(Bind::Text(_) | Bind::Word(_)) => (
            Bind::TextArr(scalars(values, |v| match v {
                Bind::Text(text) => Some(text),
                Bind::Word(word) => Some(word.to_owned()),
                _ => None,
            })?),
            "",
        ),
        Some(Bind::Id(_)) => array!(Id, IdArr, ""),
        Some(Bind::OptText(_)) => array!(OptText, OptTextArr, ""),
        Some(Bind::I64(_)) => array!(I64, I64Arr, ""),
        Some(Bind::Ts(..)) => array!(Ts, TsArr, ""),
        Some(Bind::OptDate(_)) => {
            array!(OptDate, OptDateArr, "", |day: Option<Day>| day.map(|d| d.0))
        }
        Some(Bind::Key(_)) => array!(Key, KeyArr, "", |key: Key| key.uuid()),
        Some(Bind::OptKey(_)) => array!(OptKey, OptKeyArr, "", |key: Option<Key>| key
            .map(|k| k.uuid())),
        _ => return Err(corrupt("unsupported column type for a batch insert")),
    })
}

/// One column's values, each taken out of its bind by `value`; a bind of another type in the
/// column is an error.
fn scalars<T>(values: Vec<Bind>, value: impl Fn(Bind) -> Option<T>) -> Result<Vec<T>, StoreError> {
    values
        .into_iter()
        .map(|v| value(v).ok_or_else(|| corrupt("mixed bind types in one column")))
        .collect()
}

/// `OR FAIL ` for a table inserted without an upsert. A multi-row insert that may abort on a
/// constraint makes SQLite copy every page it changes into a statement journal, to undo the
/// statement alone; `OR FAIL` stops at the offending row without undoing the rows before it,
/// so no journal is kept. Nothing is left half-written: every statement here runs in a
/// transaction (or, unit by unit, a savepoint) that is rolled back whole when it fails. An
/// upsert's `DO UPDATE` aborts on other constraints whatever the insert says, so it keeps its
/// journal.
fn or_fail(table: &Table) -> &'static str {
    if table.upsert {
        ""
    } else {
        "OR FAIL "
    }
}

/// A row whose binds do not match the columns its statement writes: a bug, refused before
/// any SQL runs.
fn wrong_width(table: &str) -> StoreError {
    corrupt(format!("row of {table} has the wrong width"))
}

/// Multi-row `VALUES` in chunks of a few fixed sizes (SQLite).
fn insert_values(table: &Table, rows: Vec<Vec<Bind>>) -> Result<Vec<Stmt>, StoreError> {
    let width = table.columns.len();
    if rows.iter().any(|row| row.len() != width) {
        return Err(wrong_width(table.name));
    }
    // No spaces: diesel rebuilds, hashes and compares a statement's whole SQL text on every
    // execution to find it in its cache, and a 64-row insert of events has 768 placeholders.
    let tuple = format!("({})", vec!["?"; width].join(","));
    let mut stmts = Vec::new();
    let mut rest = rows.into_iter().peekable();
    let mut remaining = rest.len();
    while remaining > 0 {
        let size = SQLITE_CHUNK_ROWS
            .into_iter()
            .find(|&n| n <= remaining)
            .unwrap_or(1);
        let binds: Vec<Bind> = rest.by_ref().take(size).flatten().collect();
        let names = table.columns.join(", ");
        let values = vec![tuple.as_str(); size].join(",");
        let sql = if table.derived.is_empty() {
            format!(
                "INSERT {}INTO {} ({names}) VALUES {values}{}",
                or_fail(table),
                table.name,
                conflict_clause(table)
            )
        } else {
            let select: Vec<String> = table
                .columns
                .iter()
                .map(|c| select_item(table, c, ""))
                .collect();
            format!(
                "WITH u({names}) AS (VALUES {values}) INSERT {}INTO {} ({names}) SELECT {} FROM u",
                or_fail(table),
                table.name,
                select.join(", ")
            )
        };
        stmts.push(Stmt::new(sql, binds));
        remaining -= size;
    }
    Ok(stmts)
}

/// The inserts of `rows` (built by `event_row`) into the audit log, numbered per tenant: first
/// each tenant's counter moves past its events in the batch (taking the counter row's lock until
/// commit, so numbers follow commit order), then each row takes its number back from the counter.
pub(crate) fn insert_events(d: Dialect, mut rows: Vec<Vec<Bind>>) -> Result<Vec<Stmt>, StoreError> {
    // Each tenant's count of rows, and each row's tenant as its place in `counts`.
    let mut counts: Vec<(TenantId, i64)> = Vec::new();
    let mut places = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(&Bind::Key(Key::Tenant(tenant))) = row.first() else {
            return Err(corrupt("event row without its tenant"));
        };
        let place = match counts.iter().position(|(t, _)| *t == tenant) {
            Some(place) => place,
            None => {
                counts.push((tenant, 0));
                counts.len() - 1
            }
        };
        counts[place].1 += 1;
        places.push(place);
    }
    // A row's number counts back from its tenant's last: the tenant's first row takes
    // `total - 1`, its last `0`.
    let mut numbered = vec![0; counts.len()];
    for (row, &place) in rows.iter_mut().zip(&places) {
        numbered[place] += 1;
        row.push(Bind::I64(counts[place].1 - numbered[place]));
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    match d {
        Dialect::Postgres => Ok(vec![insert_events_numbered(counts, rows)?]),
        Dialect::Sqlite => {
            let mut stmts = bump_counters(counts);
            stmts.extend(insert_rows(d, &EVENTS, rows)?);
            Ok(stmts)
        }
    }
}

/// PostgreSQL: the counters' move and the events' insert as one statement. The counters return
/// each tenant's new last number and the events join it (a hash join of a few rows), instead of
/// looking the counter up again per event row. The counters are keyed by the tenant's TypeID
/// text, the events by its UUID: each tenant binds both, once.
///
/// A tenant's counter exists after its first event, so it is moved by a plain `UPDATE`; only a
/// tenant the update did not find is inserted. An upsert (`ON CONFLICT DO UPDATE`) of an
/// existing row first logs a lock of the row and then the update: one WAL record more per
/// tenant per batch. The insert keeps its conflict clause for a counter created by another
/// transaction since this statement's snapshot.
fn insert_events_numbered(
    counts: Vec<(TenantId, i64)>,
    rows: Vec<Vec<Bind>>,
) -> Result<Stmt, StoreError> {
    let texts: Vec<Key> = counts.iter().map(|&(t, _)| t.into()).collect();
    let uuids = counts.iter().map(|(t, _)| t.uuid()).collect();
    let ns = counts.iter().map(|&(_, n)| n).collect();
    let (select, event_binds) = unnest_columns(
        EVENTS.name,
        EVENTS.columns,
        rows,
        |column, cast| match column {
            "seq" => "b.last_seq - u.seq".to_owned(),
            _ => format!("u.{column}{cast}"),
        },
    )?;
    let names = EVENTS.columns.join(", ");
    let sql = format!(
        "WITH k AS (SELECT * FROM unnest(?, ?, ?) AS k(tenant_id, tk, n)), \
         m AS (UPDATE event_counters c SET last_seq = c.last_seq + k.n FROM k \
         WHERE c.tenant_id = k.tenant_id RETURNING c.tenant_id, c.last_seq), \
         f AS (INSERT INTO event_counters (tenant_id, last_seq) SELECT k.tenant_id, k.n FROM k \
         WHERE k.tenant_id NOT IN (SELECT tenant_id FROM m) {COUNTER_UPSERT} \
         RETURNING tenant_id, last_seq), \
         b AS (SELECT k.tk, x.last_seq FROM (SELECT * FROM m UNION ALL SELECT * FROM f) x \
         JOIN k ON k.tenant_id = x.tenant_id) \
         INSERT INTO events ({names}) SELECT {} FROM unnest({}) WITH ORDINALITY \
         AS u({names}, ord) JOIN b ON b.tk = u.tenant_id ORDER BY u.ord",
        select.join(", "),
        vec!["?"; event_binds.len()].join(", "),
    );
    let mut binds = vec![Bind::IdArr(texts), Bind::KeyArr(uuids), Bind::I64Arr(ns)];
    binds.extend(event_binds);
    Ok(Stmt::new(sql, binds))
}

const COUNTER_UPSERT: &str =
    "ON CONFLICT (tenant_id) DO UPDATE SET last_seq = event_counters.last_seq + excluded.last_seq";

/// SQLite: moves each tenant's event counter on by its count, creating the counter at the
/// first event (one cached statement per tenant of the batch).
fn bump_counters(counts: Vec<(TenantId, i64)>) -> Vec<Stmt> {
    counts
        .into_iter()
        .map(|(tenant, n)| {
            Stmt::new(
                format!("INSERT INTO event_counters (tenant_id, last_seq) VALUES (?, ?) {COUNTER_UPSERT}"),
                vec![Bind::id(tenant), Bind::I64(n)],
            )
        })
        .collect()
}
