-- `created_at` holds microseconds since the epoch.
UPDATE payments SET details = json_set(details, '$.id', id, '$.tenantId', tenant_id,
    '$.invoiceId', invoice_id, '$.amount', amount, '$.currency', currency,
    '$.createdAt', printf('%s.%06dZ', strftime('%Y-%m-%dT%H:%M:%S', created_at / 1000000,
                                               'unixepoch'), created_at % 1000000));
