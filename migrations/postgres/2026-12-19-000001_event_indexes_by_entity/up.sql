-- The stream/version and invoice indexes of events lead with the entity, not the tenant.
--
-- Stream and invoice ids are time-ordered UUIDv7 TypeIDs. Behind the tenant's id, a stream's or
-- an invoice's later events landed in the middle of their tenant's range, behind the first
-- events of every entity created since, on pages that had filled up meanwhile: they split, and
-- a split logs half a page. Led by the entity, the index is in creation order across tenants,
-- and an entity's later events come while its page is still recent and has room.
--
-- The unique constraint keeps `tenant_id`, last, as a table distributed by tenant requires of
-- every unique constraint; it refuses exactly what the old one refused. The invoice index, not
-- unique, drops it: invoice ids are unique across tenants, so it narrowed nothing and made each
-- entry 32 bytes longer. Every query that reads these indexes filters on `tenant_id` as well.
ALTER TABLE events DROP CONSTRAINT events_tenant_id_stream_id_version_key;
ALTER TABLE events ADD CONSTRAINT events_stream_version UNIQUE (stream_id, version, tenant_id);
DROP INDEX events_invoice;
CREATE INDEX events_invoice ON events (invoice_id, seq) WITH (fillfactor = 70);
