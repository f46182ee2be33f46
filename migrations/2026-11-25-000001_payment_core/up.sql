-- The payment core: who may call (operator tokens, merchants, listener devices), where money
-- arrives (payees and their fixed-amount codes), what is owed (orders and their reserved
-- payable amounts), what was received (raw notifications, payments) and what happened
-- (events, the outbox that webhook delivery drains).

-- btree_gist lets one exclusion constraint combine equality on text/numeric with range overlap.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE operator_tokens (
    name        text PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,   -- SHA-256 of the token; the token itself is never stored
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE merchants (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    api_key_hash    bytea NOT NULL UNIQUE,   -- SHA-256 of the API key
    webhook_secret  text NOT NULL,           -- whsec_…; needed in clear to sign webhooks
    notify_url      text,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id                    text PRIMARY KEY,
    name                  text NOT NULL,
    secret                text NOT NULL,     -- HMAC key shared with the listener app
    enabled               boolean NOT NULL DEFAULT true,
    last_seen_at          timestamptz,       -- last authenticated heartbeat or notification
    last_heartbeat_at     timestamptz,
    last_notification_at  timestamptz,
    app_version           text,
    battery               smallint,
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payees (
    id            text PRIMARY KEY,
    channel       text NOT NULL CHECK (channel IN ('wechat', 'alipay')),
    name          text NOT NULL,
    qr_code       text NOT NULL,
    device_id     text NOT NULL REFERENCES devices (id),
    enabled       boolean NOT NULL DEFAULT true,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- A notification names a device and a channel, never an account: one payee per pair keeps
    -- "device D received X on channel C" pointing at exactly one set of reserved amounts.
    UNIQUE (device_id, channel)
);

CREATE TABLE payee_fixed_codes (
    payee_id  text NOT NULL REFERENCES payees (id) ON DELETE CASCADE,
    amount    numeric(12, 2) NOT NULL CHECK (amount > 0),
    qr_code   text NOT NULL,
    PRIMARY KEY (payee_id, amount)
);

CREATE TABLE orders (
    id                   text PRIMARY KEY,
    merchant_id          text NOT NULL REFERENCES merchants (id),
    merchant_order_id    text NOT NULL,
    request_fingerprint  bytea NOT NULL,   -- SHA-256 of the creating request's parameters
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'paid', 'expired', 'closed')),
    channel              text NOT NULL,
    amount               numeric(12, 2) NOT NULL CHECK (amount > 0),
    payable_amount       numeric(12, 2) NOT NULL CHECK (payable_amount > 0),
    payee_id             text NOT NULL REFERENCES payees (id),
    qr_code              text NOT NULL,
    qr_fixed_amount      boolean NOT NULL,
    subject              text,
    notify_url           text,
    return_url           text,
    metadata             jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    -- Until when payable_amount stays reserved on the payee: expires_at + grace while pending or
    -- expired, closed_at + grace once closed, paid_at once paid. Only ever shrinks after insert.
    reserved_until       timestamptz NOT NULL,
    paid_at              timestamptz,
    paid_late            boolean NOT NULL DEFAULT false,
    closed_at            timestamptz,
    UNIQUE (merchant_id, merchant_order_id),
    CHECK (reserved_until >= created_at),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL)),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CHECK (NOT paid_late OR status = 'paid'),
    -- The backstop of the payee row lock: two orders of one payee never hold the same payable
    -- amount during overlapping reservations.
    CONSTRAINT orders_payable_amount_reserved_once EXCLUDE USING gist (
        payee_id WITH =,
        payable_amount WITH =,
        tstzrange(created_at, reserved_until) WITH &&
    )
);

-- Allocation and matching read only the amounts a payee has reserved right now.
CREATE INDEX orders_payee_reserved_idx ON orders (payee_id, reserved_until) INCLUDE (payable_amount);
-- The expiry sweep.
CREATE INDEX orders_pending_expiry_idx ON orders (expires_at) WHERE status = 'pending';

-- Every POST /notify as it arrived, authenticated or not, stored before anything else happens.
-- received_at is the moment the payment counts as reported: matching is decided as of then.
CREATE TABLE notifications (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    source       text NOT NULL,               -- the endpoint it came through: 'notify'
    device_id    text,                        -- as claimed by the request, not verified
    auth_result  text NOT NULL CHECK (auth_result IN ('ok', 'missing_credentials',
                     'unknown_device', 'bad_signature', 'stale_timestamp', 'device_disabled')),
    auth_headers jsonb NOT NULL,
    -- The whole body when authenticated; of a refused request only its first 1 KiB (with the
    -- length and digest of the whole), so anonymous requests cannot fill the storage.
    body         bytea NOT NULL,
    body_length  integer NOT NULL,
    body_sha256  bytea NOT NULL,
    remote_addr  text,
    payment_id   text,                        -- the payment this notification produced, once processed
    rejection    text                         -- why an authenticated body was refused (never a payment)
);

-- Authenticated notifications not yet turned into a payment nor refused: the sweep finishes them
-- if the request that stored them died before its matching transaction committed.
CREATE INDEX notifications_unprocessed_idx ON notifications (received_at)
    WHERE auth_result = 'ok' AND payment_id IS NULL AND rejection IS NULL;

-- One row per distinct payment a device reported (its notification_id), whatever its outcome.
CREATE TABLE payments (
    id                 text PRIMARY KEY,
    device_id          text NOT NULL REFERENCES devices (id),
    notification_id    text NOT NULL,
    channel            text NOT NULL,
    amount             numeric(12, 2),
    package            text,
    title              text,
    text               text,
    reported_at        timestamptz,        -- received_at as the device reported it
    payee_id           text REFERENCES payees (id),
    result             text NOT NULL CHECK (result IN ('matched', 'unmatched')),
    -- One order is paid by at most one payment.
    order_id           text UNIQUE REFERENCES orders (id),
    notification_row   bigint NOT NULL REFERENCES notifications (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, notification_id),
    CHECK ((result = 'matched') = (order_id IS NOT NULL))
);

-- The outbox: written in the transaction that changes an order, drained by webhook delivery.
CREATE TABLE events (
    id           text PRIMARY KEY,
    type         text NOT NULL CHECK (type IN ('order.paid', 'order.expired', 'order.closed')),
    order_id     text NOT NULL REFERENCES orders (id),
    merchant_id  text NOT NULL REFERENCES merchants (id),
    data         jsonb NOT NULL,   -- the order object as it was right after the change
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Each transition happens at most once per order.
    UNIQUE (order_id, type)
);

CREATE INDEX events_merchant_idx ON events (merchant_id, created_at);

-- The allocation functions live once, in src/db/sql/ (applied at start by src/db/sql_sources.rs).
