UPDATE events SET subject_id = stream_id WHERE subject_id IS NULL;
ALTER TABLE events ALTER COLUMN subject_id SET NOT NULL;
