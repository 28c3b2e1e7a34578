-- A batch sends its COMMIT in the same round trip as its writes, so an update that must find
-- every row it names counts them on the server: a shortfall raises here, which aborts the
-- transaction before its COMMIT is read, and the COMMIT then ends it as a rollback.
CREATE FUNCTION payrail_expect_rows(touched bigint, expected bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF touched <> expected THEN
        RAISE EXCEPTION 'a batch''s update expected % stored rows and found %', expected, touched
            USING ERRCODE = 'PYROW';
    END IF;
    RETURN touched;
END
$$;
