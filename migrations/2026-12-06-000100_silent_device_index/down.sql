DROP INDEX IF EXISTS orders_expired_by_payee_idx;
