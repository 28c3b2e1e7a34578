-- Outbound attempts are looked up by event only to fail the earlier attempts of an event that
-- still wait for a retry (`status = 'pending'`). Indexing those alone spares every other
-- attempt (nearly all of them: the successes) an index entry: one B-tree insert fewer per
-- delivery. An attempt leaves the index when its retry settles it.
DROP INDEX webhook_attempts_event;
CREATE INDEX webhook_attempts_pending ON webhook_attempts (tenant_id, endpoint_id, event_seq)
    WHERE status = 'pending';
