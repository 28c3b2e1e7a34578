-- A payment's gateway token (`sourceToken`, given at its creation and never changed) moves from
-- `data`, which every change of the payment rewrites and PostgreSQL logs whole, to `details`,
-- written once.
UPDATE payments SET
    details = (details::jsonb || jsonb_build_object('sourceToken', data::jsonb -> 'sourceToken'))::json,
    data = (data::jsonb - 'sourceToken')::json;
