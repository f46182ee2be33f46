DROP INDEX webhook_deliveries_in_flight_idx;
ALTER TABLE webhook_deliveries DROP COLUMN destination;
