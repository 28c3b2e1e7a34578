-- Keys compare byte by byte. The ids are ASCII TypeIDs (`inv_01h…`), the event types, statuses,
-- currencies and invoice numbers short codes: under the database's default collation (a libc
-- locale such as en_US.UTF-8 or C.UTF-8) every B-tree comparison of them goes through the
-- locale's string collation, and every event written makes a few dozen such comparisons in its
-- indexes. Collation "C" compares with memcmp. For these values (ASCII, each column's values of
-- one shape) that is the order the locales give too, and the order of SQLite's BINARY
-- collation and of the engine's own comparisons, so no query's order changes. Changing a
-- column's collation rewrites no table; its indexes are rebuilt.
--
-- Left as they are: free text (names, e-mails, descriptions, URLs, bodies), secrets and hashes
-- (compared to a value, never sorted or indexed), and the payment status and gateway reference,
-- which a generated column reads (PostgreSQL cannot retype those; no index reads them).
ALTER TABLE tenants ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE api_keys
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE event_counters ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE events
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN stream_id TYPE text COLLATE "C",
    ALTER COLUMN event_id TYPE text COLLATE "C",
    ALTER COLUMN event_type TYPE text COLLATE "C",
    ALTER COLUMN invoice_id TYPE text COLLATE "C",
    ALTER COLUMN subject_id TYPE text COLLATE "C",
    ALTER COLUMN gateway_event_id TYPE text COLLATE "C";
ALTER TABLE idempotency_keys
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN key TYPE text COLLATE "C";
ALTER TABLE invoices
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN number TYPE text COLLATE "C",
    ALTER COLUMN status TYPE text COLLATE "C",
    ALTER COLUMN currency TYPE text COLLATE "C";
ALTER TABLE payments
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN invoice_id TYPE text COLLATE "C",
    ALTER COLUMN currency TYPE text COLLATE "C";
ALTER TABLE refunds
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN payment_id TYPE text COLLATE "C";
ALTER TABLE webhook_dedup
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN payment_id TYPE text COLLATE "C",
    ALTER COLUMN gateway_event_id TYPE text COLLATE "C";
ALTER TABLE webhook_endpoints
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE webhook_deliveries
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN endpoint_id TYPE text COLLATE "C";
ALTER TABLE webhook_attempts
    ALTER COLUMN tenant_id TYPE text COLLATE "C",
    ALTER COLUMN endpoint_id TYPE text COLLATE "C",
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN event_id TYPE text COLLATE "C";
