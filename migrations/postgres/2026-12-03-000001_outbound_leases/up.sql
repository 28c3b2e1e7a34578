-- Delivery to each endpoint is leased to one node at a time, so that several nodes on one
-- database share the endpoints without sending the same first attempt twice. A node takes the
-- lease when it is free, expired or already its own, renews it while it works, and records a
-- round only while it still holds it. `lease_until` is stamped by the database's clock.
ALTER TABLE webhook_endpoints ADD COLUMN lease_owner text;
ALTER TABLE webhook_endpoints ADD COLUMN lease_until timestamptz;
