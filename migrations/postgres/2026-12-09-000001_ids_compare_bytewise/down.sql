-- Back to the database's default collation.

ALTER TABLE tenants ALTER COLUMN id TYPE text COLLATE "default";
ALTER TABLE api_keys
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN id TYPE text COLLATE "default";
ALTER TABLE event_counters ALTER COLUMN tenant_id TYPE text COLLATE "default";
ALTER TABLE events
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN stream_id TYPE text COLLATE "default",
    ALTER COLUMN event_id TYPE text COLLATE "default",
    ALTER COLUMN event_type TYPE text COLLATE "default",
    ALTER COLUMN invoice_id TYPE text COLLATE "default",
    ALTER COLUMN subject_id TYPE text COLLATE "default",
    ALTER COLUMN gateway_event_id TYPE text COLLATE "default";
ALTER TABLE idempotency_keys
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN key TYPE text COLLATE "default";
ALTER TABLE invoices
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN id TYPE text COLLATE "default",
    ALTER COLUMN number TYPE text COLLATE "default",
    ALTER COLUMN status TYPE text COLLATE "default",
    ALTER COLUMN currency TYPE text COLLATE "default";
ALTER TABLE payments
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN id TYPE text COLLATE "default",
    ALTER COLUMN invoice_id TYPE text COLLATE "default",
    ALTER COLUMN currency TYPE text COLLATE "default";
ALTER TABLE refunds
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN id TYPE text COLLATE "default",
    ALTER COLUMN payment_id TYPE text COLLATE "default";
ALTER TABLE webhook_dedup
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN payment_id TYPE text COLLATE "default",
    ALTER COLUMN gateway_event_id TYPE text COLLATE "default";
ALTER TABLE webhook_endpoints
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN id TYPE text COLLATE "default";
ALTER TABLE webhook_deliveries
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN endpoint_id TYPE text COLLATE "default";
ALTER TABLE webhook_attempts
    ALTER COLUMN tenant_id TYPE text COLLATE "default",
    ALTER COLUMN endpoint_id TYPE text COLLATE "default",
    ALTER COLUMN id TYPE text COLLATE "default",
    ALTER COLUMN event_id TYPE text COLLATE "default";
