-- The stream/version and invoice indexes of events are keyed by the entity alone.
--
-- Stream and invoice ids are UUIDv7 TypeIDs, unique across tenants, so the tenant's id in front
-- of them narrowed nothing: it only made each entry 32 bytes longer (a 30-character id and its
-- alignment). Every query that reads these indexes still filters on `tenant_id`, now checked
-- on the row, which is one row (the stream's last version) or the rows it returns anyway. One
-- event row writes an entry in each index, and entries inserted in the middle of an index split
-- pages whose half is logged: shorter entries log less per insert and split less often.
--
-- `UNIQUE (stream_id, version)` is at least as strict as the constraint it replaces, and a
-- conflicting write still fails on it.
ALTER TABLE events DROP CONSTRAINT events_tenant_id_stream_id_version_key;
ALTER TABLE events ADD CONSTRAINT events_stream_version UNIQUE (stream_id, version);
DROP INDEX events_invoice;
CREATE INDEX events_invoice ON events (invoice_id, seq) WITH (fillfactor = 70);
