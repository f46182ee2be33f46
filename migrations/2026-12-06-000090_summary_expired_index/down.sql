DROP INDEX IF EXISTS orders_expired_at_idx;
