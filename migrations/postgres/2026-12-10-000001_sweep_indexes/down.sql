DROP INDEX refunds_pending;
DROP INDEX payments_awaiting_charge;
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id) WHERE awaiting_charge;
