-- Nothing queries inside the stored JSON (event data, projection snapshots): every read takes
-- the whole document back as text. `jsonb` made PostgreSQL parse and re-encode each document on
-- every write (the invoice snapshot on every payment of the invoice); `json` only checks it
-- and stores the text as it came.
ALTER TABLE events ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE invoices ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE payments ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE refunds ALTER COLUMN data TYPE json USING data::json;
