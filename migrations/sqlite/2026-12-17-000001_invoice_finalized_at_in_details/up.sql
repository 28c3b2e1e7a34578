-- As on PostgreSQL: an invoice's finalization time, set once, moves from `data` to `details`.
UPDATE invoices SET
    details = json_set(details, '$.finalizedAt', json_extract(data, '$.finalizedAt')),
    data = json_remove(data, '$.finalizedAt');
