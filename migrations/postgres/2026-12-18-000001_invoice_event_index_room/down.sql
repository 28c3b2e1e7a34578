ALTER INDEX events_invoice RESET (fillfactor);
