-- The allocation functions live once, in src/db/sql/ (applied at start by src/db/sql_sources.rs).

-- Same prefix as the unique (merchant_id, merchant_order_id) index: with stale statistics the
-- planner took it for lookups by merchant_order_id and filtered every order of the merchant.
-- The operator's listing by merchant reads orders_created_idx instead.
DROP INDEX orders_merchant_created_idx;
