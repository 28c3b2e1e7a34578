-- A UUID as the TypeID `<prefix>_<26 base32 characters>`.
CREATE FUNCTION pg_temp.uuid_typeid(prefix text, id uuid) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT prefix || '_' || string_agg(
               substr('0123456789abcdefghjkmnpqrstvwxyz', substr(h.bits, 5 * i + 1, 5)::bit(5)::int + 1, 1),
               '' ORDER BY i)
    FROM (
        SELECT '00' || string_agg(('x' || substr(replace(id::text, '-', ''), j, 1))::bit(4)::text,
                                  '' ORDER BY j) AS bits
        FROM generate_series(1, 32) AS j
    ) AS h, generate_series(0, 25) AS i
    GROUP BY h.bits
$$;

ALTER TABLE events
    ALTER COLUMN tenant_id TYPE text COLLATE "C" USING pg_temp.uuid_typeid('ten', tenant_id),
    ALTER COLUMN stream_id TYPE text COLLATE "C" USING pg_temp.uuid_typeid(
        CASE split_part(event_type, '.', 1)
            WHEN 'invoice' THEN 'inv' WHEN 'apikey' THEN 'key' ELSE 'pay' END,
        stream_id),
    ALTER COLUMN event_id TYPE text COLLATE "C" USING pg_temp.uuid_typeid('evt', event_id),
    ALTER COLUMN invoice_id TYPE text COLLATE "C" USING pg_temp.uuid_typeid('inv', invoice_id),
    ALTER COLUMN subject_id TYPE text COLLATE "C" USING pg_temp.uuid_typeid('re', subject_id);
