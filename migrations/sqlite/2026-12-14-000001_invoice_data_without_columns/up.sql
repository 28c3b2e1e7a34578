-- An invoice's `data` no longer repeats what its row holds in columns (`status`, `version`), as
-- on PostgreSQL: the store reads them from the columns.
UPDATE invoices SET data = json_remove(data, '$.status', '$.version');
