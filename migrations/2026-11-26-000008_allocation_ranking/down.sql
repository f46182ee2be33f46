-- The ranking by one solopay_free_offset call per payee (2026-11-25-000005_compat).
-- (solopay_allocate_order, the allocation of earlier releases, is dropped by migration
-- 2026-12-01-000011; allocation lives in src/db/sql/allocation.sql.)
-- Nothing else to do: what this migration once held now lives in src/db/sql/.
SELECT 1;
