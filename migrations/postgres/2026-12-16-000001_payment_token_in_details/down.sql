UPDATE payments SET
    data = (data::jsonb || jsonb_build_object('sourceToken', details::jsonb -> 'sourceToken'))::json,
    details = (details::jsonb - 'sourceToken')::json;
