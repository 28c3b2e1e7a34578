//! Group commit, backend-neutral: what a batch must check (`keys`, `precheck`) and which units
//! pass given what is already stored (`plan`, the same rules as `memory.rs`); `write.rs` turns
//! the passing units into multi-row statements.

use chrono::{DateTime, Utc};
use payrail_actors::domain::invoice::format_number;
use payrail_actors::domain::{IdMap, IdSet, StreamId, TenantId};
use payrail_actors::ports::{BatchFence, StoreError, Unit};
use uuid::Uuid;

use super::rows::KeyRow;
use super::stmt::{Bind, Dialect, Key, Stmt};
use super::tables::Sets;
use super::unit_rows::{rest_of, unsnapshotted_invoices, UnitRows};
use super::write::{
    insert_events, insert_rows, Upserts, DEDUP, IDEMPOTENCY, INVOICES, PAYMENTS, REFUNDS,
};

/// A tenant's stream: what a version belongs to.
pub(crate) type StreamKey = (TenantId, StreamId);

/// The keys a batch must check against what is stored. Typed: they become text only in the
/// pre-check's binds, and what the pre-check finds is parsed back once.
#[derive(Default)]
pub(crate) struct Keys {
    pub(crate) streams: Vec<StreamKey>,
    /// `(tenant, gateway event id, payment)`: recorded as applied for the tenant (on an event
    /// row), or as ignored for the payment (a dedup row).
    pub(crate) dedup: Vec<(TenantId, String, StreamId)>,
    pub(crate) idempotency: Vec<(TenantId, String)>,
    /// Invoice numbers a creation takes, and the one before it, which must exist.
    pub(crate) numbers: Vec<(TenantId, u64)>,
}

impl Keys {
    /// Nothing to check.
    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
            && self.dedup.is_empty()
            && self.idempotency.is_empty()
            && self.numbers.is_empty()
    }
}

/// What a batch takes as stored without reading it (`Committed::trusting_keys`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Vouched {
    /// The versions streams are at.
    pub(crate) versions: Vec<(StreamKey, u64)>,
    /// Invoice numbers taken: a tenant's last one, which the batch's first creation follows.
    pub(crate) numbers: Vec<(TenantId, u64)>,
}

/// Every key of `units` a batch checks when it trusts nothing.
pub(crate) fn keys(units: &[Unit]) -> Keys {
    collect_keys(units, true, |_, _| false, |_, _| false)
}

/// The keys of `units` whose state a batch must read even when its gateway event and
/// idempotency keys are left to their unique indexes: streams and invoice numbers. A stream
/// for which `vouched(stream, version its first unit expects)` holds is left out, and so is an
/// invoice number `n` for which `follows(tenant, n)` holds (with the number before it).
pub(crate) fn version_keys(
    units: &[Unit],
    vouched: impl FnMut(StreamKey, u64) -> bool,
    follows: impl FnMut(TenantId, u64) -> bool,
) -> Keys {
    collect_keys(units, false, vouched, follows)
}

fn collect_keys(
    units: &[Unit],
    unique_keys: bool,
    mut vouched: impl FnMut(StreamKey, u64) -> bool,
    mut follows: impl FnMut(TenantId, u64) -> bool,
) -> Keys {
    let mut streams = IdSet::default();
    let mut dedup = IdSet::default();
    let mut idempotency = IdSet::default();
    let mut numbers = IdSet::default();
    let mut keys = Keys::default();
    for unit in units {
        let Some(tenant) = unit.tenant_id else {
            continue;
        };
        for s in &unit.streams {
            let key = (tenant, s.stream);
            if streams.insert(key) && !vouched(key, s.expected_version) {
                keys.streams.push(key);
            }
        }
        if unique_keys {
            for (id, payment) in unit.gateway_events() {
                if dedup.insert((tenant, id)) {
                    keys.dedup.push((tenant, id.to_owned(), payment));
                }
            }
            if let Some(r) = &unit.idempotency {
                if idempotency.insert((tenant, r.key.as_str())) {
                    keys.idempotency.push((tenant, r.key.clone()));
                }
            }
        }
        if let Some(n) = unit.invoice_number().filter(|&n| !follows(tenant, n)) {
            for number in [n.saturating_sub(1), n].into_iter().filter(|&m| m > 0) {
                if numbers.insert((tenant, number)) {
                    keys.numbers.push((tenant, number));
                }
            }
        }
    }
    keys
}

fn texts<T>(items: &[T], text: impl Fn(&T) -> String) -> Bind {
    Bind::TextArr(items.iter().map(text).collect())
}

/// Ids as their TypeID text (`Bind::IdArr`).
fn ids<T>(items: &[T], id: impl Fn(&T) -> Key) -> Bind {
    Bind::IdArr(items.iter().map(id).collect())
}

fn uuids<T>(items: &[T], uuid: impl Fn(&T) -> Uuid) -> Bind {
    Bind::KeyArr(items.iter().map(uuid).collect())
}

/// What a pre-check row found (`KeyRow::kind`): a stream's version, a gateway event
/// recorded, an idempotency key taken, an invoice number taken. The pre-check's statements
/// write these numbers as literals (`precheck`, `PG_PRECHECK`).
#[derive(Clone, Copy)]
pub(crate) enum Found {
    Version = 0,
    GatewayEvent = 1,
    Idempotency = 2,
    Number = 3,
}

impl Found {
    fn of(kind: i64) -> Option<Self> {
        [
            Self::Version,
            Self::GatewayEvent,
            Self::Idempotency,
            Self::Number,
        ]
        .into_iter()
        .find(|found| *found as i64 == kind)
    }
}

/// PostgreSQL's pre-check (binds, each an array: the streams' tenants' UUIDs and UUIDs; the
/// gateway events' tenants, tenants' UUIDs, ids and payments; the idempotency keys' tenants and
/// keys; the invoice numbers' tenants and numbers). Each row names its key by kind (`Found`)
/// and position (`ORDINALITY` counts from 1).
pub(crate) const PG_PRECHECK: &str = "SELECT 0::int8 AS kind, k.i - 1 AS key, \
       (SELECT max(e.version) FROM events e WHERE e.tenant_id = k.tk AND e.stream_id = k.s) AS n \
     FROM unnest(?, ?) WITH ORDINALITY AS k(tk, s, i) \
     UNION ALL SELECT 1, k.i - 1, NULL::int8 \
     FROM unnest(?, ?, ?, ?) WITH ORDINALITY AS k(t, tk, g, p, i) \
     WHERE (SELECT 1 FROM webhook_dedup w WHERE w.tenant_id = k.t \
            AND w.payment_id = k.p AND w.gateway_event_id = k.g LIMIT 1) IS NOT NULL \
        OR (SELECT 1 FROM events e \
            WHERE e.tenant_id = k.tk AND e.gateway_event_id = k.g LIMIT 1) IS NOT NULL \
     UNION ALL SELECT 2, k.i - 1, NULL::int8 FROM unnest(?, ?) WITH ORDINALITY AS k(t, g, i) \
     WHERE (SELECT 1 FROM idempotency_keys i \
            WHERE i.tenant_id = k.t AND i.key = k.g LIMIT 1) IS NOT NULL \
     UNION ALL SELECT 3, k.i - 1, NULL::int8 FROM unnest(?, ?) WITH ORDINALITY AS k(t, g, i) \
     WHERE (SELECT 1 FROM invoices i \
            WHERE i.tenant_id = k.t AND i.number = k.g LIMIT 1) IS NOT NULL";

/// The statements that read what a batch's keys already are (rows: `KeyRow`). PostgreSQL: one
/// round trip with array binds, each key probed through its primary-key index by a correlated
/// subquery (a join against `unnest` let the planner, blind to the array's length, hash-join a
/// sequential scan of the whole table once per batch). SQLite: one cached point query per key, all inside the one
/// blocking job, where a statement costs microseconds; its index is bound as a value to answer
/// with. No keys, no statement.
pub(crate) fn precheck(d: Dialect, keys: &Keys) -> Vec<Stmt> {
    if keys.is_empty() {
        return Vec::new();
    }
    match d {
        Dialect::Postgres => {
            let (vtk, vs) = (
                uuids(&keys.streams, |(t, _)| t.uuid()),
                uuids(&keys.streams, |(_, s)| s.uuid()),
            );
            let (dt, dtk, dg, dp) = (
                ids(&keys.dedup, |(t, _, _)| (*t).into()),
                uuids(&keys.dedup, |(t, _, _)| t.uuid()),
                texts(&keys.dedup, |(_, g, _)| g.clone()),
                ids(&keys.dedup, |(_, _, p)| (*p).into()),
            );
            let (it, ik) = (
                ids(&keys.idempotency, |(t, _)| (*t).into()),
                texts(&keys.idempotency, |(_, k)| k.clone()),
            );
            let (nt, nn) = (
                ids(&keys.numbers, |(t, _)| (*t).into()),
                texts(&keys.numbers, |&(_, n)| format_number(n)),
            );
            vec![Stmt::new(
                PG_PRECHECK,
                vec![vtk, vs, dt, dtk, dg, dp, it, ik, nt, nn],
            )]
        }
        Dialect::Sqlite => {
            let point = |sql: &str, i: usize, t: &TenantId, k: String| {
                Stmt::new(
                    sql,
                    vec![
                        Bind::I64(i as i64),
                        Bind::Text(t.to_string()),
                        Bind::Text(k),
                    ],
                )
            };
            let versions = keys.streams.iter().enumerate().map(|(i, (t, s))| {
                point(
                    "SELECT 0 AS kind, ? AS key, max(version) AS n FROM events \
                     WHERE tenant_id = ? AND stream_id = ? GROUP BY tenant_id, stream_id",
                    i,
                    t,
                    s.to_string(),
                )
            });
            let dedup = keys.dedup.iter().enumerate().flat_map(|(i, (t, g, p))| {
                [
                    Stmt::new(
                        "SELECT 1 AS kind, ? AS key, NULL AS n FROM webhook_dedup \
                         WHERE tenant_id = ? AND payment_id = ? AND gateway_event_id = ?",
                        vec![
                            Bind::I64(i as i64),
                            Bind::Text(t.to_string()),
                            Bind::Text(p.to_string()),
                            Bind::text(g),
                        ],
                    ),
                    point(
                        "SELECT 1 AS kind, ? AS key, NULL AS n \
                         FROM events WHERE tenant_id = ? AND gateway_event_id = ?",
                        i,
                        t,
                        g.clone(),
                    ),
                ]
            });
            let idem = keys.idempotency.iter().enumerate().map(|(i, (t, k))| {
                point(
                    "SELECT 2 AS kind, ? AS key, NULL AS n \
                     FROM idempotency_keys WHERE tenant_id = ? AND key = ?",
                    i,
                    t,
                    k.clone(),
                )
            });
            let numbers = keys.numbers.iter().enumerate().map(|(i, (t, n))| {
                point(
                    "SELECT 3 AS kind, ? AS key, NULL AS n \
                     FROM invoices WHERE tenant_id = ? AND number = ?",
                    i,
                    t,
                    format_number(*n),
                )
            });
            versions.chain(dedup).chain(idem).chain(numbers).collect()
        }
    }
}

/// What is already stored for a batch's keys; updated as units pass, so later units in a batch
/// see the effects of earlier ones (as in `memory.rs`).
///
/// Its keys borrow the text of the batch's units and of its pre-check's keys (`'a`), which
/// outlive it: a batch's gateway event ids are not copied to be checked.
#[derive(Default)]
pub(crate) struct Existing<'a> {
    versions: IdMap<StreamKey, u64>,
    /// The streams whose versions this process vouched for (`Committed`): their projection
    /// rows are as its last commit left them.
    vouched: IdSet<StreamKey>,
    dedup: IdSet<(TenantId, &'a str)>,
    idempotency: IdSet<(TenantId, &'a str)>,
    numbers: IdSet<(TenantId, u64)>,
}

impl<'a> Existing<'a> {
    /// What the pre-check of `keys` found, plus what is known without reading it.
    pub(crate) fn new(
        rows: Vec<KeyRow>,
        keys: &'a Keys,
        known: Vouched,
    ) -> Result<Self, StoreError> {
        let versions: IdMap<StreamKey, u64> = known.versions.into_iter().collect();
        let mut existing = Self {
            numbers: known.numbers.into_iter().collect(),
            // A stream vouched for at version 0 has no row yet: its creation inserts it whole.
            vouched: versions
                .iter()
                .filter(|(_, &version)| version > 0)
                .map(|(&key, _)| key)
                .collect(),
            versions,
            ..Self::default()
        };
        let unreadable = |row: &KeyRow| {
            StoreError::Corrupt(format!(
                "a pre-check row for no key of the batch (kind {}, key {})",
                row.kind, row.key
            ))
        };
        for row in rows {
            let (Some(found), Ok(i)) = (Found::of(row.kind), usize::try_from(row.key)) else {
                return Err(unreadable(&row));
            };
            let missing = || unreadable(&row);
            match found {
                Found::Version => {
                    let stream = *keys.streams.get(i).ok_or_else(missing)?;
                    let version = row.n.unwrap_or(0).max(0) as u64;
                    existing.versions.insert(stream, version);
                }
                Found::GatewayEvent => {
                    let (tenant, id, _) = keys.dedup.get(i).ok_or_else(missing)?;
                    existing.dedup.insert((*tenant, id));
                }
                Found::Idempotency => {
                    let (tenant, key) = keys.idempotency.get(i).ok_or_else(missing)?;
                    existing.idempotency.insert((*tenant, key));
                }
                Found::Number => {
                    existing
                        .numbers
                        .insert(*keys.numbers.get(i).ok_or_else(missing)?);
                }
            }
        }
        Ok(existing)
    }

    /// What it holds, sorted: stream versions, gateway events, idempotency keys, numbers.
    #[cfg(test)]
    #[allow(clippy::type_complexity)]
    pub(crate) fn sorted(
        &self,
    ) -> (
        Vec<(StreamKey, u64)>,
        Vec<(TenantId, String)>,
        Vec<(TenantId, String)>,
        Vec<(TenantId, u64)>,
    ) {
        fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
            let mut items: Vec<T> = items.collect();
            items.sort();
            items
        }
        let owned =
            |keys: &IdSet<(TenantId, &str)>| sorted(keys.iter().map(|(t, k)| (*t, k.to_string())));
        (
            sorted(self.versions.iter().map(|(k, v)| (*k, *v))),
            owned(&self.dedup),
            owned(&self.idempotency),
            sorted(self.numbers.iter().copied()),
        )
    }

    fn check(&self, tenant: TenantId, unit: &Unit) -> Result<(), StoreError> {
        for append in &unit.streams {
            let current = self
                .versions
                .get(&(tenant, append.stream))
                .copied()
                .unwrap_or(0);
            if current != append.expected_version {
                return Err(StoreError::VersionConflict(append.stream.to_string()));
            }
            for (i, event) in append.events.iter().enumerate() {
                // PostgreSQL stores a stream's UUID alone and reads its kind back from the
                // event's type.
                let kind = StreamId::for_event_type(event.event_type(), append.stream.uuid());
                if event.version != append.expected_version + 1 + i as u64
                    || event.stream != append.stream
                    || event.tenant_id != tenant
                    || kind != Some(append.stream)
                {
                    return Err(StoreError::Corrupt(format!(
                        "event {} does not belong at its place in {}",
                        event.id, append.stream
                    )));
                }
            }
        }
        for (id, _) in unit.gateway_events() {
            if self.dedup.contains(&(tenant, id)) {
                return Err(StoreError::DuplicateGatewayEvent(id.to_owned()));
            }
        }
        if let Some(record) = &unit.idempotency {
            if self.idempotency.contains(&(tenant, record.key.as_str())) {
                return Err(StoreError::IdempotencyKeyTaken);
            }
        }
        if let Some(n) = unit.invoice_number() {
            let taken = |m: u64| self.numbers.contains(&(tenant, m));
            if (n > 1 && !taken(n - 1)) || taken(n) {
                return Err(StoreError::Fenced(format!("invoice number {n}")));
            }
        }
        Ok(())
    }

    /// The streams with events stored before the batch: their entities' projection rows
    /// exist (each was written in the transaction of its stream's first event).
    fn stored_streams(&self) -> IdSet<StreamKey> {
        self.versions
            .iter()
            .filter(|(_, &version)| version > 0)
            .map(|(&key, _)| key)
            .collect()
    }

    fn record(&mut self, tenant: TenantId, unit: &'a Unit) {
        for append in &unit.streams {
            let version = append.expected_version + append.events.len() as u64;
            self.versions.insert((tenant, append.stream), version);
        }
        self.dedup
            .extend(unit.gateway_events().map(|(id, _)| (tenant, id)));
        if let Some(record) = &unit.idempotency {
            self.idempotency.insert((tenant, &record.key));
        }
        if let Some(n) = unit.invoice_number() {
            self.numbers.insert((tenant, n));
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
    /// Invoice streams a unit of the batch appended to without the invoice's snapshot.
    lagging: IdSet<StreamKey>,
}

impl Writes {
    /// Room for the rows of `units` (most write one payment's row or one invoice's, or both),
    /// so that a batch's maps and lists do not grow step by step.
    fn for_units(units: &[Unit]) -> Self {
        let n = units.len();
        Self {
            events: Vec::with_capacity(units.iter().map(Unit::event_count).sum()),
            invoices: Upserts::with_capacity(n),
            payments: Upserts::with_capacity(n),
            ..Self::default()
        }
    }

    /// Adds a unit's rows; on error nothing of the unit is added. `stored`: the streams whose
    /// rows exist; `current`: those whose rows are as this process's last commit left them.
    fn add(
        &mut self,
        tenant_id: TenantId,
        unit: &Unit,
        now: DateTime<Utc>,
        (stored, current): (&IdSet<StreamKey>, &IdSet<StreamKey>),
    ) -> Result<(), StoreError> {
        let UnitRows {
            events,
            mut invoices,
            mut payments,
            refunds,
            dedup,
            idempotency,
        } = UnitRows::of(unit)?;
        let is_stored = |stream: StreamId| stored.contains(&(tenant_id, stream));
        for (id, row, sets) in &mut invoices {
            // Only a row known to be current may leave columns out of its update. This unit's
            // unsnapshotted invoices (`lagging`) are never among its snapshots.
            let key = (tenant_id, StreamId::Invoice(*id));
            if !current.contains(&key) || self.lagging.contains(&key) {
                *sets = Sets::ALL;
            }
            let stored = is_stored(key.1);
            if self
                .invoices
                .lacks(&INVOICES, (tenant_id, id.uuid()), row, stored, *sets)
            {
                row.extend(rest_of(unit, key.1, row.len())?);
            }
        }
        for (id, row) in &mut payments {
            let stream = StreamId::Payment(*id);
            if self.payments.lacks(
                &PAYMENTS,
                (tenant_id, id.uuid()),
                row,
                is_stored(stream),
                Sets::ALL,
            ) {
                row.extend(rest_of(unit, stream, row.len())?);
            }
        }
        // Nothing below fails: a unit's rows go in whole or not at all.
        self.events.extend(events);
        self.lagging
            .extend(unsnapshotted_invoices(unit).map(|stream| (tenant_id, stream)));
        for (id, row, sets) in invoices {
            let stored = is_stored(StreamId::Invoice(id));
            self.invoices.put((tenant_id, id.uuid()), row, stored, sets);
        }
        for (id, row) in payments {
            let stored = is_stored(StreamId::Payment(id));
            self.payments
                .put((tenant_id, id.uuid()), row, stored, Sets::ALL);
        }
        // A refund is no stream of its own: whether its row exists is not known here.
        for (id, row) in refunds {
            self.refunds.put((tenant_id, id), row, false, Sets::ALL);
        }
        for mut row in dedup {
            row.push(Bind::ts(now));
            self.dedup.push(row);
        }
        self.idempotency.extend(idempotency);
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

pub(crate) fn plan<'a>(
    d: Dialect,
    units: &'a [Unit],
    mut existing: Existing<'a>,
    now: DateTime<Utc>,
) -> Result<Planned, StoreError> {
    let mut writes = Writes::for_units(units);
    let stored = existing.stored_streams();
    // The rows known current, for `Writes::add`; read nowhere else, so taken, not copied.
    let current = std::mem::take(&mut existing.vouched);
    let mut results = Vec::with_capacity(units.len());
    let mut fence = BatchFence::default();
    for unit in units {
        let Some(tenant) = unit.tenant_id else {
            results.push(Err(StoreError::Corrupt("unit without tenant".into())));
            continue;
        };
        let result = fence.guard(unit, || {
            existing.check(tenant, unit)?;
            writes.add(tenant, unit, now, (&stored, &current))
        });
        if result.is_ok() {
            existing.record(tenant, unit);
        }
        results.push(result);
    }
    Ok(Planned {
        results,
        statements: writes.statements(d)?,
    })
}
