-- The recovery sweeps page through every tenant's payments awaiting a charge and refunds
-- awaiting an outcome in id order (ids are time-ordered, so oldest first). The awaiting-charge
-- index began with tenant_id, which that order cannot use: when the statistics counted many
-- payments awaiting (right after a bulk of creations) the planner sorted a sequential scan of
-- the whole table instead, and no index at all served the refunds' `status = 'pending'`.
-- Both are partial indexes on `id` alone: they hold only the rows a sweep is looking for, so
-- they stay small, and an index scan in id order stops after one page of rows. Neither is
-- unique, so they are allowed on a table distributed by tenant.
DROP INDEX payments_awaiting_charge;
CREATE INDEX payments_awaiting_charge ON payments (id) WHERE awaiting_charge;
CREATE INDEX refunds_pending ON refunds (id) WHERE status = 'pending';
