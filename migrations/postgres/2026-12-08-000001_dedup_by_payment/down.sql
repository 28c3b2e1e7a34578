ALTER TABLE webhook_dedup DROP CONSTRAINT webhook_dedup_pkey;
ALTER TABLE webhook_dedup ADD CONSTRAINT webhook_dedup_pkey PRIMARY KEY (tenant_id, gateway_event_id);
CREATE INDEX webhook_dedup_payment ON webhook_dedup (tenant_id, payment_id);
