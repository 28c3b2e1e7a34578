-- A payment's snapshot in two parts, as on PostgreSQL: `details`, what never changes once the
-- payment exists (its ids, amount, currency, card summary, creation time), written once at
-- insert; and `data`, the rest, which every change rewrites.
CREATE TABLE payments_apart (
    tenant_id         text    NOT NULL,
    id                text    NOT NULL,
    invoice_id        text    NOT NULL,
    amount            integer NOT NULL,
    currency          text    NOT NULL,
    created_at        integer NOT NULL,
    details           text    NOT NULL,
    status            text    NOT NULL,
    gateway_reference text,
    version           integer NOT NULL,
    data              text    NOT NULL,
    awaiting_charge   integer
        GENERATED ALWAYS AS (status = 'processing' AND gateway_reference IS NULL) VIRTUAL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

INSERT INTO payments_apart
    (tenant_id, id, invoice_id, amount, currency, created_at, details, status,
     gateway_reference, version, data)
SELECT tenant_id, id, invoice_id, amount, currency, created_at,
       (SELECT json_group_object(key, json(CASE type WHEN 'text' THEN json_quote(value)
                                                     WHEN 'null' THEN 'null'
                                                     WHEN 'true' THEN 'true'
                                                     WHEN 'false' THEN 'false'
                                                     ELSE value END))
        FROM json_each(payments.data)
        WHERE key IN ('id', 'tenantId', 'invoiceId', 'amount', 'currency', 'paymentMethod',
                      'createdAt')),
       status, gateway_reference, version,
       json_remove(data, '$.id', '$.tenantId', '$.invoiceId', '$.amount', '$.currency',
                   '$.paymentMethod', '$.createdAt')
FROM payments;

DROP TABLE payments;
ALTER TABLE payments_apart RENAME TO payments;
CREATE INDEX payments_invoice ON payments (tenant_id, invoice_id, id);
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id) WHERE awaiting_charge;
