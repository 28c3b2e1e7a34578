UPDATE payments SET
    data = json_set(data, '$.sourceToken', json_extract(details, '$.sourceToken')),
    details = json_remove(details, '$.sourceToken');
