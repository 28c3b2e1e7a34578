//! Rows as read back from SQL (plain text and integers on both backends) and their conversion
//! into domain values. A row that doesn't convert is `Corrupt`, never a panic.

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use payrail_actors::domain::{
    Event, EventData, EventId, Invoice, InvoiceId, Payment, StreamId, TenantId,
};
use payrail_actors::ports::{IdempotencyRecord, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use crate::keys::{KeyError, Keys};

use super::model::{ApiKeyRow, StoredEvent, TenantRow};
use super::stmt::{from_micros, Dialect};
use super::write::{INVOICES, PAYMENTS};

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn parse_id<T: std::str::FromStr>(s: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| corrupt(format!("malformed id {s:?}")))
}

/// The UUID of an id stored as one (`Bind::Key` on PostgreSQL), or `None` for a TypeID.
fn stored_uuid(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(s).ok()
}

/// An id read from a key column: its bare UUID (PostgreSQL) or its TypeID (SQLite).
pub(crate) fn parse_key<T: std::str::FromStr>(
    s: &str,
    from_uuid: impl FnOnce(uuid::Uuid) -> T,
) -> Result<T, StoreError> {
    match stored_uuid(s) {
        Some(uuid) => Ok(from_uuid(uuid)),
        None => parse_id(s),
    }
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(corrupt)
}

/// The select list matching `EventRow`, for `events` aliased as `e`.
pub(crate) fn event_columns(d: Dialect) -> String {
    format!(
        "e.seq, {} AS tenant_id, {} AS stream_id, e.version, {} AS event_id, e.event_type, \
         {} AS invoice_id, e.actor, e.gateway_event_id, {} AS data, {} AS occurred_at",
        d.key_out("e.tenant_id"),
        d.key_out("e.stream_id"),
        d.key_out("e.event_id"),
        d.key_out("e.invoice_id"),
        d.json_out("e.data"),
        d.ts_out("e.occurred_at")
    )
}

#[derive(Debug, QueryableByName)]
pub(crate) struct EventRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    stream_id: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    invoice_id: Option<String>,
    #[diesel(sql_type = Text)]
    actor: String,
    #[diesel(sql_type = Nullable<Text>)]
    gateway_event_id: Option<String>,
    #[diesel(sql_type = Text)]
    data: String,
    #[diesel(sql_type = BigInt)]
    occurred_at: i64,
}

impl EventRow {
    pub(crate) fn into_stored(self) -> Result<StoredEvent, StoreError> {
        let data: serde_json::Value = from_json(&self.data)?;
        let stream = match stored_uuid(&self.stream_id) {
            Some(uuid) => StreamId::for_event_type(&self.event_type, uuid).ok_or_else(|| {
                corrupt(format!(
                    "no stream holds events of type {}",
                    self.event_type
                ))
            })?,
            None => parse_id(&self.stream_id)?,
        };
        let event = Event {
            id: parse_key(&self.event_id, EventId::from_uuid)?,
            tenant_id: parse_key(&self.tenant_id, TenantId::from_uuid)?,
            stream,
            version: u64::try_from(self.version).map_err(corrupt)?,
            invoice_id: self
                .invoice_id
                .as_deref()
                .map(|i| parse_key(i, InvoiceId::from_uuid))
                .transpose()?,
            actor: self.actor.into(),
            occurred_at: from_micros(self.occurred_at),
            gateway_event_id: self.gateway_event_id,
            data: EventData::from_parts(&self.event_type, data).map_err(corrupt)?,
        };
        Ok(StoredEvent {
            sequence: self.seq,
            event,
        })
    }

    pub(crate) fn into_event(self) -> Result<Event, StoreError> {
        self.into_stored().map(|s| s.event)
    }
}

pub(crate) fn into_events(rows: Vec<EventRow>) -> Result<Vec<Event>, StoreError> {
    rows.into_iter().map(EventRow::into_event).collect()
}

pub(crate) fn into_stored(rows: Vec<EventRow>) -> Result<Vec<StoredEvent>, StoreError> {
    rows.into_iter().map(EventRow::into_stored).collect()
}

/// A projection row's snapshot and its version: an invoice's and a payment's in two parts,
/// `details` (what seldom or never changes) and `data` (what changes), their status (and a
/// payment's gateway reference) in columns of their own; a refund's whole in `data`. A
/// payment's ids, amount, currency and creation time are only in its columns.
#[derive(Debug, QueryableByName)]
pub(crate) struct DataRow {
    #[diesel(sql_type = Text)]
    pub(crate) data: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) details: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) gateway_reference: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub(crate) version: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) tenant_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) invoice_id: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) amount: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) currency: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) created_at: Option<i64>,
}

/// The select list matching `DataRow` for `table` (a projection table, optionally aliased as
/// `alias.`).
pub(crate) fn snapshot_columns(d: Dialect, table: &str, alias: &str) -> String {
    const NONE: &str = "CAST(NULL AS text)";
    const NO_NUMBER: &str = "CAST(NULL AS bigint)";
    let payment = table == PAYMENTS.name;
    let split = payment || table == INVOICES.name;
    let column = |name: &str, wanted: bool, none: &str| {
        if wanted {
            format!("{alias}{name}")
        } else {
            none.to_owned()
        }
    };
    let details = if split {
        d.json_out(&format!("{alias}details"))
    } else {
        NONE.to_owned()
    };
    let created_at = if payment {
        d.ts_out(&format!("{alias}created_at"))
    } else {
        NO_NUMBER.to_owned()
    };
    format!(
        "{} AS data, {details} AS details, {} AS status, {} AS gateway_reference, \
         {alias}version AS version, {} AS tenant_id, {} AS id, {} AS invoice_id, {} AS amount, \
         {} AS currency, {created_at} AS created_at",
        d.json_out(&format!("{alias}data")),
        column("status", split, NONE),
        column("gateway_reference", payment, NONE),
        column("tenant_id", payment, NONE),
        column("id", payment, NONE),
        column("invoice_id", payment, NONE),
        column("amount", payment, NO_NUMBER),
        column("currency", payment, NONE),
    )
}

impl DataRow {
    /// The invoice whole again: its details, its data, and the snapshot's keys that are columns
    /// (`status`, `version`; `data` does not repeat them).
    pub(crate) fn invoice(&self) -> Result<Invoice, StoreError> {
        let columns = format!(
            "{{\"status\":{},\"version\":{}}}",
            self.status_json("an invoice")?,
            self.version
        );
        from_json(&join_objects(&[
            self.details("an invoice")?,
            &self.data,
            &columns,
        ])?)
    }

    /// The payment whole again: its details, its data, and the snapshot's keys that are columns
    /// (ids, amount, currency, creation time, `status`, `gatewayReference`, `version`; neither
    /// part repeats them).
    pub(crate) fn payment(&self) -> Result<Payment, StoreError> {
        from_json(&join_objects(&[
            self.details("a payment")?,
            &self.data,
            &self.payment_columns()?,
        ])?)
    }

    /// The keys of a payment's snapshot that are columns of its row, as a JSON object.
    pub(crate) fn payment_columns(&self) -> Result<String, StoreError> {
        let created_at = self
            .created_at
            .map(from_micros)
            .ok_or_else(|| corrupt("a payment row without its creation time"))?;
        Ok(format!(
            "{{\"id\":{},\"tenantId\":{},\"invoiceId\":{},\"amount\":{},\"currency\":{},\
             \"createdAt\":{},\"status\":{},\"gatewayReference\":{},\"version\":{}}}",
            json_column(&self.id, "id")?,
            json_column(&self.tenant_id, "tenant")?,
            json_column(&self.invoice_id, "invoice")?,
            json_column(&self.amount, "amount")?,
            json_column(&self.currency, "currency")?,
            serde_json::to_string(&created_at).map_err(corrupt)?,
            self.status_json("a payment")?,
            serde_json::to_string(&self.gateway_reference).map_err(corrupt)?,
            self.version
        ))
    }

    /// The status column as a JSON string.
    fn status_json(&self, what: &str) -> Result<String, StoreError> {
        let status = self
            .status
            .as_deref()
            .ok_or_else(|| corrupt(format!("{what} row without its status")))?;
        serde_json::to_string(status).map_err(corrupt)
    }

    fn details(&self, what: &str) -> Result<&str, StoreError> {
        self.details
            .as_deref()
            .ok_or_else(|| corrupt(format!("{what} row without its details")))
    }
}

/// A payment row's `column` as JSON; a row without it is corrupt.
fn json_column<T: serde::Serialize>(value: &Option<T>, column: &str) -> Result<String, StoreError> {
    match value {
        Some(value) => serde_json::to_string(value).map_err(corrupt),
        None => Err(corrupt(format!("a payment row without its {column}"))),
    }
}

/// JSON objects with distinct keys as one, joined as text (no `Value` between): the members of
/// each, in order.
fn join_objects(objects: &[&str]) -> Result<String, StoreError> {
    let mut joined = String::with_capacity(objects.iter().map(|o| o.len()).sum::<usize>() + 2);
    joined.push('{');
    for object in objects {
        let members = object
            .trim()
            .strip_prefix('{')
            .and_then(|o| o.strip_suffix('}'))
            .map(str::trim)
            .ok_or_else(|| corrupt("a snapshot part is not a JSON object"))?;
        if members.is_empty() {
            continue;
        }
        if joined.len() > 1 {
            joined.push(',');
        }
        joined.push_str(members);
    }
    joined.push('}');
    Ok(joined)
}

/// A payment still holding its reservation on an invoice, and the amount.
#[derive(Debug, QueryableByName)]
pub(crate) struct ReservationRow {
    #[diesel(sql_type = Text)]
    pub(crate) id: String,
    #[diesel(sql_type = BigInt)]
    pub(crate) amount: i64,
}

#[derive(Debug, QueryableByName)]
pub(crate) struct TextRow {
    #[diesel(sql_type = Text)]
    pub(crate) value: String,
}

/// A tenant's last sequence, with one id (or none) per row.
#[derive(Debug, QueryableByName)]
pub(crate) struct SeqIdRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) seq: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) id: Option<String>,
}

#[derive(Debug, QueryableByName)]
pub(crate) struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

#[derive(Debug, QueryableByName)]
pub(crate) struct PairRow {
    #[diesel(sql_type = Text)]
    pub(crate) a: String,
    #[diesel(sql_type = Text)]
    pub(crate) b: String,
}

#[derive(Debug, QueryableByName)]
pub(crate) struct TripleRow {
    #[diesel(sql_type = Text)]
    pub(crate) a: String,
    #[diesel(sql_type = Text)]
    pub(crate) b: String,
    #[diesel(sql_type = Text)]
    pub(crate) c: String,
}

/// What the pre-check of a batch found: a key of kind `kind` (`plan::Found`), by its index
/// `key` among the batch's keys of that kind (`plan::Keys`), with a stream's version in `n`.
/// Indexes, not the keys themselves: nothing to render into the statement for the answer and
/// nothing to parse back from it.
#[derive(Debug, QueryableByName)]
pub(crate) struct KeyRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) kind: i64,
    #[diesel(sql_type = BigInt)]
    pub(crate) key: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) n: Option<i64>,
}

/// What a tenant's webhook secret is sealed for: its own row, so a sealed value copied into
/// another tenant's row does not open.
fn webhook_secret_context(tenant: TenantId) -> String {
    format!("webhook secret of {tenant}")
}

pub(crate) fn seal_webhook_secret(keys: &Keys, tenant: TenantId, secret: &SecretString) -> String {
    keys.seal(
        b"",
        &webhook_secret_context(tenant),
        secret.expose_secret().as_bytes(),
    )
}

/// Opens a stored webhook secret. A value stored in the clear by an older version is taken as
/// it is; the next start seals it (`Db::reseal_secrets`).
pub(crate) fn open_webhook_secret(
    keys: &Keys,
    tenant: TenantId,
    stored: &str,
) -> Result<SecretString, StoreError> {
    match keys.open(b"", &webhook_secret_context(tenant), stored) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| corrupt("a webhook secret is not UTF-8")),
        Err(KeyError::NotSealed) => Ok(SecretString::from(stored.to_owned())),
        Err(e) => Err(StoreError::Unavailable(format!("tenant {tenant}: {e}"))),
    }
}

pub(crate) fn tenant_columns(d: Dialect) -> String {
    format!(
        "id, name, webhook_secret, previous_webhook_secret, {} AS previous_valid_until, {} AS created_at",
        d.ts_out("previous_valid_until"),
        d.ts_out("created_at")
    )
}

#[derive(Debug, QueryableByName)]
pub(crate) struct TenantSqlRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    webhook_secret: String,
    #[diesel(sql_type = Nullable<Text>)]
    previous_webhook_secret: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    previous_valid_until: Option<i64>,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
}

impl TenantSqlRow {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The current webhook secret as stored (sealed).
    pub(crate) fn stored_secret(&self) -> &str {
        &self.webhook_secret
    }

    /// The row with its secrets opened.
    pub(crate) fn into_row(self, keys: &Keys) -> Result<TenantRow, StoreError> {
        let id: TenantId = parse_id(&self.id)?;
        let previous = self
            .previous_webhook_secret
            .map(|s| open_webhook_secret(keys, id, &s))
            .transpose()?;
        Ok(TenantRow {
            webhook_secret: open_webhook_secret(keys, id, &self.webhook_secret)?,
            id,
            name: self.name,
            previous_webhook_secret: previous,
            previous_valid_until: self.previous_valid_until.map(from_micros),
            created_at: from_micros(self.created_at),
        })
    }
}

pub(crate) fn api_key_columns(d: Dialect) -> String {
    format!(
        "tenant_id, id, name, role, secret_hash, {} AS created_at, {} AS revoked_at",
        d.ts_out("created_at"),
        d.ts_out("revoked_at")
    )
}

#[derive(Debug, QueryableByName)]
pub(crate) struct ApiKeySqlRow {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Text)]
    secret_hash: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    revoked_at: Option<i64>,
}

impl ApiKeySqlRow {
    pub(crate) fn into_row(self) -> Result<ApiKeyRow, StoreError> {
        Ok(ApiKeyRow {
            tenant_id: parse_id(&self.tenant_id)?,
            id: parse_id(&self.id)?,
            name: self.name,
            role: self.role,
            secret_hash: self.secret_hash,
            created_at: from_micros(self.created_at),
            revoked_at: self.revoked_at.map(from_micros),
        })
    }
}

#[derive(Debug, QueryableByName)]
pub(crate) struct IdempotencySqlRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    fingerprint: String,
    #[diesel(sql_type = BigInt)]
    status: i64,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
}

/// A stored response found for the key at `position` among those looked up together.
#[derive(Debug, QueryableByName)]
pub(crate) struct PlacedIdempotencySqlRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) position: i64,
    #[diesel(embed)]
    pub(crate) row: IdempotencySqlRow,
}

pub(crate) fn idempotency_columns(d: Dialect) -> String {
    format!(
        "key, fingerprint, CAST(status AS BIGINT) AS status, body, {} AS created_at",
        d.ts_out("created_at")
    )
}

impl IdempotencySqlRow {
    pub(crate) fn into_record(self) -> Result<IdempotencyRecord, StoreError> {
        Ok(IdempotencyRecord {
            key: self.key,
            fingerprint: self.fingerprint,
            status: u16::try_from(self.status).map_err(corrupt)?,
            body: self.body,
            created_at: from_micros(self.created_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::join_objects;

    #[test]
    fn objects_join_as_text() {
        assert_eq!(
            join_objects(&[r#"{"a":1,"b":"}"}"#, r#" { "c" : [1, {}] } "#]).unwrap(),
            r#"{"a":1,"b":"}","c" : [1, {}]}"#
        );
        assert_eq!(join_objects(&["{}", r#"{"c":2}"#]).unwrap(), r#"{"c":2}"#);
        assert_eq!(join_objects(&[r#"{"a":1}"#, "{ }"]).unwrap(), r#"{"a":1}"#);
        assert_eq!(join_objects(&["{}", "{}"]).unwrap(), "{}");
        assert_eq!(
            join_objects(&[r#"{"a":1}"#, "{}", r#"{"b":2}"#, r#"{"c":3}"#]).unwrap(),
            r#"{"a":1,"b":2,"c":3}"#
        );
        assert!(join_objects(&["[1]", "{}"]).is_err());
        assert!(join_objects(&["{}", "null"]).is_err());
    }
}
