-- A payment's snapshot in two parts: `details`, what never changes once the payment exists
-- (its ids, amount, currency, card summary, creation time), written once at insert; and
-- `data`, the rest (status, references, failure, refunds, version), which every change
-- rewrites. The columns that change come last, after every column that does not: an update
-- that stays on its page (HOT) logs only the bytes from the first changed one on, so settling
-- a payment logs ~360 bytes instead of the whole ~780-byte row.
CREATE TABLE payments_apart (
    tenant_id         text        NOT NULL,
    id                text        NOT NULL,
    invoice_id        text        NOT NULL,
    amount            bigint      NOT NULL,
    currency          text        NOT NULL,
    created_at        timestamptz NOT NULL,
    details           json        NOT NULL,
    status            text        NOT NULL,
    gateway_reference text,
    version           bigint      NOT NULL,
    data              json        NOT NULL,
    awaiting_charge   boolean
        GENERATED ALWAYS AS (status = 'processing' AND gateway_reference IS NULL) STORED,
    CONSTRAINT payments_apart_pkey PRIMARY KEY (tenant_id, id)
) WITH (fillfactor = 80);

INSERT INTO payments_apart
    (tenant_id, id, invoice_id, amount, currency, created_at, details, status,
     gateway_reference, version, data)
SELECT tenant_id, id, invoice_id, amount, currency, created_at,
       (SELECT jsonb_object_agg(k, v) FROM jsonb_each(data::jsonb) AS e(k, v)
        WHERE k IN ('id', 'tenantId', 'invoiceId', 'amount', 'currency', 'paymentMethod',
                    'createdAt'))::json,
       status, gateway_reference, version,
       (data::jsonb - ARRAY['id', 'tenantId', 'invoiceId', 'amount', 'currency',
                            'paymentMethod', 'createdAt'])::json
FROM payments;

DROP TABLE payments;
ALTER TABLE payments_apart RENAME TO payments;
ALTER TABLE payments RENAME CONSTRAINT payments_apart_pkey TO payments_pkey;
CREATE INDEX payments_invoice ON payments (tenant_id, invoice_id, id);
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id) WHERE awaiting_charge;
