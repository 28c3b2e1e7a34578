DROP INDEX invoices_due;
CREATE INDEX invoices_due ON invoices (tenant_id, due_date, id);
