DROP INDEX webhook_dedup_created;
CREATE INDEX webhook_dedup_created ON webhook_dedup (created_at);
DROP INDEX idempotency_keys_created;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
DROP INDEX webhook_attempts_created;
CREATE INDEX webhook_attempts_created ON webhook_attempts (attempted_at);
