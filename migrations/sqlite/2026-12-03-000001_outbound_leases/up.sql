-- See the PostgreSQL migration: the node holding each endpoint's delivery lease, and until
-- when (integer microseconds by the database's clock).
ALTER TABLE webhook_endpoints ADD COLUMN lease_owner text;
ALTER TABLE webhook_endpoints ADD COLUMN lease_until integer;
