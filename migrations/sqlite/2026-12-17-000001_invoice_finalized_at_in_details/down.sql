UPDATE invoices SET
    data = json_set(data, '$.finalizedAt', json_extract(details, '$.finalizedAt')),
    details = json_remove(details, '$.finalizedAt');
