-- An invoice's snapshot in two parts, as a payment's: `details`, what only an edit of a draft
-- changes (ids, number, customer, line items, totals, creation time), and `data`, the rest
-- (status, amounts, times, version), which a payment's settlement rewrites. `details` is the
-- table's last column: an update that stays on its page (HOT) logs only the bytes from the
-- first changed one to the last, so with the details unchanged a settlement logs `data` (about
-- 200 bytes) instead of the whole snapshot with its line items (600 bytes and up).
ALTER TABLE invoices ADD COLUMN details json;
UPDATE invoices SET
    details = COALESCE(
        (SELECT json_object_agg(k, v) FROM json_each(data) AS e(k, v)
         WHERE k IN ('id', 'tenantId', 'number', 'customerName', 'customerEmail', 'currency',
                     'dueDate', 'lineItems', 'subtotal', 'taxRateBps', 'tax', 'total',
                     'metadata', 'createdAt')),
        '{}'::json),
    data = (data::jsonb - ARRAY['id', 'tenantId', 'number', 'customerName', 'customerEmail',
                                'currency', 'dueDate', 'lineItems', 'subtotal', 'taxRateBps',
                                'tax', 'total', 'metadata', 'createdAt'])::json;
ALTER TABLE invoices ALTER COLUMN details SET NOT NULL;
