-- An ignored gateway event is recorded against its payment: the batch's check knows the payment
-- of every gateway event it looks up, and a payment's actor loads its payment's records. One
-- primary key on (tenant, payment, gateway event) serves both, and the payment index, a
-- second B-tree entry for every stale webhook, goes. Applied events keep their tenant-wide
-- unique gateway event id on the event row.
ALTER TABLE webhook_dedup DROP CONSTRAINT webhook_dedup_pkey;
ALTER TABLE webhook_dedup
    ADD CONSTRAINT webhook_dedup_pkey PRIMARY KEY (tenant_id, payment_id, gateway_event_id);
DROP INDEX webhook_dedup_payment;
