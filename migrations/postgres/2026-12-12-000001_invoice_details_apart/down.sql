UPDATE invoices SET data = (details::jsonb || data::jsonb)::json;
ALTER TABLE invoices DROP COLUMN details;
