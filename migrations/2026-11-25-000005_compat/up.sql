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

-- The allocation functions live once, in src/db/sql/ (applied at start by src/db/sql_sources.rs).
