//! Store tests: one contract suite for every `EventStore` (memory, SQLite, PostgreSQL) and
//! SQL-only tests run on both SQL backends. PostgreSQL tests need `PAYRAIL_TEST_PG_URL`
//! (`scripts/test` provides it) and fail without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;
mod fixtures;
mod sql;
