-- The allocation functions live once, in src/db/sql/allocation.sql, applied at start after the
-- migrations (see src/db/sql_sources.rs); migrations hold DDL only. This drops the allocation
-- of earlier releases, which nothing calls any more (the release before this one calls
-- solopay_create_order, whose signature the SQL source keeps).
DROP FUNCTION IF EXISTS solopay_allocate_order(text, text, text, bytea, text, numeric, integer,
                                               text, text, text, jsonb, integer, integer, numeric,
                                               integer, text, jsonb);
DROP FUNCTION IF EXISTS solopay_allocate_order(text, text, text, bytea, text, numeric, integer,
                                               text, text, text, jsonb, integer, integer, numeric,
                                               integer);
