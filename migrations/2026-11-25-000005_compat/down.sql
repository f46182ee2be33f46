DROP FUNCTION IF EXISTS solopay_allocate_order(text, text, text, bytea, text, numeric, integer, text, text,
                                     text, jsonb, integer, integer, numeric, integer, text, jsonb);
ALTER TABLE webhook_deliveries DROP COLUMN kind;
ALTER TABLE orders DROP COLUMN compat, DROP COLUMN protocol;
ALTER TABLE merchants DROP COLUMN md5_key, DROP COLUMN pid;

-- The allocation functions live once, in src/db/sql/ (applied at start by src/db/sql_sources.rs).
