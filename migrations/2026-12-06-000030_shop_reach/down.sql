DROP TABLE platform_keys;
DROP TABLE checkouts;
ALTER TABLE merchants DROP COLUMN epusdt_channel, DROP COLUMN epay_v2_public_key;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_kind_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_kind_check
    CHECK (kind IN ('standard', 'vmq', 'epay'));
ALTER TABLE orders DROP CONSTRAINT orders_protocol_check;
ALTER TABLE orders ADD CONSTRAINT orders_protocol_check
    CHECK (protocol IN ('native', 'vmq', 'epay'));
