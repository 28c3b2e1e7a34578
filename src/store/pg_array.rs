//! PostgreSQL array binds encoded in one pass. A batch binds each column of its rows as one
//! array (`unnest`); diesel's own array encoding writes an element at a time into a buffer that
//! starts empty and doubles as it goes, copying what it holds each time. Here the array's size
//! is counted first and its binary form (`array_send`'s layout: dimensions, flags, element type,
//! length and lower bound, then each element's length and bytes, -1 for a null) written into
//! a buffer of that size, which is handed to diesel in one write.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use diesel::pg::{Pg, PgTypeMetadata};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Date, HasSqlType, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use std::io::Write as _;
use uuid::Uuid;

use super::stmt::Key;

/// An array of `ST` bound as `ST[]`, encoded in one pass (a SQL type for `push_bind_param`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Packed<ST>(std::marker::PhantomData<ST>);

impl<ST: 'static> HasSqlType<Packed<ST>> for Pg
where
    Pg: HasSqlType<ST>,
{
    fn metadata(lookup: &mut Self::MetadataLookup) -> PgTypeMetadata {
        <Pg as HasSqlType<diesel::sql_types::Array<ST>>>::metadata(lookup)
    }
}

/// PostgreSQL's epoch, 2000-01-01: in microseconds from the Unix epoch, and in days from
/// 0001-01-01 (`Datelike::num_days_from_ce`).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;

/// Whether an element was written (`false`: a null, which has no bytes).
type Put = Result<bool, Box<dyn std::error::Error + Send + Sync>>;

/// One element's binary form, written after its length; `false` for a null, which has none.
trait Element {
    /// Its length in bytes, or a guess at it, to size the buffer.
    fn size_hint(&self) -> usize;
    fn put(&self, buf: &mut Vec<u8>) -> Put;
}

impl Element for String {
    fn size_hint(&self) -> usize {
        self.as_str().size_hint()
    }
    fn put(&self, buf: &mut Vec<u8>) -> Put {
        self.as_str().put(buf)
    }
}

impl Element for &str {
    fn size_hint(&self) -> usize {
        self.len()
    }
    fn put(&self, buf: &mut Vec<u8>) -> Put {
        buf.extend_from_slice(self.as_bytes());
        Ok(true)
    }
}

/// An id as its TypeID text.
impl Element for Key {
    fn size_hint(&self) -> usize {
        30
    }
    fn put(&self, buf: &mut Vec<u8>) -> Put {
        write!(buf, "{self}")?;
        Ok(true)
    }
}

impl Element for i64 {
    fn size_hint(&self) -> usize {
        8
    }
    fn put(&self, buf: &mut Vec<u8>) -> Put {
        buf.extend_from_slice(&self.to_be_bytes());
        Ok(true)
    }
}

impl Element for Uuid {
    fn size_hint(&self) -> usize {
        16
    }
    fn put(&self, buf: &mut Vec<u8>) -> Put {
        buf.extend_from_slice(self.as_bytes());
        Ok(true)
    }
}

impl Element for DateTime<Utc> {
    fn size_hint(&self) -> usize {
        8
    }
    fn put(&self, buf: &mut Vec<u8>) -> Put {
        let micros = self
            .timestamp_micros()
            .checked_sub(PG_EPOCH_MICROS)
            .ok_or_else(|| format!("{self:?} is out of PostgreSQL's range"))?;
        buf.extend_from_slice(&micros.to_be_bytes());
        Ok(true)
    }
}

impl Element for NaiveDate {
    fn size_hint(&self) -> usize {
        4
    }
    fn put(&self, buf: &mut Vec<u8>) -> Put {
        let days = self.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE;
        buf.extend_from_slice(&days.to_be_bytes());
        Ok(true)
    }
}

impl<T: Element> Element for Option<T> {
    fn size_hint(&self) -> usize {
        self.as_ref().map_or(0, Element::size_hint)
    }
    fn put(&self, buf: &mut Vec<u8>) -> Put {
        match self {
            Some(value) => value.put(buf),
            None => Ok(false),
        }
    }
}

/// `values` as a one-dimensional array of the element type `ST`, written to `out` at once.
fn write_array<ST, T: Element>(values: &[T], out: &mut Output<'_, '_, Pg>) -> serialize::Result
where
    Pg: HasSqlType<ST>,
{
    let element = <Pg as HasSqlType<ST>>::metadata(out.metadata_lookup()).oid()?;
    let size = 20 + values.iter().map(|v| 4 + v.size_hint()).sum::<usize>();
    let mut buf = Vec::with_capacity(size);
    for word in [1, 0, element as i32, i32::try_from(values.len())?, 1] {
        buf.extend_from_slice(&word.to_be_bytes());
    }
    for value in values {
        // The element's length goes before it, once it is written.
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        let len = match value.put(&mut buf)? {
            true => i32::try_from(buf.len() - at - 4)?,
            false => -1,
        };
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    out.write_all(&buf)?;
    Ok(IsNull::No)
}

macro_rules! packed {
    ($($sql:ty => $element:ty),* $(,)?) => {
        $(impl ToSql<Packed<$sql>, Pg> for Vec<$element> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                write_array::<$sql, $element>(self, out)
            }
        })*
    };
}

packed!(
    Text => String,
    Text => &'static str,
    Text => Key,
    Nullable<Text> => Option<String>,
    BigInt => i64,
    Nullable<BigInt> => Option<i64>,
    Timestamptz => DateTime<Utc>,
    Nullable<Timestamptz> => Option<DateTime<Utc>>,
    Nullable<Date> => Option<NaiveDate>,
    SqlUuid => Uuid,
    Nullable<SqlUuid> => Option<Uuid>,
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{DateTime, NaiveDate};
    use diesel::sql_types::Text;
    use diesel::QueryableByName;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use uuid::Uuid;

    use payrail_actors::domain::TenantId;

    use crate::store::stmt::{Bind, Key, Stmt};

    #[derive(QueryableByName)]
    struct Shown {
        #[diesel(sql_type = Text)]
        shown: String,
    }

    /// Every kind of array a batch binds reaches PostgreSQL as the array it holds: nulls,
    /// empty arrays, text beyond ASCII, dates and times on either side of PostgreSQL's epoch.
    #[tokio::test]
    async fn postgres_reads_each_packed_array_as_written() {
        let url = std::env::var("PAYRAIL_TEST_PG_URL").unwrap();
        let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let at = |micros| DateTime::from_timestamp_micros(micros).unwrap();
        let uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let tenant = TenantId::from_uuid(uuid);
        let stmt = Stmt::new(
            "SELECT concat_ws(' | ', ?::text, ?::text, ?::text, ?::text, ?::text, \
             (? = ARRAY['1999-12-31 23:59:59.5+00', '2026-12-06 12:00:00.000001+00']::timestamptz[])::text, \
             (? IS NOT DISTINCT FROM ARRAY[NULL, '2000-01-01 00:00:00+00']::timestamptz[])::text, \
             ?::text, ?::text, ?::text, ?::text, ?::text) AS shown",
            vec![
                Bind::TextArr(vec!["a".into(), String::new(), "zürich, \"quoted\"".into()]),
                Bind::TextArr(Vec::new()),
                Bind::OptTextArr(vec![None, Some("b".into())]),
                Bind::I64Arr(vec![i64::MIN, -1, 0, i64::MAX]),
                Bind::OptI64Arr(vec![Some(7), None]),
                Bind::TsArr(vec![at(946_684_799_500_000), at(1_796_558_400_000_001)]),
                Bind::OptTsArr(vec![None, Some(at(946_684_800_000_000))]),
                Bind::OptDateArr(vec![Some(day(1999, 12, 31)), None, Some(day(2026, 12, 6))]),
                Bind::KeyArr(vec![uuid]),
                Bind::OptKeyArr(vec![None, Some(uuid)]),
                Bind::WordArr(vec!["paid", ""]),
                Bind::IdArr(vec![Key::Tenant(tenant)]),
            ],
        );
        let row: Shown = stmt.get_result(&mut conn).await.unwrap();
        assert_eq!(
            row.shown,
            format!(
                "{{a,\"\",\"zürich, \\\"quoted\\\"\"}} | {{}} | {{NULL,b}} \
                 | {{-9223372036854775808,-1,0,9223372036854775807}} | {{7,NULL}} | true | true \
                 | {{1999-12-31,NULL,2026-12-06}} | {{01234567-89ab-cdef-0123-456789abcdef}} \
                 | {{NULL,01234567-89ab-cdef-0123-456789abcdef}} | {{paid,\"\"}} | {{{tenant}}}"
            )
        );
    }
}
