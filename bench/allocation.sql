-- The service's create-order transaction for pgbench, statement for statement as
-- src/core/orders.rs `create_order` runs it through src/db/orders.rs (BEGIN; the
-- merchant_order_id lookup; the channel's overdue-expiry UPDATE; solopay_allocate_order, which
-- takes the payee row lock FOR NO KEY UPDATE and holds it through COMMIT; COMMIT), against a
-- database migrated by `solopay migrate`. Parameters as the service binds them with
-- SOLOPAY_MAX_OFFSET_STEPS=999 and the default settings (TTL 300 s, grace 600 s, offsets up,
-- offline after 90 s).
--
-- Variables (pgbench -D): merchant, channel, and the price range in cents, min_cents..max_cents
-- (equal for "the same amount on one payee"). Orders come through the native protocol.
\set n random(1, 1000000000000000)
\set cents random(:min_cents, :max_cents)
BEGIN;
SELECT orders.id, orders.merchant_id, orders.merchant_order_id, orders.request_fingerprint,
       orders.status, orders.channel, orders.amount, orders.payable_amount, orders.payee_id,
       orders.qr_code, orders.qr_fixed_amount, orders.subject, orders.notify_url,
       orders.return_url, orders.metadata, orders.created_at, orders.expires_at,
       orders.reserved_until, orders.paid_at, orders.paid_late, orders.closed_at,
       orders.protocol, orders.compat
  FROM orders
 WHERE orders.merchant_id = :merchant AND orders.merchant_order_id = 'pgbench-' || :n
 LIMIT 1;
UPDATE orders SET status = 'expired'
 WHERE id IN (SELECT id FROM orders
               WHERE status = 'pending' AND expires_at <= now()
                 AND (:channel::text IS NULL OR channel = :channel)
                 AND (NULL::text IS NULL OR id = NULL::text)
               ORDER BY expires_at
               LIMIT 100
               FOR UPDATE SKIP LOCKED)
RETURNING *;
SELECT outcome, order_id
  FROM solopay_allocate_order('ord_pgbench_' || :n, :merchant, 'pgbench-' || :n,
                              sha256(('pgbench-' || :n)::bytea), :channel,
                              :cents::numeric / 100, 300, NULL, NULL, NULL, NULL,
                              600, 999, 0.01, 90, 'native', NULL);
COMMIT;
