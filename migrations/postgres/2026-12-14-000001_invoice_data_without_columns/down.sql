UPDATE invoices SET data = (data::jsonb || jsonb_build_object('status', status, 'version', version))::json;
