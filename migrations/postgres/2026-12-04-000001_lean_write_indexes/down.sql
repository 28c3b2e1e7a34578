CREATE INDEX events_subject ON events (tenant_id, subject_id, seq);
DROP INDEX payments_awaiting_charge;
ALTER TABLE payments DROP COLUMN awaiting_charge;
CREATE INDEX payments_awaiting_charge ON payments (tenant_id, id)
    WHERE status = 'processing' AND gateway_reference IS NULL;
CREATE INDEX payments_status ON payments (tenant_id, status, id);
