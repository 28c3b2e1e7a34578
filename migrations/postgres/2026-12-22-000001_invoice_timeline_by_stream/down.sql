CREATE INDEX events_invoice ON events (invoice_id, seq) WITH (fillfactor = 70);
