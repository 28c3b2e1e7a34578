//! One statement type for both backends: SQL with `?` placeholders plus typed binds. It is
//! cached as a prepared statement keyed by its SQL text (diesel's `sql_query` never is), so
//! the hot statements are parsed once per connection on PostgreSQL and SQLite alike.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{Error as DieselError, QueryResult};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Date, Nullable, Text, Timestamptz, Untyped, Uuid as SqlUuid};
use diesel::sqlite::Sqlite;
use payrail_actors::domain::{EventId, InvoiceId, PaymentId, RefundId, StreamId, TenantId};
use payrail_actors::ports::StoreError;
use std::io::Write as _;
use uuid::Uuid;

use super::pg_array::Packed;

/// The SQL differences between the backends, kept to a handful of expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// A timestamp column read back as integer microseconds since the epoch.
    pub(crate) fn ts_out(self, col: &str) -> String {
        match self {
            Self::Postgres => format!("(extract(epoch from {col}) * 1000000)::int8"),
            Self::Sqlite => col.to_owned(),
        }
    }

    /// An id column read back as text: the TypeID itself on SQLite, the UUID inside it on
    /// PostgreSQL, where the columns of `events` that hold one entity's id are `uuid` (see
    /// `Bind::Key`).
    pub(crate) fn key_out(self, col: &str) -> String {
        match self {
            Self::Postgres => format!("{col}::text"),
            Self::Sqlite => col.to_owned(),
        }
    }

    /// A JSON column read back as text.
    pub(crate) fn json_out(self, col: &str) -> String {
        match self {
            Self::Postgres => format!("{col}::text"),
            Self::Sqlite => col.to_owned(),
        }
    }

    /// Case-insensitive LIKE (SQLite's LIKE already is, for ASCII).
    pub(crate) fn ilike(self) -> &'static str {
        match self {
            Self::Postgres => "ILIKE",
            Self::Sqlite => "LIKE",
        }
    }

    /// The date that sorts after every due date (a missing due date sorts last).
    pub(crate) fn date_max(self) -> &'static str {
        match self {
            Self::Postgres => "DATE '9999-12-31'",
            Self::Sqlite => "'9999-12-31'",
        }
    }
}

/// A bound value. Timestamps and dates carry their SQLite form (integer microseconds, ISO text)
/// next to the typed value PostgreSQL gets, because a bind must outlive the statement's walk.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    /// Text the program holds for good (a status, a currency, an event type): bound without a
    /// copy of its own.
    Word(&'static str),
    /// An id stored as its TypeID text (the projections' key columns), rendered as it is bound.
    Id(Key),
    OptText(Option<String>),
    /// Text that PostgreSQL stores as `json` (the SQL casts it).
    Json(String),
    I64(i64),
    Ts(DateTime<Utc>, i64),
    OptTs(Option<DateTime<Utc>>, Option<i64>),
    Date(Day),
    OptDate(Option<Day>),
    /// An id in a key column of `events`: PostgreSQL stores the UUID inside it (16 bytes, in
    /// the row and in each index entry), SQLite its TypeID text, rendered only when bound.
    Key(Key),
    OptKey(Option<Key>),
    TextArr(Vec<String>),
    WordArr(Vec<&'static str>),
    IdArr(Vec<Key>),
    OptTextArr(Vec<Option<String>>),
    I64Arr(Vec<i64>),
    OptI64Arr(Vec<Option<i64>>),
    TsArr(Vec<DateTime<Utc>>),
    OptTsArr(Vec<Option<DateTime<Utc>>>),
    OptDateArr(Vec<Option<NaiveDate>>),
    KeyArr(Vec<Uuid>),
    OptKeyArr(Vec<Option<Uuid>>),
}

impl Bind {
    pub(crate) fn text(s: impl Into<String>) -> Self {
        Self::Text(s.into())
    }

    /// An id as its TypeID text (`Id`).
    pub(crate) fn id(id: impl Into<Key>) -> Self {
        Self::Id(id.into())
    }

    /// An id as a key (`Key`).
    pub(crate) fn key(id: impl Into<Key>) -> Self {
        Self::Key(id.into())
    }

    pub(crate) fn opt_key(id: Option<impl Into<Key>>) -> Self {
        Self::OptKey(id.map(Into::into))
    }

    pub(crate) fn ts(at: DateTime<Utc>) -> Self {
        Self::Ts(at, at.timestamp_micros())
    }

    pub(crate) fn opt_ts(at: Option<DateTime<Utc>>) -> Self {
        Self::OptTs(at, at.map(|a| a.timestamp_micros()))
    }

    pub(crate) fn date(d: NaiveDate) -> Self {
        Self::Date(Day(d))
    }

    pub(crate) fn opt_date(d: Option<NaiveDate>) -> Self {
        Self::OptDate(d.map(Day))
    }
}

macro_rules! keys {
    ($($variant:ident($id:ty)),* $(,)?) => {
        /// A typed id in a bind. As a key of the log (`Bind::Key`) PostgreSQL binds the UUID
        /// inside it and SQLite its TypeID text; as text (`Bind::Id`, the projections' key
        /// columns) both bind its TypeID text. The text is rendered only as the id is bound.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Key {
            $($variant($id)),*
        }

        impl Key {
            pub(crate) fn uuid(&self) -> Uuid {
                match self {
                    $(Self::$variant(id) => id.uuid()),*
                }
            }
        }

        impl std::fmt::Display for Key {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $(Self::$variant(id) => id.fmt(f)),*
                }
            }
        }

        $(impl From<$id> for Key {
            fn from(id: $id) -> Self {
                Self::$variant(id)
            }
        })*
    };
}

keys!(
    Tenant(TenantId),
    Stream(StreamId),
    Event(EventId),
    Invoice(InvoiceId),
    Payment(PaymentId),
    Refund(RefundId),
);

impl ToSql<SqlUuid, Pg> for Key {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.uuid().as_bytes())?;
        Ok(IsNull::No)
    }
}

/// A date: PostgreSQL binds it as a `date`, SQLite as ISO text, rendered only then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Day(pub(crate) NaiveDate);

impl ToSql<Date, Pg> for Day {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        ToSql::<Date, Pg>::to_sql(&self.0, out)
    }
}

impl ToSql<Text, Sqlite> for Day {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.format("%Y-%m-%d").to_string());
        Ok(IsNull::No)
    }
}

impl ToSql<Text, Pg> for Key {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        write!(out, "{self}")?;
        Ok(IsNull::No)
    }
}

impl ToSql<Text, Sqlite> for Key {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.to_string());
        Ok(IsNull::No)
    }
}

/// Refuses a count of affected rows other than the expected one: a row the batch took for
/// stored was not, and the transaction must not commit without it.
pub(crate) fn check_rows(expected: Option<usize>, affected: usize) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != affected => Err(StoreError::Corrupt(format!(
            "a batch's update expected {expected} stored rows and found {affected}"
        ))),
        _ => Ok(()),
    }
}

/// Microseconds since the epoch back to a timestamp.
pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// SQL text with one `?` per bind, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stmt {
    pub(crate) sql: String,
    pub(crate) binds: Vec<Bind>,
    /// The rows a write must affect, when the batch knows it (`check_rows`).
    expected_rows: Option<usize>,
}

impl Stmt {
    pub(crate) fn new(sql: impl Into<String>, binds: Vec<Bind>) -> Self {
        Self {
            sql: sql.into(),
            binds,
            expected_rows: None,
        }
    }

    /// A write that must affect exactly `rows` rows (an update of rows known to exist).
    pub(crate) fn expecting_rows(mut self, rows: usize) -> Self {
        self.expected_rows = Some(rows);
        self
    }

    /// The rows this write must affect, if the batch knows it.
    pub(crate) fn expected_rows(&self) -> Option<usize> {
        self.expected_rows
    }

    /// The SQL's text between its placeholders, one piece more than there are binds (checked
    /// by `placeholders_checked` once the pieces are walked). Split as walked, not collected:
    /// diesel walks a statement three times per execution.
    fn pieces(&self) -> std::str::Split<'_, char> {
        self.sql.split('?')
    }

    /// `Ok` if the walk used every piece: no placeholder was left without its bind.
    fn placeholders_checked(&self, mut rest: std::str::Split<'_, char>) -> QueryResult<()> {
        match rest.next() {
            None => Ok(()),
            Some(_) => Err(self.placeholder_mismatch()),
        }
    }

    /// Walks the SQL for either backend: each piece in turn, with `bind` pushing the bind
    /// that goes between two pieces as that backend stores it.
    fn walk<'b, DB: Backend>(
        &'b self,
        out: &mut AstPass<'_, 'b, DB>,
        mut bind: impl FnMut(&mut AstPass<'_, 'b, DB>, &'b Bind) -> QueryResult<()>,
    ) -> QueryResult<()> {
        let mut pieces = self.pieces();
        out.push_sql(pieces.next().unwrap_or_default());
        for value in &self.binds {
            let piece = pieces.next().ok_or_else(|| self.placeholder_mismatch())?;
            bind(out, value)?;
            out.push_sql(piece);
        }
        self.placeholders_checked(pieces)
    }

    fn placeholder_mismatch(&self) -> DieselError {
        DieselError::QueryBuilderError(
            format!(
                "{} placeholders but {} binds in: {}",
                self.sql.matches('?').count(),
                self.binds.len(),
                self.sql
            )
            .into(),
        )
    }
}

// No static query id: the statement cache keys these by their SQL text and bind types.
impl QueryId for Stmt {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Stmt {
    type SqlType = Untyped;
}

impl<Conn> diesel::RunQueryDsl<Conn> for Stmt {}

impl QueryFragment<Pg> for Stmt {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.walk(&mut out, |out, bind| match bind {
            Bind::Text(v) | Bind::Json(v) => out.push_bind_param::<Text, _>(v),
            Bind::Word(v) => out.push_bind_param::<Text, str>(v),
            Bind::Id(v) => out.push_bind_param::<Text, _>(v),
            Bind::OptText(v) => out.push_bind_param::<Nullable<Text>, _>(v),
            Bind::I64(v) => out.push_bind_param::<BigInt, _>(v),
            Bind::Ts(v, _) => out.push_bind_param::<Timestamptz, _>(v),
            Bind::OptTs(v, _) => out.push_bind_param::<Nullable<Timestamptz>, _>(v),
            Bind::Date(v) => out.push_bind_param::<Date, _>(v),
            Bind::OptDate(v) => out.push_bind_param::<Nullable<Date>, _>(v),
            Bind::TextArr(v) => out.push_bind_param::<Packed<Text>, _>(v),
            Bind::WordArr(v) => out.push_bind_param::<Packed<Text>, _>(v),
            Bind::IdArr(v) => out.push_bind_param::<Packed<Text>, _>(v),
            Bind::OptTextArr(v) => out.push_bind_param::<Packed<Nullable<Text>>, _>(v),
            Bind::I64Arr(v) => out.push_bind_param::<Packed<BigInt>, _>(v),
            Bind::OptI64Arr(v) => out.push_bind_param::<Packed<Nullable<BigInt>>, _>(v),
            Bind::TsArr(v) => out.push_bind_param::<Packed<Timestamptz>, _>(v),
            Bind::OptTsArr(v) => out.push_bind_param::<Packed<Nullable<Timestamptz>>, _>(v),
            Bind::OptDateArr(v) => out.push_bind_param::<Packed<Nullable<Date>>, _>(v),
            Bind::Key(v) => out.push_bind_param::<SqlUuid, _>(v),
            Bind::OptKey(v) => out.push_bind_param::<Nullable<SqlUuid>, _>(v),
            Bind::KeyArr(v) => out.push_bind_param::<Packed<SqlUuid>, _>(v),
            Bind::OptKeyArr(v) => out.push_bind_param::<Packed<Nullable<SqlUuid>>, _>(v),
        })
    }
}

impl QueryFragment<Sqlite> for Stmt {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.walk(&mut out, |out, bind| match bind {
            Bind::Text(v) | Bind::Json(v) => out.push_bind_param::<Text, _>(v),
            Bind::Date(v) => out.push_bind_param::<Text, _>(v),
            Bind::OptDate(v) => out.push_bind_param::<Nullable<Text>, _>(v),
            Bind::Word(v) => out.push_bind_param::<Text, str>(v),
            Bind::Id(v) | Bind::Key(v) => out.push_bind_param::<Text, _>(v),
            Bind::OptText(v) => out.push_bind_param::<Nullable<Text>, _>(v),
            Bind::OptKey(v) => out.push_bind_param::<Nullable<Text>, _>(v),
            Bind::I64(v) | Bind::Ts(_, v) => out.push_bind_param::<BigInt, _>(v),
            Bind::OptTs(_, v) => out.push_bind_param::<Nullable<BigInt>, _>(v),
            _ => Err(DieselError::QueryBuilderError(
                "array binds are PostgreSQL-only".into(),
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use diesel::{Connection, RunQueryDsl, SqliteConnection};

    use super::{Bind, Stmt};

    /// A statement runs only with exactly one bind per placeholder; either mismatch is refused
    /// before anything reaches the database.
    #[test]
    fn placeholders_and_binds_must_match() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let run = |conn: &mut SqliteConnection, sql: &str, binds: Vec<Bind>| {
            Stmt::new(sql, binds).execute(conn)
        };
        run(&mut conn, "SELECT ? + ?", vec![Bind::I64(1), Bind::I64(2)]).unwrap();
        for (sql, binds) in [
            ("SELECT ? + ?", vec![Bind::I64(1)]),
            ("SELECT ?", vec![Bind::I64(1), Bind::I64(2)]),
            ("SELECT 1", vec![Bind::I64(1)]),
        ] {
            let err = run(&mut conn, sql, binds).unwrap_err();
            assert!(err.to_string().contains("placeholders but"), "{sql}: {err}");
        }
    }
}
