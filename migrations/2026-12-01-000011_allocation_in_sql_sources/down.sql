-- Nothing to restore: releases that call solopay_allocate_order are no longer supported.
-- Nothing else to do: what this migration once held now lives in src/db/sql/.
SELECT 1;
