-- Compatibility with the older protocols existing clients speak (V免签, 易支付): merchants get a
-- numeric pid and an md5 key; an order remembers which protocol created it (and that protocol's
-- extras) so that its callback speaks the same protocol; deliveries have a kind.

CREATE SEQUENCE merchants_pid_seq START 1001;
ALTER TABLE merchants
    ADD COLUMN pid bigint NOT NULL DEFAULT nextval('merchants_pid_seq') UNIQUE,
    -- Signs and verifies the old protocols' md5 signatures, so it is kept in clear.
    ADD COLUMN md5_key text;
ALTER SEQUENCE merchants_pid_seq OWNED BY merchants.pid;
UPDATE merchants SET md5_key = md5(random()::text || clock_timestamp()::text || id);
ALTER TABLE merchants ALTER COLUMN md5_key SET NOT NULL;

ALTER TABLE orders
    ADD COLUMN protocol text NOT NULL DEFAULT 'native' CHECK (protocol IN ('native', 'vmq', 'epay')),
    -- The protocol's own fields the callback repeats (V免签 param, 易支付 name and param, …).
    ADD COLUMN compat jsonb;

ALTER TABLE webhook_deliveries
    ADD COLUMN kind text NOT NULL DEFAULT 'standard' CHECK (kind IN ('standard', 'vmq', 'epay'));

-- The allocation function takes the protocol and its extras.
-- (solopay_allocate_order, the allocation of earlier releases, is dropped by migration
-- 2026-12-01-000011; allocation lives in src/db/sql/allocation.sql.)

-- Creates an order with a unique payable amount in one server-side call, so that the payee row
-- lock is held only through this call and the COMMIT that follows it.
--
-- 1. Rank the enabled payees of the channel whose device is online by the smallest free offset
--    each would give (read without locks), then fixed-amount code first, then least recently used.
-- 2. Take the lock of the best payee not being allocated right now among those tied for the
--    smallest offset (SKIP LOCKED); if all are busy, wait for each payee's lock in rank order.
--    The lock is FOR NO KEY UPDATE: it serializes allocations on the payee exactly like FOR
--    UPDATE, but does not conflict with the key-share lock that inserting a payment or an order
--    referencing the payee takes, so a payment being recorded never blocks an allocation (and
--    the two can never wait for each other).
-- 3. Under the lock, a new statement (a fresh snapshot in READ COMMITTED) recomputes the free
--    offset and inserts the order. The exclusion constraint on orders backs this up.
--
-- Outcomes: ('created', order id), ('duplicate', NULL) when merchant_order_id already exists,
-- ('no_payee', NULL), ('exhausted', NULL).
-- (solopay_allocate_order, the allocation of earlier releases, is dropped by migration
-- 2026-12-01-000011; allocation lives in src/db/sql/allocation.sql.)
