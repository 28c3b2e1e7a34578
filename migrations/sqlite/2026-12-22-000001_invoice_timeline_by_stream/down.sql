CREATE INDEX events_invoice ON events (tenant_id, invoice_id, seq);
