ALTER TABLE webhook_endpoints DROP COLUMN lease_until;
ALTER TABLE webhook_endpoints DROP COLUMN lease_owner;
