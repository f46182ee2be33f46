-- Retention (SOLOPAY_RETENTION_DAYS): the background sweep deletes or compacts history older
-- than the setting, in batches of at most 1,000 rows, each an index range scan of exactly what
-- is due. Orders, payments and the audit log are never touched.

-- A raw notification whose body, headers and reading were cleared: a payment's own report,
-- which its payment references and whose dedupe keys (device, same_payment_key, received_at)
-- stay. NULL while the row is whole.
ALTER TABLE notifications ADD COLUMN compacted_at timestamptz;
-- The rows retention may still delete or compact, oldest first.
CREATE INDEX notifications_retention_idx ON notifications (received_at) WHERE compacted_at IS NULL;
-- Whether a payment references a raw row (kept, compacted) or none does (deleted); also the
-- foreign key's check when a raw row is deleted, which would otherwise read every payment.
CREATE INDEX payments_notification_row_idx ON payments (notification_row);

-- Events oldest first (events_merchant_idx leads with the merchant).
CREATE INDEX events_created_idx ON events (created_at);

-- Alerts: the digest a member joined, for the self-reference's check when a digest is deleted.
CREATE INDEX alerts_digest_idx ON alerts (digest_id) WHERE digest_id IS NOT NULL;
