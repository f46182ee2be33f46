DROP FUNCTION IF EXISTS solopay_allocate_order(text, text, text, bytea, text, numeric, integer, text, text,
                                     text, jsonb, integer, integer, numeric, integer, text, jsonb);
ALTER TABLE webhook_deliveries DROP COLUMN kind;
ALTER TABLE orders DROP COLUMN compat, DROP COLUMN protocol;
ALTER TABLE merchants DROP COLUMN md5_key, DROP COLUMN pid;

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
