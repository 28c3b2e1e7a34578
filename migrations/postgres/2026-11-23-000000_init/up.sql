-- Payrail schema (PostgreSQL). Every primary key and index starts with tenant_id so the schema
-- can be distributed by tenant (Citus) unchanged. Ids are TypeID text (`inv_01h…`).

CREATE TABLE tenants (
    id                      text        NOT NULL PRIMARY KEY,
    name                    text        NOT NULL,
    webhook_secret          text        NOT NULL,
    previous_webhook_secret text,
    previous_valid_until    timestamptz,
    created_at              timestamptz NOT NULL
);
CREATE INDEX tenants_created ON tenants (created_at, id);

CREATE TABLE api_keys (
    tenant_id   text        NOT NULL,
    id          text        NOT NULL,
    name        text        NOT NULL,
    role        text        NOT NULL,
    secret_hash text        NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, id)
);
-- Exceptions to the tenant_id-first rule, both non-unique (allowed on a tenant-distributed
-- table): authentication looks a key up by id alone (the tenant is what it tells us), and
-- the purge deletes by age across tenants.
CREATE INDEX api_keys_id ON api_keys (id);

CREATE TABLE events (
    seq              bigserial   NOT NULL,
    tenant_id        text        NOT NULL,
    stream_id        text        NOT NULL,
    version          bigint      NOT NULL,
    event_id         text        NOT NULL,
    event_type       text        NOT NULL,
    invoice_id       text,
    subject_id       text        NOT NULL,
    actor            text        NOT NULL,
    gateway_event_id text,
    data             jsonb       NOT NULL,
    occurred_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, stream_id, version)
);
CREATE INDEX events_invoice ON events (tenant_id, invoice_id, seq);
CREATE INDEX events_type ON events (tenant_id, event_type, seq);
CREATE INDEX events_subject ON events (tenant_id, subject_id, seq);

CREATE TABLE invoices (
    tenant_id      text        NOT NULL,
    id             text        NOT NULL,
    number         text        NOT NULL,
    status         text        NOT NULL,
    customer_name  text        NOT NULL,
    customer_email text,
    currency       text        NOT NULL,
    total          bigint      NOT NULL,
    due_date       date,
    created_at     timestamptz NOT NULL,
    version        bigint      NOT NULL,
    data           jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, number)
);
CREATE INDEX invoices_created ON invoices (tenant_id, created_at, id);
CREATE INDEX invoices_status ON invoices (tenant_id, status, created_at, id);
CREATE INDEX invoices_due ON invoices (tenant_id, due_date, id);
CREATE INDEX invoices_total ON invoices (tenant_id, total, id);
CREATE INDEX invoices_currency ON invoices (tenant_id, currency, created_at, id);

CREATE TABLE payments (
    tenant_id         text        NOT NULL,
    id                text        NOT NULL,
    invoice_id        text        NOT NULL,
    status            text        NOT NULL,
    amount            bigint      NOT NULL,
    currency          text        NOT NULL,
    gateway_reference text,
    created_at        timestamptz NOT NULL,
    version           bigint      NOT NULL,
    data              jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX payments_invoice ON payments (tenant_id, invoice_id, id);
CREATE INDEX payments_status ON payments (tenant_id, status, id);
-- Payments the gateway may never have seen (re-sent at start-up): a small partial index.
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id)
    WHERE status = 'processing' AND gateway_reference IS NULL;

CREATE TABLE refunds (
    tenant_id  text        NOT NULL,
    id         text        NOT NULL,
    payment_id text        NOT NULL,
    status     text        NOT NULL,
    amount     bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    data       jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX refunds_payment ON refunds (tenant_id, payment_id, id);

CREATE TABLE webhook_dedup (
    tenant_id        text        NOT NULL,
    gateway_event_id text        NOT NULL,
    payment_id       text        NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, gateway_event_id)
);
CREATE INDEX webhook_dedup_payment ON webhook_dedup (tenant_id, payment_id);
CREATE INDEX webhook_dedup_created ON webhook_dedup (created_at);

CREATE TABLE idempotency_keys (
    tenant_id   text        NOT NULL,
    key         text        NOT NULL,
    fingerprint text        NOT NULL,
    status      integer     NOT NULL,
    body        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
