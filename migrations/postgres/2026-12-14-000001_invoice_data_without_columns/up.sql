-- An invoice's `data` no longer repeats what its row holds in columns (`status`, `version`), as
-- a payment's does not: the store reads them from the columns. A payment settling rewrites its
-- invoice's `data`, which PostgreSQL logs whole.
UPDATE invoices SET data = (data::jsonb - ARRAY['status', 'version'])::json;
