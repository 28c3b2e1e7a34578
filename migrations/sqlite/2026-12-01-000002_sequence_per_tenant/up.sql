-- See the PostgreSQL migration: `seq` numbers each tenant's own log, from a counter row per
-- tenant bumped in the committing transaction. SQLite cannot change a primary key in place, so
-- the table is rebuilt with (tenant_id, seq) as its key.
CREATE TABLE event_counters (
    tenant_id text    NOT NULL PRIMARY KEY,
    last_seq  integer NOT NULL
);

CREATE TABLE events_per_tenant (
    seq              integer NOT NULL,
    tenant_id        text    NOT NULL,
    stream_id        text    NOT NULL,
    version          integer NOT NULL,
    event_id         text    NOT NULL,
    event_type       text    NOT NULL,
    invoice_id       text,
    subject_id       text    NOT NULL,
    actor            text    NOT NULL,
    gateway_event_id text,
    data             text    NOT NULL,
    occurred_at      integer NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, stream_id, version)
);
INSERT INTO events_per_tenant
SELECT row_number() OVER (PARTITION BY tenant_id ORDER BY seq), tenant_id, stream_id, version,
       event_id, event_type, invoice_id, subject_id, actor, gateway_event_id, data, occurred_at
FROM events;
DROP TABLE events;
ALTER TABLE events_per_tenant RENAME TO events;
CREATE INDEX events_invoice ON events (tenant_id, invoice_id, seq);
CREATE INDEX events_type ON events (tenant_id, event_type, seq);
CREATE INDEX events_subject ON events (tenant_id, subject_id, seq);
CREATE UNIQUE INDEX events_gateway_event ON events (tenant_id, gateway_event_id)
    WHERE gateway_event_id IS NOT NULL;

INSERT INTO event_counters (tenant_id, last_seq)
SELECT tenant_id, max(seq) FROM events GROUP BY tenant_id;
