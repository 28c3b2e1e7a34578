UPDATE invoices SET
    data = (SELECT json_group_object(key, json(CASE type WHEN 'text' THEN json_quote(value)
                                                         WHEN 'null' THEN 'null'
                                                         WHEN 'true' THEN 'true'
                                                         WHEN 'false' THEN 'false'
                                                         ELSE value END))
            FROM (SELECT key, value, type FROM json_each(invoices.details)
                  UNION ALL SELECT key, value, type FROM json_each(invoices.data)));
ALTER TABLE invoices DROP COLUMN details;
