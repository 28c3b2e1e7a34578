CREATE TABLE events_rebuilt (
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
INSERT INTO events_rebuilt
SELECT seq, tenant_id, stream_id, version, event_id, event_type, invoice_id,
       COALESCE(subject_id, stream_id), actor, gateway_event_id, data, occurred_at
FROM events;
DROP TABLE events;
ALTER TABLE events_rebuilt RENAME TO events;
CREATE INDEX events_invoice ON events (tenant_id, invoice_id, seq);
CREATE INDEX events_type ON events (tenant_id, event_type, seq);
CREATE UNIQUE INDEX events_gateway_event ON events (tenant_id, gateway_event_id)
    WHERE gateway_event_id IS NOT NULL;
