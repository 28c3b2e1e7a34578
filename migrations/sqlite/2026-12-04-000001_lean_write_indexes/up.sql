-- Fewer index entries per write on the webhook path (as on PostgreSQL): no index reads a
-- payment's `status`, so settling a payment rewrites no index entry; the recovery sweep reads
-- a partial index on a column computed from status and gateway reference. An event's subject
-- is its stream except for refund events: the subject filter reads the stream or invoice index.
DROP INDEX payments_status;
DROP INDEX payments_awaiting_charge;
ALTER TABLE payments ADD COLUMN awaiting_charge integer
    GENERATED ALWAYS AS (status = 'processing' AND gateway_reference IS NULL) VIRTUAL;
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id) WHERE awaiting_charge;
DROP INDEX events_subject;
