CREATE TABLE payments_whole (
    tenant_id         text        NOT NULL,
    id                text        NOT NULL,
    invoice_id        text        NOT NULL,
    status            text        NOT NULL,
    amount            bigint      NOT NULL,
    currency          text        NOT NULL,
    gateway_reference text,
    created_at        timestamptz NOT NULL,
    version           bigint      NOT NULL,
    data              json        NOT NULL,
    awaiting_charge   boolean
        GENERATED ALWAYS AS (status = 'processing' AND gateway_reference IS NULL) STORED,
    CONSTRAINT payments_whole_pkey PRIMARY KEY (tenant_id, id)
) WITH (fillfactor = 80);

INSERT INTO payments_whole
    (tenant_id, id, invoice_id, status, amount, currency, gateway_reference, created_at,
     version, data)
SELECT tenant_id, id, invoice_id, status, amount, currency, gateway_reference, created_at,
       version, (details::jsonb || data::jsonb)::json
FROM payments;

DROP TABLE payments;
ALTER TABLE payments_whole RENAME TO payments;
ALTER TABLE payments RENAME CONSTRAINT payments_whole_pkey TO payments_pkey;
CREATE INDEX payments_invoice ON payments (tenant_id, invoice_id, id);
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id) WHERE awaiting_charge;
