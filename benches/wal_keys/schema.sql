DROP TABLE IF EXISTS ev_text, ev_uuid, ev_text_lean;
CREATE TABLE ev_text (
    seq bigserial NOT NULL, tenant_id text NOT NULL, stream_id text NOT NULL, version bigint NOT NULL,
    event_id text NOT NULL, event_type text NOT NULL, invoice_id text, subject_id text NOT NULL,
    actor text NOT NULL, gateway_event_id text, data json NOT NULL, occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, seq), UNIQUE (tenant_id, stream_id, version));
CREATE INDEX ev_text_invoice ON ev_text (tenant_id, invoice_id, seq);
CREATE INDEX ev_text_type ON ev_text (tenant_id, event_type, seq);
CREATE UNIQUE INDEX ev_text_gw ON ev_text (tenant_id, gateway_event_id) WHERE gateway_event_id IS NOT NULL;
CREATE TABLE ev_uuid (
    seq bigserial NOT NULL, tenant_id uuid NOT NULL, stream_id uuid NOT NULL, version bigint NOT NULL,
    event_id uuid NOT NULL, event_type text NOT NULL, invoice_id uuid, subject_id uuid NOT NULL,
    actor text NOT NULL, gateway_event_id text, data json NOT NULL, occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, seq), UNIQUE (tenant_id, stream_id, version));
CREATE INDEX ev_uuid_invoice ON ev_uuid (tenant_id, invoice_id, seq);
CREATE INDEX ev_uuid_type ON ev_uuid (tenant_id, event_type, seq);
CREATE UNIQUE INDEX ev_uuid_gw ON ev_uuid (tenant_id, gateway_event_id) WHERE gateway_event_id IS NOT NULL;
-- text keys, without the type index
CREATE TABLE ev_text_lean (LIKE ev_text INCLUDING DEFAULTS);
ALTER TABLE ev_text_lean ADD PRIMARY KEY (tenant_id, seq);
ALTER TABLE ev_text_lean ADD UNIQUE (tenant_id, stream_id, version);
CREATE INDEX ev_text_lean_invoice ON ev_text_lean (tenant_id, invoice_id, seq);
CREATE UNIQUE INDEX ev_text_lean_gw ON ev_text_lean (tenant_id, gateway_event_id) WHERE gateway_event_id IS NOT NULL;
-- the same keys in both forms: 16 tenants, 20,000 payments on 2,000 invoices
DROP TABLE IF EXISTS k_payments; DROP TABLE IF EXISTS k_tenants;
CREATE TABLE k_tenants AS SELECT i, gen_random_uuid() AS u FROM generate_series(0,15) i;
CREATE TABLE k_payments AS SELECT i, gen_random_uuid() AS u, gen_random_uuid() AS inv FROM generate_series(0,199999) i;
CREATE FUNCTION tx(p text, u uuid) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT p || '_' || substr(md5(u::text), 1, 26) $$;
