-- The recovery sweeps page through every tenant's payments awaiting a charge and refunds
-- awaiting an outcome in id order (ids are time-ordered, so oldest first). Partial indexes on
-- `id` alone serve that order directly and hold only the rows a sweep is looking for; the
-- awaiting-charge index began with tenant_id, which the order cannot use, and no index served
-- the refunds' `status = 'pending'`.
DROP INDEX payments_awaiting_charge;
CREATE INDEX payments_awaiting_charge ON payments (id) WHERE awaiting_charge;
CREATE INDEX refunds_pending ON refunds (id) WHERE status = 'pending';
