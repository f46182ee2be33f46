-- Found by the history benchmark at 10 million orders (issue 19): creating an order on 16 payees
-- ran at 45 % of its empty-database rate. Every order ever made stayed in the two structures that
-- creating an order probes and writes: the btree (payee_id, payable_amount, reserved_until) and the
-- GiST index of the exclusion constraint, 0.7 and 1.4 GB at 10 million orders, read at random
-- (one leaf per payee and amount), so most of their pages came from disk. Yet only orders whose
-- reservation has not long ended can matter to either: allocation asks which amounts are reserved
-- now, and matching which order held an amount when a payment arrived (at most the duplicate window
-- before now, or when a notification still waiting for the sweep arrived).
--
-- `holds_amount` says that an order's reservation may still matter. It is true when the order is
-- made and turns false once, when the sweep releases the order (src/db/orders.rs,
-- `release_ended_holds`: the reservation ended more than two hours before the earliest time any
-- payment can still be matched as of). It never turns true again. Both structures now keep only the
-- orders that hold, so their size follows the orders of the last hours, not the history. Allocation
-- and matching read `holds_amount` (so the planner can use the partial index); the answers are the
-- same, since a released order's reservation ended before any time they ask about.
--
-- Existing orders: those whose reservation ended more than 7 days and 2 hours ago are released
-- here (the longest the sweep keeps one; a superset of what it would keep is safe: holding longer
-- changes no answer), the rest by the sweep. All of it holds the table's lock: the UPDATE and
-- each index build below read the table.
ALTER TABLE orders ADD COLUMN holds_amount boolean NOT NULL DEFAULT false;
ALTER TABLE orders ALTER COLUMN holds_amount SET DEFAULT true;
UPDATE orders SET holds_amount = true WHERE reserved_until > now() - interval '7 days 2 hours';

-- The queries say `holds_amount`, which implies the btree's predicate and not `holds_amount IS
-- TRUE` (the same rows, holds_amount being NOT NULL), the predicate of the other two: so they are
-- never read in place of the btree. With statistics from before the last hours' orders (a big
-- table is analyzed rarely), the planner counts the holding orders as none, and any index over
-- them all, read whole, as cheap as the btree's range: on a 10 million order history it read the
-- whole GiST index for each payee (2,191 pages where the btree reads 139).
ALTER TABLE orders
    DROP CONSTRAINT orders_payable_amount_reserved_once,
    ADD CONSTRAINT orders_payable_amount_reserved_once EXCLUDE USING gist (
        (payee_id COLLATE "C") WITH =,
        ((payable_amount * 100)::bigint) WITH =,
        tstzrange(created_at, reserved_until) WITH &&
    ) WHERE (holds_amount IS TRUE);
DROP INDEX orders_payee_amount_idx;
CREATE INDEX orders_payee_amount_idx ON orders (payee_id, payable_amount, reserved_until)
    WHERE holds_amount;
-- The sweep's release pass, oldest reservation first.
CREATE INDEX orders_holding_until_idx ON orders (reserved_until) WHERE holds_amount IS TRUE;
-- The operator's order list filtered by payee reads orders by creation (orders_created_idx) and
-- keeps the payee's, as the list filtered by merchant does (migration 000006 says why).
