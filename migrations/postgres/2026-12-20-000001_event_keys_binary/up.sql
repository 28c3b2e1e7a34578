-- The id columns of `events` (the tenant, the stream, the event, the invoice and the subject)
-- store the UUID inside the TypeID: 16 bytes instead of the 30-character text and its length
-- byte, in the row and in each entry of every index (each of the five holds the tenant). The
-- prefix is not lost: a tenant's is always `ten_`, the event's own id `evt_`, an invoice `inv_`,
-- a subject a refund's `re_`, and a stream's kind follows from the event's type (`invoice.*`
-- events are in an invoice's stream, `payment.*` and `refund.*` in a payment's, `apikey.*` in
-- an API key's). The other tables keep their TypeID text.

-- A TypeID's 26 base32 characters (Crockford, lower case) as the UUID they encode. Anything
-- else stops the migration (a cast of the message to uuid fails, naming the id).
CREATE FUNCTION pg_temp.typeid_uuid(id text) RETURNS uuid LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN id ~ '^[a-z]{1,3}_[0-7][0-9a-hjkmnp-tv-z]{25}$' THEN (
    SELECT string_agg(to_hex(substr(b.bits, 4 * j + 3, 4)::bit(4)::int), '' ORDER BY j)::uuid
    FROM (
        SELECT string_agg(
                   (strpos('0123456789abcdefghjkmnpqrstvwxyz', substr(right(id, 26), i, 1)) - 1)
                       ::bit(5)::text,
                   '' ORDER BY i) AS bits
        FROM generate_series(1, 26) AS i
    ) AS b, generate_series(0, 31) AS j
    GROUP BY b.bits
    ) ELSE ('not a TypeID: ' || id)::uuid END
$$;

ALTER TABLE events
    ALTER COLUMN tenant_id TYPE uuid USING pg_temp.typeid_uuid(tenant_id),
    ALTER COLUMN stream_id TYPE uuid USING pg_temp.typeid_uuid(stream_id),
    ALTER COLUMN event_id TYPE uuid USING pg_temp.typeid_uuid(event_id),
    ALTER COLUMN invoice_id TYPE uuid USING pg_temp.typeid_uuid(invoice_id),
    ALTER COLUMN subject_id TYPE uuid USING pg_temp.typeid_uuid(subject_id);
