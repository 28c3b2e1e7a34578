-- `seq` becomes the event's position in its tenant's own log (1, 2, 3…) instead of a
-- platform-wide counter: it says nothing about other tenants' volume. Each commit takes its
-- numbers from the tenant's counter row, whose row lock it holds until commit, so within a
-- tenant the numbers increase in commit order and a reader paging by `seq` never skips an event
-- that commits after one it has read.
CREATE TABLE event_counters (
    tenant_id text   NOT NULL PRIMARY KEY,
    last_seq  bigint NOT NULL
);

ALTER TABLE events ALTER COLUMN seq DROP DEFAULT;
DROP SEQUENCE events_seq_seq;

-- Renumber existing events per tenant, in their old order (through negative values, so no
-- intermediate state collides on the primary key).
UPDATE events SET seq = -seq;
UPDATE events e SET seq = r.n
FROM (SELECT tenant_id, seq, row_number() OVER (PARTITION BY tenant_id ORDER BY seq DESC) AS n
      FROM events) r
WHERE e.tenant_id = r.tenant_id AND e.seq = r.seq;

INSERT INTO event_counters (tenant_id, last_seq)
SELECT tenant_id, max(seq) FROM events GROUP BY tenant_id;
