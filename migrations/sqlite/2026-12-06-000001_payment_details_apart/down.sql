CREATE TABLE payments_whole (
    tenant_id         text    NOT NULL,
    id                text    NOT NULL,
    invoice_id        text    NOT NULL,
    status            text    NOT NULL,
    amount            integer NOT NULL,
    currency          text    NOT NULL,
    gateway_reference text,
    created_at        integer NOT NULL,
    version           integer NOT NULL,
    data              text    NOT NULL,
    awaiting_charge   integer
        GENERATED ALWAYS AS (status = 'processing' AND gateway_reference IS NULL) VIRTUAL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

INSERT INTO payments_whole
    (tenant_id, id, invoice_id, status, amount, currency, gateway_reference, created_at,
     version, data)
SELECT tenant_id, id, invoice_id, status, amount, currency, gateway_reference, created_at,
       version,
       (SELECT json_group_object(key, json(CASE type WHEN 'text' THEN json_quote(value)
                                                     WHEN 'null' THEN 'null'
                                                     WHEN 'true' THEN 'true'
                                                     WHEN 'false' THEN 'false'
                                                     ELSE value END))
        FROM (SELECT key, value, type FROM json_each(payments.details)
              UNION ALL SELECT key, value, type FROM json_each(payments.data)))
FROM payments;

DROP TABLE payments;
ALTER TABLE payments_whole RENAME TO payments;
CREATE INDEX payments_invoice ON payments (tenant_id, invoice_id, id);
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id) WHERE awaiting_charge;
