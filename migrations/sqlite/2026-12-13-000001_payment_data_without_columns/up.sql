-- A payment's `data` no longer repeats what its row holds in columns (`status`,
-- `gateway_reference`, `version`), as on PostgreSQL: the store reads them from the columns.
UPDATE payments SET data = json_remove(data, '$.status', '$.gatewayReference', '$.version');
