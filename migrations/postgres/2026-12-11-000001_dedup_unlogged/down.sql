ALTER TABLE webhook_dedup SET LOGGED;
