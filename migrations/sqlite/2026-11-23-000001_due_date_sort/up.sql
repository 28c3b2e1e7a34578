-- See the PostgreSQL migration: index the expression the dueDate sorts order by.
DROP INDEX invoices_due;
CREATE INDEX invoices_due ON invoices (tenant_id, COALESCE(due_date, '9999-12-31'), id);
