UPDATE invoices SET
    data = (data::jsonb || jsonb_build_object('finalizedAt', details::jsonb -> 'finalizedAt'))::json,
    details = (details::jsonb - 'finalizedAt')::json;
