DROP TABLE IF EXISTS webhook_attempts;
DROP TABLE IF EXISTS webhook_deliveries;
ALTER TABLE merchants
    DROP CONSTRAINT IF EXISTS merchants_previous_secret_expiry,
    DROP COLUMN IF EXISTS previous_webhook_secret_expires_at,
    DROP COLUMN IF EXISTS previous_webhook_secret;
