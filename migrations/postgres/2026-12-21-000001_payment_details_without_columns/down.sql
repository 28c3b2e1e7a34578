UPDATE payments SET details = (details::jsonb || jsonb_build_object(
    'id', id, 'tenantId', tenant_id, 'invoiceId', invoice_id, 'amount', amount,
    'currency', currency,
    'createdAt', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))::json;
