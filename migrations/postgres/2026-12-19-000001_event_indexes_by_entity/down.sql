ALTER TABLE events DROP CONSTRAINT events_stream_version;
ALTER TABLE events ADD CONSTRAINT events_tenant_id_stream_id_version_key
    UNIQUE (tenant_id, stream_id, version);
DROP INDEX events_invoice;
CREATE INDEX events_invoice ON events (tenant_id, invoice_id, seq) WITH (fillfactor = 70);
