-- Fewer index entries per write on the webhook path.
--
-- A payment settling (`processing` → `succeeded`) changed `status`, which two indexes read (the
-- status index and the awaiting-charge predicate), so every settlement wrote a new row version
-- with a new entry in each of the table's indexes. With no index reading `status`, the update
-- can stay on its page as a HOT update and touch no index at all.
--
-- Listing payments by status scans the tenant's payments (the list counts them all anyway);
-- the recovery sweep reads a partial index on a column computed from the two it needs, which
-- changes only when a charge is accepted or fails, never when a webhook settles a payment.
DROP INDEX payments_status;
DROP INDEX payments_awaiting_charge;
ALTER TABLE payments ADD COLUMN awaiting_charge boolean
    GENERATED ALWAYS AS (status = 'processing' AND gateway_reference IS NULL) STORED;
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id) WHERE awaiting_charge;

-- An event's subject is its stream except for refund events (the payment's stream, the refund
-- as subject): the subject filter reads the stream/version or invoice index instead.
DROP INDEX events_subject;
