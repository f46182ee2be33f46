-- The service's create-order statement for pgbench, as src/core/orders.rs `create_order` runs it
-- through src/db/orders.rs `create`: one call of solopay_create_order on its own (no BEGIN/COMMIT
-- around it), which answers a repeated merchant_order_id, ranks the payees, takes the payee row
-- lock FOR NO KEY UPDATE, inserts the order and returns it; the lock is held through the
-- server's commit of that statement. The service's statement also joins merchants to check the
-- API key (one index probe), which this script leaves out, and hashes the request in Rust where
-- this script calls sha256(). Against a database migrated by
-- `solopay migrate`, with the parameters the service binds with SOLOPAY_MAX_OFFSET_STEPS=999 and
-- the default settings (TTL 300 s, grace 600 s, offsets up, offline after 90 s).
--
-- Variables (pgbench -D): merchant, channel, and the price range in cents, min_cents..max_cents
-- (equal for "the same amount on one payee"). Orders come through the native protocol.
\set n random(1, 1000000000000000)
\set cents random(:min_cents, :max_cents)
SELECT *
  FROM solopay_create_order('ord_pgbench_' || :n, :merchant, 'pgbench-' || :n,
                            sha256(('pgbench-' || :n)::bytea), :channel,
                            :cents::numeric / 100, 300, NULL, NULL, NULL, NULL,
                            600, 999, 0.01, 90, 'native', NULL);
