//! Group commit, backend-neutral: what a batch must check (`keys`, `precheck`) and which units
//! pass given what is already stored (`plan`, the same rules as `memory.rs`); `write.rs` turns
//! the passing units into multi-row statements.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use payrail_actors::domain::invoice::format_number;
use payrail_actors::ports::{BatchFence, Snapshot, StoreError, Unit};

use super::rows::KeyRow;
use super::stmt::{Bind, Dialect, Stmt};
use super::write::{
    event_row, idempotency_row, insert_events, insert_rows, invoice_row, payment_row, refund_rows,
    Upserts, DEDUP, IDEMPOTENCY, INVOICES, PAYMENTS, REFUNDS,
};
/// The keys a batch must check against what is stored.
#[derive(Default)]
pub(crate) struct Keys {
    pub(crate) streams: Vec<(String, String)>,
    /// `(tenant, gateway event id, payment)`: recorded as applied for the tenant (on an event
    /// row), or as ignored for the payment (a dedup row).
    pub(crate) dedup: Vec<(String, String, String)>,
    pub(crate) idempotency: Vec<(String, String)>,
    /// Invoice numbers a creation takes, and the one before it, which must exist.
    pub(crate) numbers: Vec<(String, String)>,
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
        for (id, payment) in unit.gateway_events() {
            let k = (tenant.clone(), id.to_owned());
            if seen.insert(('d', k.clone())) {
                keys.dedup.push((k.0, k.1, payment.to_string()));
            }
        }
        if let Some(r) = &unit.idempotency {
            let k = (tenant.clone(), r.key.clone());
            if seen.insert(('i', k.clone())) {
                keys.idempotency.push(k);
            }
        }
        if let Some(n) = unit.invoice_number() {
            for number in [n.saturating_sub(1), n].into_iter().filter(|&m| m > 0) {
                let k = (tenant.clone(), format_number(number));
                if seen.insert(('n', k.clone())) {
                    keys.numbers.push(k);
                }
            }
        }
    }
    keys
}

fn split(pairs: &[(String, String)]) -> (Bind, Bind) {
    let (a, b): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
    (Bind::TextArr(a), Bind::TextArr(b))
}

fn split3(triples: &[(String, String, String)]) -> (Bind, Bind, Bind) {
    let mut columns: [Vec<String>; 3] = Default::default();
    for (a, b, c) in triples {
        columns[0].push(a.clone());
        columns[1].push(b.clone());
        columns[2].push(c.clone());
    }
    let [a, b, c] = columns.map(Bind::TextArr);
    (a, b, c)
}

/// The statements that read what a batch's keys already are (rows: `KeyRow`). PostgreSQL: one
/// round trip with array binds, each key probed through its primary-key index by a correlated
/// subquery (a join against `unnest` let the planner, blind to the array's length, hash-join a
/// sequential scan of the whole table once per batch). SQLite: one cached point query per key, all inside the one
/// blocking job, where a statement costs microseconds.
pub(crate) fn precheck(d: Dialect, keys: &Keys) -> Vec<Stmt> {
    match d {
        Dialect::Postgres => {
            let (vt, vs) = split(&keys.streams);
            let (dt, dg, dp) = split3(&keys.dedup);
            let (it, ik) = split(&keys.idempotency);
            let (nt, nn) = split(&keys.numbers);
            vec![Stmt::new(
                "SELECT 'v'::text AS kind, k.t AS tenant_id, k.s AS key, \
                   (SELECT max(e.version) FROM events e WHERE e.tenant_id = k.t AND e.stream_id = k.s) AS n \
                 FROM unnest(?, ?) AS k(t, s) \
                 UNION ALL SELECT 'd'::text, k.t, k.g, NULL::int8 FROM unnest(?, ?, ?) AS k(t, g, p) \
                 WHERE (SELECT 1 FROM webhook_dedup w WHERE w.tenant_id = k.t \
                        AND w.payment_id = k.p AND w.gateway_event_id = k.g LIMIT 1) IS NOT NULL \
                    OR (SELECT 1 FROM events e \
                        WHERE e.tenant_id = k.t AND e.gateway_event_id = k.g LIMIT 1) IS NOT NULL \
                 UNION ALL SELECT 'i'::text, k.t, k.g, NULL::int8 FROM unnest(?, ?) AS k(t, g) \
                 WHERE (SELECT 1 FROM idempotency_keys i \
                        WHERE i.tenant_id = k.t AND i.key = k.g LIMIT 1) IS NOT NULL \
                 UNION ALL SELECT 'n'::text, k.t, k.g, NULL::int8 FROM unnest(?, ?) AS k(t, g) \
                 WHERE (SELECT 1 FROM invoices i \
                        WHERE i.tenant_id = k.t AND i.number = k.g LIMIT 1) IS NOT NULL",
                vec![vt, vs, dt, dg, dp, it, ik, nt, nn],
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
            let dedup = keys.dedup.iter().flat_map(|(t, g, p)| {
                [
                    Stmt::new(
                        "SELECT 'd' AS kind, tenant_id, gateway_event_id AS key, NULL AS n \
                         FROM webhook_dedup \
                         WHERE tenant_id = ? AND payment_id = ? AND gateway_event_id = ?",
                        vec![Bind::text(t), Bind::text(p), Bind::text(g)],
                    ),
                    point(
                        "SELECT 'd' AS kind, tenant_id, gateway_event_id AS key, NULL AS n \
                         FROM events WHERE tenant_id = ? AND gateway_event_id = ?",
                        &(t.clone(), g.clone()),
                    ),
                ]
            });
            let idem = keys.idempotency.iter().map(|k| {
                point(
                    "SELECT 'i' AS kind, tenant_id, key, NULL AS n \
                     FROM idempotency_keys WHERE tenant_id = ? AND key = ?",
                    k,
                )
            });
            let numbers = keys.numbers.iter().map(|k| {
                point(
                    "SELECT 'n' AS kind, tenant_id, number AS key, NULL AS n \
                     FROM invoices WHERE tenant_id = ? AND number = ?",
                    k,
                )
            });
            versions.chain(dedup).chain(idem).chain(numbers).collect()
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
    numbers: HashSet<(String, String)>,
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
                "n" => {
                    existing.numbers.insert(key);
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
        for (id, _) in unit.gateway_events() {
            if self.dedup.contains(&(tenant.to_owned(), id.to_owned())) {
                return Err(StoreError::DuplicateGatewayEvent(id.to_owned()));
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
        if let Some(n) = unit.invoice_number() {
            let taken = |m: u64| {
                self.numbers
                    .contains(&(tenant.to_owned(), format_number(m)))
            };
            if (n > 1 && !taken(n - 1)) || taken(n) {
                return Err(StoreError::Fenced(format!("invoice number {n}")));
            }
        }
        Ok(())
    }

    /// The streams with events stored before the batch: their entities' projection rows
    /// exist (each was written in the transaction of its stream's first event).
    fn stored_streams(&self) -> HashSet<(String, String)> {
        self.versions
            .iter()
            .filter(|(_, &version)| version > 0)
            .map(|(key, _)| key.clone())
            .collect()
    }

    fn record(&mut self, tenant: &str, unit: &Unit) {
        for append in &unit.streams {
            let version = append.expected_version + append.events.len() as u64;
            self.versions
                .insert((tenant.to_owned(), append.stream.to_string()), version);
        }
        for (id, _) in unit.gateway_events() {
            self.dedup.insert((tenant.to_owned(), id.to_owned()));
        }
        if let Some(record) = &unit.idempotency {
            self.idempotency
                .insert((tenant.to_owned(), record.key.clone()));
        }
        if let Some(n) = unit.invoice_number() {
            self.numbers.insert((tenant.to_owned(), format_number(n)));
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
    fn add(
        &mut self,
        tenant: &str,
        unit: &Unit,
        now: DateTime<Utc>,
        stored: &HashSet<(String, String)>,
    ) -> Result<(), StoreError> {
        let mut invoices = Vec::new();
        let mut payments = Vec::new();
        let mut refunds = Vec::new();
        for snapshot in &unit.snapshots {
            let owner = match snapshot {
                Snapshot::Invoice(i) => i.tenant_id,
                Snapshot::Payment(p) => p.tenant_id,
            };
            // Invariant 4: a unit never writes another tenant's rows.
            if owner.to_string() != tenant {
                return Err(StoreError::Corrupt(format!(
                    "snapshot of tenant {owner} in a unit of tenant {tenant}"
                )));
            }
            match snapshot {
                Snapshot::Invoice(i) => invoices.push((i.id.to_string(), invoice_row(tenant, i)?)),
                Snapshot::Payment(p) => {
                    payments.push((p.id.to_string(), payment_row(tenant, p)?));
                    refunds.extend(refund_rows(tenant, p)?);
                }
            }
        }
        let mut events = Vec::with_capacity(unit.event_count());
        for append in &unit.streams {
            for event in &append.events {
                events.push(event_row(tenant, event)?);
            }
        }
        self.events.extend(events);
        let is_stored = |id: &String| stored.contains(&(tenant.to_owned(), id.clone()));
        for (id, row) in invoices {
            let known = is_stored(&id);
            self.invoices.put(tenant, id, row, known);
        }
        for (id, row) in payments {
            let known = is_stored(&id);
            self.payments.put(tenant, id, row, known);
        }
        // A refund is no stream of its own: whether its row exists is not known here.
        for (id, row) in refunds {
            self.refunds.put(tenant, id, row, false);
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
            self.idempotency.push(idempotency_row(tenant, r));
        }
        Ok(())
    }

    pub(crate) fn statements(self, d: Dialect) -> Result<Vec<Stmt>, StoreError> {
        let mut stmts = insert_events(d, self.events)?;
        stmts.extend(self.invoices.statements(d, &INVOICES)?);
        stmts.extend(self.payments.statements(d, &PAYMENTS)?);
        stmts.extend(self.refunds.statements(d, &REFUNDS)?);
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
    let stored = existing.stored_streams();
    let mut results = Vec::with_capacity(units.len());
    let mut fence = BatchFence::default();
    for unit in units {
        let Some(tenant) = unit.tenant_id.map(|t| t.to_string()) else {
            results.push(Err(StoreError::Corrupt("unit without tenant".into())));
            continue;
        };
        let result = fence.guard(unit, || {
            existing.check(&tenant, unit)?;
            writes.add(&tenant, unit, now, &stored)
        });
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
