-- Projection rows are rewritten by every event of their entity. With free space left on each
-- page, an update that changes no indexed column (an invoice collecting a payment: amounts and
-- the JSON snapshot) can stay on its page as a HOT update and skip inserting a new entry into
-- each of the table's indexes (seven on invoices). Applies to pages written from now on.
ALTER TABLE invoices SET (fillfactor = 70);
ALTER TABLE payments SET (fillfactor = 80);
ALTER TABLE refunds SET (fillfactor = 80);
