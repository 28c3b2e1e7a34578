CREATE SEQUENCE events_seq_seq OWNED BY events.seq;
UPDATE events SET seq = -seq;
UPDATE events e SET seq = nextval('events_seq_seq')
FROM (SELECT tenant_id, seq FROM events ORDER BY seq DESC) r
WHERE e.tenant_id = r.tenant_id AND e.seq = r.seq;
ALTER TABLE events ALTER COLUMN seq SET DEFAULT nextval('events_seq_seq');
DROP TABLE event_counters;
