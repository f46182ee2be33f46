-- Creating an order becomes one statement that the service runs on its own (autocommit): the
-- payee row lock is held through the function and the commit that follows it on the server,
-- without a single client round trip inside it. Found by profiling issue 7's benchmark:
--
-- 1. The reserved amounts of a payee were read through orders_payee_reserved_idx
--    (payee_id, reserved_until) or, in PL/pgSQL's cached generic plans, through the GiST index
--    of the exclusion constraint: a hash join that read every order of every payee (reserved or
--    not) in the price range, so allocation slowed down as the table grew; and a GiST probe on
--    a text key costs about five btree probes. Now the btree orders_payee_amount_idx
--    (payee_id, payable_amount, reserved_until) reads exactly the range a price can take on one
--    payee, and the exclusion constraint compares payee ids in the "C" collation: the same
--    equality (ids are ASCII), bytewise and cheaper, and no query on payee_id (in the default
--    collation) can use the GiST index any more, whatever the statistics say. Matching a
--    payment (payee_id = $1 AND payable_amount = $2) reads the btree too.
-- 2. solopay_create_order takes over from solopay_allocate_order: it answers a repeated
--    merchant_order_id with the existing order, and returns the created order itself, so the
--    service no longer reads it back after COMMIT.
--
-- Offsets, order of preference, locking and the outcomes are those of
-- 2026-11-26-000008_allocation_ranking.

ALTER TABLE orders
    DROP CONSTRAINT orders_payable_amount_reserved_once,
    ADD CONSTRAINT orders_payable_amount_reserved_once EXCLUDE USING gist (
        (payee_id COLLATE "C") WITH =,
        ((payable_amount * 100)::bigint) WITH =,
        tstzrange(created_at, reserved_until) WITH &&
    );
CREATE INDEX orders_payee_amount_idx ON orders (payee_id, payable_amount, reserved_until);
DROP INDEX orders_payee_reserved_idx;

-- The smallest offset step k in 0..=max_steps whose amount (amount + k * step) is not reserved
-- on the payee right now and stays at least 0.01; NULL when every candidate is taken. One pass
-- over the payee's reserved amounts in the range, sorted: the first offset that is not taken
-- is where the sorted offsets stop counting 0, 1, 2, … .
-- (solopay_free_offset: its one definition lives in src/db/sql/allocation.sql.)

-- solopay_allocate_order stays (unchanged, still correct) for instances of the previous release
-- that run during a rolling upgrade; nothing of this release calls it.

-- Creates an order with a unique payable amount in one server-side call, and returns it.
--
-- 0. A merchant_order_id the merchant already used: returns that order as it is (the caller
--    tells it from a new one by its id, and compares the request fingerprints).
-- 1. Rank the enabled payees of the channel whose device is online by the smallest free offset
--    each would give (read without locks), then fixed-amount code first, then least recently
--    used. Usually the price itself (offset 0) is free on some payee: then the ranking is just
--    those payees (one index probe each), and the full ranking is read only when none of them
--    can take the order after all.
-- 2. Take the lock of the best payee not being allocated right now among those tied for the
--    smallest offset (SKIP LOCKED); if all are busy, wait for each payee's lock in rank order.
--    The lock is FOR NO KEY UPDATE: it serializes allocations on the payee exactly like FOR
--    UPDATE, but does not conflict with the key-share lock that inserting a payment or an order
--    referencing the payee takes, so a payment being recorded never blocks an allocation (and
--    the two can never wait for each other).
-- 3. Under the lock, new statements (a fresh snapshot each in READ COMMITTED) find the free
--    offset again and insert the order. The exclusion constraint on orders backs this up.
--
-- Raises 'solopay: no payee available' when no payee of the channel is enabled and online, and
-- 'solopay: amounts exhausted' when every candidate amount of every such payee is reserved.
-- (solopay_create_order: its one definition lives in src/db/sql/allocation.sql.)
