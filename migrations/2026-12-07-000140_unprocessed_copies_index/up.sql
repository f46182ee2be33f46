-- The still unprocessed copies of a notification, by device and body: what matching reads to
-- match a retry whose first request died as of that first copy (`solopay_match_reads`). It read
-- them through `notifications_unprocessed_idx` (by arrival, all devices), walking every entry
-- older than its own row. Those entries are of notifications already linked to their payment,
-- and an index scan skips them cheaply only once no snapshot can see them any more: while any
-- transaction stays open (a backup with pg_dump, a long report), every report read every
-- notification received since it began, row by row. This index finds the copies of one body of
-- one device whatever is left behind.
--
-- Built concurrently (this migration runs outside a transaction, see metadata.toml), so that
-- reports keep being stored meanwhile. If the build is interrupted, the invalid index left
-- behind is taken for this one (`IF NOT EXISTS`) and never used: matching then reads the older
-- index, as before. Drop it (`DROP INDEX CONCURRENTLY notifications_unprocessed_copies_idx`)
-- and start again to build it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_unprocessed_copies_idx
    ON notifications (device_id, body_sha256)
    WHERE auth_result = 'ok' AND payment_id IS NULL AND rejection IS NULL;
