-- The dueDate sorts order by COALESCE(due_date, max) so missing dates sort last; only an index
-- on that very expression lets them read one page instead of sorting the tenant's invoices.
DROP INDEX invoices_due;
CREATE INDEX invoices_due ON invoices (tenant_id, (COALESCE(due_date, DATE '9999-12-31')), id);
