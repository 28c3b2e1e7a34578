-- Outbound webhooks. The audit log is the outbox: nothing here copies an event. Each endpoint
-- keeps a cursor into its tenant's log (`cursor_seq`: every event up to it has had its first
-- attempt recorded), a row per delivery waiting for a retry, and a log of attempts.
CREATE TABLE webhook_endpoints (
    tenant_id            text        NOT NULL,
    id                   text        NOT NULL,
    url                  text        NOT NULL,
    description          text        NOT NULL,
    -- JSON array of event types; empty = every type.
    event_types          text        NOT NULL,
    status               text        NOT NULL,
    -- Sealed under the master key, bound to the endpoint's row.
    secret               text        NOT NULL,
    previous_secret      text,
    previous_valid_until timestamptz,
    cursor_seq           bigint      NOT NULL,
    -- Start of the current run of failed attempts (none since the last success).
    failing_since        timestamptz,
    created_at           timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Deliveries that failed and wait for their next attempt (durable retry records).
CREATE TABLE webhook_deliveries (
    tenant_id       text        NOT NULL,
    endpoint_id     text        NOT NULL,
    event_seq       bigint      NOT NULL,
    attempts        bigint      NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, endpoint_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (tenant_id, endpoint_id, next_attempt_at);

CREATE TABLE webhook_attempts (
    tenant_id       text        NOT NULL,
    endpoint_id     text        NOT NULL,
    id              text        NOT NULL,
    event_seq       bigint      NOT NULL,
    event_id        text        NOT NULL,
    attempt         bigint      NOT NULL,
    status          text        NOT NULL,
    response_status bigint,
    response_body   text,
    duration_ms     bigint      NOT NULL,
    attempted_at    timestamptz NOT NULL,
    next_attempt_at timestamptz,
    PRIMARY KEY (tenant_id, endpoint_id, id)
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (tenant_id, endpoint_id, event_seq);
-- The retention purge deletes by age across tenants (like the other purged tables).
CREATE INDEX webhook_attempts_created ON webhook_attempts (attempted_at);
