-- Found by profiling issue 7's benchmark: the reserved amounts of a payee were read through
-- orders_payee_reserved_idx (payee_id, reserved_until) or, in PL/pgSQL's cached generic plans,
-- through the GiST index of the exclusion constraint: a hash join that read every order of every
-- payee (reserved or not) in the price range, so allocation slowed down as the table grew; and a
-- GiST probe on a text key costs about five btree probes. Now the btree orders_payee_amount_idx
-- (payee_id, payable_amount, reserved_until) reads exactly the range a price can take on one
-- payee, and the exclusion constraint compares payee ids in the "C" collation: the same equality
-- (ids are ASCII), bytewise and cheaper, and no query on payee_id (in the default collation) can
-- use the GiST index any more, whatever the statistics say. Matching a payment
-- (payee_id = $1 AND payable_amount = $2) reads the btree too.

ALTER TABLE orders
    DROP CONSTRAINT orders_payable_amount_reserved_once,
    ADD CONSTRAINT orders_payable_amount_reserved_once EXCLUDE USING gist (
        (payee_id COLLATE "C") WITH =,
        ((payable_amount * 100)::bigint) WITH =,
        tstzrange(created_at, reserved_until) WITH &&
    );
CREATE INDEX orders_payee_amount_idx ON orders (payee_id, payable_amount, reserved_until);
DROP INDEX orders_payee_reserved_idx;

-- The allocation functions live once, in src/db/sql/ (applied at start by src/db/sql_sources.rs).
