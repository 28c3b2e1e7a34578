-- An event's subject is its stream except for refund events (the payment's stream, the refund
-- as subject). `subject_id` now holds the subject only where it is not the stream, and is NULL
-- otherwise: every other event row is 31 bytes shorter, in the table and in the log. The
-- subject filter reads `subject_id IS NULL` for a stream's own events.
ALTER TABLE events ALTER COLUMN subject_id DROP NOT NULL;
UPDATE events SET subject_id = NULL WHERE subject_id = stream_id;
