-- Back to solopay_allocate_order (2026-11-26-000008_allocation_ranking) and the
-- (payee_id, reserved_until) index.
DROP FUNCTION IF EXISTS solopay_create_order(text, text, text, bytea, text, numeric, integer, text, text,
                                   text, jsonb, integer, integer, numeric, integer, text, jsonb);

ALTER TABLE orders
    DROP CONSTRAINT orders_payable_amount_reserved_once,
    ADD CONSTRAINT orders_payable_amount_reserved_once EXCLUDE USING gist (
        payee_id WITH =,
        payable_amount WITH =,
        tstzrange(created_at, reserved_until) WITH &&
    );
CREATE INDEX orders_payee_reserved_idx ON orders (payee_id, reserved_until) INCLUDE (payable_amount);
DROP INDEX orders_payee_amount_idx;

-- As in 2026-11-25-000006_allocation_speed.
-- (solopay_free_offset: its one definition lives in src/db/sql/allocation.sql.)

-- As in 2026-11-26-000008_allocation_ranking (up.sql left it in place; restated for clarity).
-- (solopay_allocate_order, the allocation of earlier releases, is dropped by migration
-- 2026-12-01-000011; allocation lives in src/db/sql/allocation.sql.)
