-- As on PostgreSQL: a payment's gateway token, given at its creation and never changed, moves
-- from `data` (rewritten with every change) to `details` (written once).
UPDATE payments SET
    details = json_set(details, '$.sourceToken', json_extract(data, '$.sourceToken')),
    data = json_remove(data, '$.sourceToken');
