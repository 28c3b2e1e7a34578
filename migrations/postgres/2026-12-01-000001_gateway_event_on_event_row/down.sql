DROP INDEX events_gateway_event;
