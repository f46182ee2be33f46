CREATE INDEX orders_merchant_created_idx ON orders (merchant_id, created_at DESC);

-- The allocation functions live once, in src/db/sql/ (applied at start by src/db/sql_sources.rs).
