-- A payment's `data` no longer repeats what its row holds in columns (`status`,
-- `gateway_reference`, `version`): the store reads them from the columns. Every change of a
-- payment logs its `data` whole (its stored length changes with most writes), so those ~90
-- bytes were logged twice.
UPDATE payments SET data = (data::jsonb - ARRAY['status', 'gatewayReference', 'version'])::json;
