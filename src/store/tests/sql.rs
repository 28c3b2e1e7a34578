//! SQL-only store tests.
