DROP INDEX alerts_digest_idx;
DROP INDEX events_created_idx;
DROP INDEX payments_notification_row_idx;
DROP INDEX notifications_retention_idx;
ALTER TABLE notifications DROP COLUMN compacted_at;
