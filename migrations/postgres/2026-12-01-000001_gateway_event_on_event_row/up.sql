-- An applied gateway event is recorded once, on the event row it caused: this index is its
-- dedup key (and lets a concurrent writer's duplicate fail its insert). `webhook_dedup` keeps
-- only the events that were ignored (stale), which write no event row.
CREATE UNIQUE INDEX events_gateway_event ON events (tenant_id, gateway_event_id)
    WHERE gateway_event_id IS NOT NULL;
