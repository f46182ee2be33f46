-- Found by the history benchmark's statement accounting (pg_stat_statements): the sweep's check
-- for listeners gone silent (`mark_silent`: orders on a device's payees that expired unpaid since
-- its last notification) read every order of those payees, the whole history, each time it ran:
-- 116 ms and 38,000 blocks per pass with a million orders, most of the sweep's time, growing with
-- the table. With this index it reads the orders that expired since the device's last
-- notification only. Orders enter it when they expire (a pending order is not in it), so
-- creating an order costs nothing more.
CREATE INDEX orders_expired_by_payee_idx ON orders (payee_id, expires_at) WHERE status = 'expired';
