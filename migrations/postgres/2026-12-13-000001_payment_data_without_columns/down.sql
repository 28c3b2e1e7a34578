UPDATE payments SET data = (data::jsonb || jsonb_build_object(
    'status', status, 'gatewayReference', gateway_reference, 'version', version))::json;
