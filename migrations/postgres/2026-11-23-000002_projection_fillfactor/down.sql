ALTER TABLE invoices RESET (fillfactor);
ALTER TABLE payments RESET (fillfactor);
ALTER TABLE refunds RESET (fillfactor);
