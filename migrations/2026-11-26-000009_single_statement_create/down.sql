-- Back to the (payee_id, reserved_until) index.
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

-- The allocation functions live once, in src/db/sql/ (applied at start by src/db/sql_sources.rs).
