UPDATE invoices SET data = json_set(data, '$.status', status, '$.version', version);
