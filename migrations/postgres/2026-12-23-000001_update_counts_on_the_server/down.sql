DROP FUNCTION payrail_expect_rows(bigint, bigint);
