//! The audit log's migrations: events renumbered per tenant in their old order when
//! `sequence` became per tenant, an event's subject kept only where it is not its stream, and
//! room left on the invoice index, which gains entries in the middle, and the stream/version and
//! invoice indexes keyed by the entity alone.

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::QueryableByName;
use diesel_migrations::EmbeddedMigrations;

use super::{migrate, migrate_through, on_postgres, on_sqlite, there_and_back, OldDatabase};

/// The migration that numbers events per tenant.
const PER_TENANT: &str = "sequence_per_tenant";

/// Events of two tenants interleaved, as the platform-wide counter numbered them.
const EVENTS: [(i64, &str); 5] = [(7, "a"), (9, "b"), (10, "a"), (12, "b"), (20, "a")];

#[derive(QueryableByName, Debug, PartialEq)]
struct Numbered {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tenant_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_id: String,
}

fn insert_sql(occurred_at: &str) -> String {
    EVENTS
        .iter()
        .map(|(seq, tenant)| {
            format!(
                "INSERT INTO events (seq, tenant_id, stream_id, version, event_id, event_type, \
                 subject_id, actor, data, occurred_at) VALUES ({seq}, 'ten_{tenant}', \
                 'inv_{tenant}{seq}', 1, 'evt_{seq}', 'invoice.created', 'inv_{tenant}{seq}', \
                 'test', '{{}}', {occurred_at});"
            )
        })
        .collect()
}

fn check(numbered: Vec<Numbered>, counters: Vec<Numbered>) {
    let expected = |tenant: &str, ids: &[i64]| -> Vec<(String, i64, String)> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| (format!("ten_{tenant}"), i as i64 + 1, format!("evt_{id}")))
            .collect()
    };
    let mut want = expected("a", &[7, 10, 20]);
    want.extend(expected("b", &[9, 12]));
    let got: Vec<_> = numbered
        .into_iter()
        .map(|n| (n.tenant_id, n.seq, n.event_id))
        .collect();
    assert_eq!(got, want);
    let counters: Vec<_> = counters.into_iter().map(|c| (c.tenant_id, c.seq)).collect();
    assert_eq!(counters, [("ten_a".to_owned(), 3), ("ten_b".to_owned(), 2)]);
}

const NUMBERED: &str = "SELECT tenant_id, seq, event_id FROM events ORDER BY tenant_id, seq";
const COUNTERS: &str =
    "SELECT tenant_id, last_seq AS seq, '' AS event_id FROM event_counters ORDER BY tenant_id";

fn renumbered<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    Numbered: QueryableByName<C::Db>,
{
    migrate(conn, C::migrations(), PER_TENANT, true);
    conn.batch_execute(&insert_sql(C::NOW)).unwrap();
    migrate_through(conn, C::migrations(), PER_TENANT);
    let numbered = conn.rows(NUMBERED);
    let counters = conn.rows(COUNTERS);
    check(numbered, counters);
}

#[test]
fn sqlite_events_are_renumbered_per_tenant() {
    on_sqlite(renumbered);
}

#[tokio::test]
async fn postgres_events_are_renumbered_per_tenant() {
    on_postgres(renumbered).await;
}

/// The migration that keeps an event's subject only where it is not the stream.
const SUBJECT_APART: &str = "event_subject_only_apart";

/// Two events of one payment's stream as the schema before that migration stored them: the
/// payment's own (its subject the stream) and a refund's.
fn subject_events_sql(occurred_at: &str) -> String {
    format!(
        "INSERT INTO events (seq, tenant_id, stream_id, version, event_id, event_type, \
         invoice_id, subject_id, actor, data, occurred_at) VALUES \
         (1, 'ten_a', 'pay_a', 1, 'evt_1', 'payment.attempted', 'inv_a', 'pay_a', 'test', '{{}}', \
         {occurred_at}), \
         (2, 'ten_a', 'pay_a', 2, 'evt_2', 'refund.created', 'inv_a', 're_a', 'test', '{{}}', \
         {occurred_at})"
    )
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Subject {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    subject_id: Option<String>,
}

fn subjects<C: OldDatabase>(conn: &mut C) -> Vec<Option<String>>
where
    Subject: QueryableByName<C::Db>,
{
    conn.rows::<Subject>("SELECT subject_id FROM events ORDER BY seq")
        .into_iter()
        .map(|s| s.subject_id)
        .collect()
}

fn event_subject_apart<C: OldDatabase>(conn: &mut C)
where
    EmbeddedMigrations: MigrationSource<C::Db>,
    Subject: QueryableByName<C::Db>,
{
    there_and_back(
        conn,
        SUBJECT_APART,
        &subject_events_sql(C::NOW),
        |c| assert_eq!(subjects(c), [None, Some("re_a".to_owned())]),
        |c| {
            assert_eq!(
                subjects(c),
                [Some("pay_a".to_owned()), Some("re_a".to_owned())]
            )
        },
    );
}

#[test]
fn sqlite_event_subject_is_kept_only_apart_from_the_stream() {
    on_sqlite(event_subject_apart);
}

#[tokio::test]
async fn postgres_event_subject_is_kept_only_apart_from_the_stream() {
    on_postgres(event_subject_apart).await;
}

/// The migration that leaves room on the invoice index of events, filled in the middle.
const INDEX_ROOM: &str = "invoice_event_index_room";

#[derive(QueryableByName, Debug, PartialEq)]
struct IndexOptions {
    #[diesel(sql_type = diesel::sql_types::Text)]
    relname: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    options: Option<String>,
}

fn event_index_options(conn: &mut diesel::PgConnection) -> Vec<(String, Option<String>)> {
    conn.rows::<IndexOptions>(
        "SELECT relname::text, array_to_string(reloptions, ',') AS options FROM pg_class \
         WHERE relname IN ('events_invoice', 'events_tenant_id_stream_id_version_key', \
         'events_pkey') ORDER BY relname",
    )
    .into_iter()
    .map(|i| (i.relname, i.options))
    .collect()
}

#[tokio::test]
async fn postgres_the_invoice_index_of_events_keeps_room() {
    on_postgres(|conn| {
        let with = |room: Option<&str>| {
            vec![
                ("events_invoice".to_owned(), room.map(str::to_owned)),
                ("events_pkey".to_owned(), None),
                ("events_tenant_id_stream_id_version_key".to_owned(), None),
            ]
        };
        there_and_back(
            conn,
            INDEX_ROOM,
            "INSERT INTO events (seq, tenant_id, stream_id, version, event_id, event_type, \
             invoice_id, actor, data, occurred_at) VALUES (1, 'ten_a', 'inv_a', 1, 'evt_1', \
             'invoice.created', 'inv_a', 'test', '{}', now())",
            |c| assert_eq!(event_index_options(c), with(Some("fillfactor=70"))),
            |c| assert_eq!(event_index_options(c), with(None)),
        );
    })
    .await;
}

/// The migration that keys the stream/version and invoice indexes of events by the entity.
const BY_ENTITY: &str = "event_indexes_by_entity";

#[derive(QueryableByName, Debug, PartialEq)]
struct IndexDef {
    #[diesel(sql_type = diesel::sql_types::Text)]
    indexdef: String,
}

/// The definitions of the events table's indexes, by name.
fn event_index_defs(conn: &mut diesel::PgConnection) -> Vec<String> {
    conn.rows::<IndexDef>(
        "SELECT indexdef::text FROM pg_indexes WHERE tablename = 'events' ORDER BY indexname",
    )
    .into_iter()
    .map(|i| i.indexdef)
    .collect()
}

#[tokio::test]
async fn postgres_the_stream_and_invoice_indexes_of_events_lead_with_the_entity() {
    on_postgres(|conn| {
        let defs = |stream: &str, invoice: &str| {
            vec![
                "CREATE UNIQUE INDEX events_gateway_event ON public.events USING btree \
                 (tenant_id, gateway_event_id) WHERE (gateway_event_id IS NOT NULL)"
                    .to_owned(),
                format!("CREATE INDEX events_invoice ON public.events USING btree ({invoice}) WITH (fillfactor='70')"),
                "CREATE UNIQUE INDEX events_pkey ON public.events USING btree (tenant_id, seq)"
                    .to_owned(),
                stream.to_owned(),
                "CREATE INDEX events_type ON public.events USING btree (tenant_id, event_type, seq)"
                    .to_owned(),
            ]
        };
        let insert = |seq: u32, tenant: &str, version: u32| {
            format!(
                "INSERT INTO events (seq, tenant_id, stream_id, version, event_id, event_type, \
                 invoice_id, actor, data, occurred_at) VALUES ({seq}, '{tenant}', 'inv_a', \
                 {version}, 'evt_{tenant}_{seq}', 'invoice.created', 'inv_a', 'test', '{{}}', \
                 now());"
            )
        };
        there_and_back(
            conn,
            BY_ENTITY,
            &insert(1, "ten_a", 1),
            |c| {
                assert_eq!(
                    event_index_defs(c),
                    defs(
                        "CREATE UNIQUE INDEX events_stream_version ON public.events USING btree \
                         (stream_id, version, tenant_id)",
                        "invoice_id, seq"
                    )
                );
                // A stream's version is taken once.
                let again = c.batch_execute(&insert(2, "ten_a", 1)).unwrap_err();
                assert!(again.to_string().contains("events_stream_version"), "{again}");
                c.batch_execute(&insert(2, "ten_a", 2)).unwrap();
            },
            |c| {
                assert_eq!(
                    event_index_defs(c),
                    defs(
                        "CREATE UNIQUE INDEX events_tenant_id_stream_id_version_key ON \
                         public.events USING btree (tenant_id, stream_id, version)",
                        "tenant_id, invoice_id, seq"
                    )
                );
                let rows: Vec<Numbered> =
                    c.rows("SELECT tenant_id, seq, event_id FROM events ORDER BY seq");
                let ids: Vec<_> = rows.into_iter().map(|r| r.event_id).collect();
                assert_eq!(ids, ["evt_ten_a_1", "evt_ten_a_2"]);
            },
        );
    })
    .await;
}

/// The migration that stores the entity ids of events as UUIDs on PostgreSQL.
const KEYS_BINARY: &str = "event_keys_binary";

#[derive(QueryableByName, Debug, PartialEq)]
struct EventKeys {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tenant_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    stream_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    invoice_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    subject_id: Option<String>,
}

fn event_keys(conn: &mut diesel::PgConnection) -> Vec<EventKeys> {
    conn.rows(
        "SELECT tenant_id::text AS tenant_id, stream_id::text AS stream_id, event_id::text AS event_id, \
         invoice_id::text AS invoice_id, subject_id::text AS subject_id FROM events ORDER BY seq",
    )
}

/// An event's stream, id, type, invoice and subject, as the schema before stored them.
type OldEvent = (
    String,
    payrail_actors::domain::EventId,
    &'static str,
    Option<String>,
    Option<String>,
);

/// Each kind of stream, an event with a subject apart and one without an invoice: migrated up,
/// every id is the UUID the engine encodes in it; back down, the same TypeIDs again.
#[tokio::test]
async fn postgres_event_ids_are_stored_as_their_uuids_and_back() {
    use payrail_actors::domain::{ApiKeyId, EventId, InvoiceId, PaymentId, RefundId, TenantId};

    let tenant = TenantId::new();
    let (invoice, payment, key, refund) = (
        InvoiceId::new(),
        PaymentId::new(),
        ApiKeyId::new(),
        RefundId::new(),
    );
    let events: Vec<OldEvent> = vec![
        (
            invoice.to_string(),
            EventId::new(),
            "invoice.created",
            Some(invoice.to_string()),
            None,
        ),
        (
            payment.to_string(),
            EventId::new(),
            "payment.succeeded",
            Some(invoice.to_string()),
            None,
        ),
        (
            payment.to_string(),
            EventId::new(),
            "refund.created",
            Some(invoice.to_string()),
            Some(refund.to_string()),
        ),
        (
            key.to_string(),
            EventId::new(),
            "apikey.created",
            None,
            None,
        ),
    ];
    let quoted = |v: &Option<String>| v.as_ref().map_or("NULL".to_owned(), |v| format!("'{v}'"));
    let rows: String = events
        .iter()
        .enumerate()
        .map(|(i, (stream, id, kind, invoice, subject))| {
            format!(
                "INSERT INTO events (seq, tenant_id, stream_id, version, event_id, event_type, \
                 invoice_id, subject_id, actor, data, occurred_at) VALUES ({}, '{tenant}', \
                 '{stream}', {}, '{id}', '{kind}', {}, {}, 'test', '{{}}', now());",
                i + 1,
                i + 1,
                quoted(invoice),
                quoted(subject),
            )
        })
        .collect();
    let typeids: Vec<EventKeys> = events
        .iter()
        .map(|(stream, id, _, invoice, subject)| EventKeys {
            tenant_id: tenant.to_string(),
            stream_id: stream.clone(),
            event_id: id.to_string(),
            invoice_id: invoice.clone(),
            subject_id: subject.clone(),
        })
        .collect();
    let uuids: Vec<EventKeys> = [
        (invoice.uuid(), Some(invoice.uuid()), None),
        (payment.uuid(), Some(invoice.uuid()), None),
        (payment.uuid(), Some(invoice.uuid()), Some(refund.uuid())),
        (key.uuid(), None, None),
    ]
    .into_iter()
    .zip(&events)
    .map(|((stream, invoice, subject), (_, id, ..))| EventKeys {
        tenant_id: tenant.uuid().to_string(),
        stream_id: stream.to_string(),
        event_id: id.uuid().to_string(),
        invoice_id: invoice.map(|i| i.to_string()),
        subject_id: subject.map(|s| s.to_string()),
    })
    .collect();
    on_postgres(move |conn| {
        there_and_back(
            conn,
            KEYS_BINARY,
            &rows,
            |c| assert_eq!(event_keys(c), uuids),
            |c| assert_eq!(event_keys(c), typeids),
        );
    })
    .await;
}
