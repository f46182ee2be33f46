-- Merchant webhooks: one delivery per event and destination, written in the transaction that
-- writes the event (the outbox), drained by a worker on any instance; every attempt recorded.

-- Secret rotation: the previous secret keeps signing, as a second signature, until it expires.
ALTER TABLE merchants
    ADD COLUMN previous_webhook_secret text,
    ADD COLUMN previous_webhook_secret_expires_at timestamptz,
    ADD CONSTRAINT merchants_previous_secret_expiry
        CHECK ((previous_webhook_secret IS NULL) = (previous_webhook_secret_expires_at IS NULL));

CREATE TABLE webhook_deliveries (
    id               text PRIMARY KEY,
    event_id         text NOT NULL REFERENCES events (id),
    merchant_id      text NOT NULL REFERENCES merchants (id),
    order_id         text NOT NULL REFERENCES orders (id),
    url              text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    -- Attempts made so far; the next attempt is number attempts + 1.
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Failed attempts since the delivery was (re)started: the position in the retry schedule.
    retry_step       integer NOT NULL DEFAULT 0 CHECK (retry_step >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- While an instance is attempting it; after a crash the lease runs out and any instance
    -- takes it again.
    leased_until     timestamptz,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    UNIQUE (event_id, url),
    CHECK ((status = 'pending') = (completed_at IS NULL))
);

-- The worker's queue: due, pending deliveries.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (order_id);
CREATE INDEX webhook_deliveries_merchant_idx ON webhook_deliveries (merchant_id, created_at);

CREATE TABLE webhook_attempts (
    id                bigserial PRIMARY KEY,
    delivery_id       text NOT NULL REFERENCES webhook_deliveries (id),
    attempt           integer NOT NULL CHECK (attempt >= 1),
    started_at        timestamptz NOT NULL,
    latency_ms        integer NOT NULL,
    status_code       integer,
    response_excerpt  text,      -- the first 1 KiB of the response body
    error             text,
    -- Each attempt is made and recorded once.
    UNIQUE (delivery_id, attempt)
);
