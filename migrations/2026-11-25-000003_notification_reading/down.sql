DROP TABLE IF EXISTS forwarder_signatures;
ALTER TABLE devices DROP COLUMN IF EXISTS trust_unlabelled, DROP COLUMN IF EXISTS allowed_packages;
ALTER TABLE notifications DROP CONSTRAINT notifications_auth_result_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_auth_result_check
    CHECK (auth_result IN ('ok', 'missing_credentials', 'unknown_device', 'bad_signature',
                           'stale_timestamp', 'device_disabled'));
ALTER TABLE notifications DROP COLUMN IF EXISTS reading;
ALTER TABLE payments DROP COLUMN IF EXISTS reason;
ALTER TABLE payments DROP CONSTRAINT payments_result_check;
ALTER TABLE payments ADD CONSTRAINT payments_result_check CHECK (result IN ('matched', 'unmatched'));
ALTER TABLE payments ALTER COLUMN channel SET NOT NULL;
