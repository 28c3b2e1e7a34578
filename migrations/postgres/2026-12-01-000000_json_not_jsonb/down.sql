ALTER TABLE events ALTER COLUMN data TYPE jsonb USING data::jsonb;
ALTER TABLE invoices ALTER COLUMN data TYPE jsonb USING data::jsonb;
ALTER TABLE payments ALTER COLUMN data TYPE jsonb USING data::jsonb;
ALTER TABLE refunds ALTER COLUMN data TYPE jsonb USING data::jsonb;
