DROP INDEX orders_holding_until_idx;
DROP INDEX orders_payee_amount_idx;
CREATE INDEX orders_payee_amount_idx ON orders (payee_id, payable_amount, reserved_until);
ALTER TABLE orders
    DROP CONSTRAINT orders_payable_amount_reserved_once,
    ADD CONSTRAINT orders_payable_amount_reserved_once EXCLUDE USING gist (
        (payee_id COLLATE "C") WITH =,
        ((payable_amount * 100)::bigint) WITH =,
        tstzrange(created_at, reserved_until) WITH &&
    );
ALTER TABLE orders DROP COLUMN holds_amount;
-- The allocation source of this release reads holds_amount: the release before it applies its
-- own at its next start when none is recorded.
DELETE FROM sql_sources WHERE name = 'allocation';
