UPDATE payments SET data = json_set(data, '$.status', status,
                                    '$.gatewayReference', gateway_reference,
                                    '$.version', version);
