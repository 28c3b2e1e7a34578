-- An invoice's finalization time (`finalizedAt`, set once when it is finalized) moves from
-- `data`, which every payment settled on the invoice rewrites and PostgreSQL logs whole, to
-- `details`, which that update leaves unchanged.
UPDATE invoices SET
    details = (details::jsonb || jsonb_build_object('finalizedAt', data::jsonb -> 'finalizedAt'))::json,
    data = (data::jsonb - 'finalizedAt')::json;
