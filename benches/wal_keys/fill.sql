-- `x.tbl` receives `x.n` transactions of 50 events from row `x.start` on; row j is an event of payment j mod 200,000 at version 1 + j / 200,000.
DO $$
DECLARE b int; base bigint;
BEGIN
  FOR b IN 0 .. (current_setting('x.n')::int - 1) LOOP
    base := current_setting('x.start')::bigint + b * 50;
    IF current_setting('x.tbl') = 'ev_uuid' THEN
      INSERT INTO ev_uuid (tenant_id, stream_id, version, event_id, event_type, invoice_id, subject_id, actor, gateway_event_id, data, occurred_at)
      SELECT t.u, p.u, 1 + (j / 200000), gen_random_uuid(), 'payment.succeeded', p.inv, p.u, 'gateway', 'evt_gw_' || j, '{"amount":1000,"status":"succeeded"}', now()
      FROM generate_series(base, base + 49) j JOIN k_payments p ON p.i = j % 200000 JOIN k_tenants t ON t.i = p.i % 16;
    ELSE
      EXECUTE format('INSERT INTO %I (tenant_id, stream_id, version, event_id, event_type, invoice_id, subject_id, actor, gateway_event_id, data, occurred_at)
      SELECT tx(''ten'', t.u), tx(''pay'', p.u), 1 + (j / 200000), tx(''evt'', gen_random_uuid()), ''payment.succeeded'', tx(''inv'', p.inv), tx(''pay'', p.u), ''gateway'', ''evt_gw_'' || j, ''{"amount":1000,"status":"succeeded"}'', now()
      FROM generate_series($1, $1 + 49) j JOIN k_payments p ON p.i = j %% 200000 JOIN k_tenants t ON t.i = p.i %% 16', current_setting('x.tbl')) USING base;
    END IF;
    COMMIT;
  END LOOP;
END $$;
