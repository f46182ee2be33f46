-- The allocation functions live once, in src/db/sql/ (applied at start by src/db/sql_sources.rs).
SELECT 1;
