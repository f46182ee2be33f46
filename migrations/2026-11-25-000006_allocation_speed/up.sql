-- The free offset in one pass over the payee's reserved amounts, sorted: the first offset that
-- is not taken is where the sorted offsets stop counting 0, 1, 2, … . The previous version
-- tested every candidate against the whole list (quadratic: at 1,000 reserved amounts of one
-- price on one payee, half a million comparisons per allocation).
--
-- The smallest offset step k in 0..=max_steps whose amount (amount + k * step) is not reserved
-- on the payee right now and stays at least 0.01; NULL when every candidate is taken.
-- PL/pgSQL rather than SQL: its plans are cached per session, where a SQL function that cannot
-- be inlined is planned again on every call.
-- (solopay_free_offset: its one definition lives in src/db/sql/allocation.sql.)

-- Same prefix as the unique (merchant_id, merchant_order_id) index: with stale statistics the
-- planner took it for lookups by merchant_order_id and filtered every order of the merchant.
-- The operator's listing by merchant reads orders_created_idx instead.
DROP INDEX orders_merchant_created_idx;
