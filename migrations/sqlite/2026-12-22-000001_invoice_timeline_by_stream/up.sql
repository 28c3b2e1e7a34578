-- An invoice's timeline is read through its streams, not through an index of its own: the
-- invoice's stream and its payments' streams (a refund's events are in its payment's stream),
-- found through `payments_invoice` and read through the stream/version index. Every event of
-- a payment carried an entry in `events_invoice`, at its invoice's place among the tenant's
-- invoices: one more index entry per event, on a page no other write of the batch touched,
-- and the only index of the log whose inserts landed mid-tree and split pages there. Without
-- it the writer held 420 batched webhook requests a second where it had not held 300
-- (BENCHMARKS.md, "SQLite: the log without its invoice index").
DROP INDEX events_invoice;
