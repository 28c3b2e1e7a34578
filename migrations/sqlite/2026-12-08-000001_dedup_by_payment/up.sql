-- An ignored gateway event is recorded against its payment (as on PostgreSQL): one primary key
-- on (tenant, payment, gateway event) serves the batch's check and the payment's load.
CREATE TABLE webhook_dedup_by_payment (
    tenant_id        text    NOT NULL,
    gateway_event_id text    NOT NULL,
    payment_id       text    NOT NULL,
    created_at       integer NOT NULL,
    PRIMARY KEY (tenant_id, payment_id, gateway_event_id)
) WITHOUT ROWID;
INSERT INTO webhook_dedup_by_payment (tenant_id, gateway_event_id, payment_id, created_at)
SELECT tenant_id, gateway_event_id, payment_id, created_at FROM webhook_dedup;
DROP TABLE webhook_dedup;
ALTER TABLE webhook_dedup_by_payment RENAME TO webhook_dedup;
CREATE INDEX webhook_dedup_created ON webhook_dedup (created_at);
