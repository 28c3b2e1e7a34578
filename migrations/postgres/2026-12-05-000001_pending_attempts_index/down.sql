DROP INDEX webhook_attempts_pending;
CREATE INDEX webhook_attempts_event ON webhook_attempts (tenant_id, endpoint_id, event_seq);
