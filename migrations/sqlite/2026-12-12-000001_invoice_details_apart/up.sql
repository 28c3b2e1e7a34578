-- An invoice's snapshot in two parts, as on PostgreSQL: `details`, what only an edit of a
-- draft changes (ids, number, customer, line items, totals, creation time), and `data`, the
-- rest (status, amounts, times, version).
ALTER TABLE invoices ADD COLUMN details text NOT NULL DEFAULT '{}';
UPDATE invoices SET
    details = (SELECT json_group_object(key, json(CASE type WHEN 'text' THEN json_quote(value)
                                                            WHEN 'null' THEN 'null'
                                                            WHEN 'true' THEN 'true'
                                                            WHEN 'false' THEN 'false'
                                                            ELSE value END))
               FROM json_each(invoices.data)
               WHERE key IN ('id', 'tenantId', 'number', 'customerName', 'customerEmail',
                             'currency', 'dueDate', 'lineItems', 'subtotal', 'taxRateBps',
                             'tax', 'total', 'metadata', 'createdAt')),
    data = json_remove(data, '$.id', '$.tenantId', '$.number', '$.customerName',
                       '$.customerEmail', '$.currency', '$.dueDate', '$.lineItems',
                       '$.subtotal', '$.taxRateBps', '$.tax', '$.total', '$.metadata',
                       '$.createdAt');
