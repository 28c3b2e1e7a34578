-- A payment's `details` no longer repeat what its row holds in columns (ids, amount, currency,
-- creation time): the store reads them from the columns. That was ~190 of a row's ~670 bytes,
-- and a webhook touches payments at random, so the narrower the rows, the more of the table
-- stays in shared buffers.
UPDATE payments SET details = (details::jsonb
    - ARRAY['id', 'tenantId', 'invoiceId', 'amount', 'currency', 'createdAt'])::json;
