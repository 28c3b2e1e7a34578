-- As on SQLite: an invoice's timeline is read through its streams (the invoice's and its
-- payments', found through `payments_invoice`), each through the stream/version index, and a
-- page of the log about one invoice through its stream. The invoice index of events served
-- only those reads and took an entry for every event, at its invoice's place (BENCHMARKS.md,
-- "The log without its invoice index on PostgreSQL").
DROP INDEX events_invoice;
