-- The indexes the purges read (rows older than the retention) are BRIN: rows arrive in time
-- order, so a summary per range of pages finds the old ones, and a write adds no B-tree entry.
-- Every stale gateway event, every keyed create and every delivery attempt writes one row to
-- these tables; a B-tree insert each was a page write and a WAL record that only the periodic
-- purge ever read.
DROP INDEX webhook_dedup_created;
CREATE INDEX webhook_dedup_created ON webhook_dedup USING brin (created_at)
    WITH (autosummarize = on);
DROP INDEX idempotency_keys_created;
CREATE INDEX idempotency_keys_created ON idempotency_keys USING brin (created_at)
    WITH (autosummarize = on);
DROP INDEX webhook_attempts_created;
CREATE INDEX webhook_attempts_created ON webhook_attempts USING brin (attempted_at)
    WITH (autosummarize = on);
