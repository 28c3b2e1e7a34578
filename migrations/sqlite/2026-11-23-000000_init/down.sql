DROP TABLE idempotency_keys;
DROP TABLE webhook_dedup;
DROP TABLE refunds;
DROP TABLE payments;
DROP TABLE invoices;
DROP TABLE events;
DROP TABLE api_keys;
DROP TABLE tenants;
