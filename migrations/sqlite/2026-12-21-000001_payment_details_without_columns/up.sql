-- As on PostgreSQL: a payment's `details` no longer repeat what its row holds in columns (ids,
-- amount, currency, creation time); the store reads them from the columns.
UPDATE payments SET details = json_remove(details, '$.id', '$.tenantId', '$.invoiceId',
                                          '$.amount', '$.currency', '$.createdAt');
