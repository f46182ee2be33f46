CREATE INDEX orders_merchant_created_idx ON orders (merchant_id, created_at DESC);

-- (solopay_free_offset: its one definition lives in src/db/sql/allocation.sql.)
