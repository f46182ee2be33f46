-- Owner alerts: what a listener says about itself, the channels that reach the owner, and an
-- outbox of alerts written in the transaction of what caused them, delivered per channel.

-- Heartbeat truth, and the open alerts of a device (one "offline" until it is back).
ALTER TABLE devices
    ADD COLUMN notification_access boolean,
    ADD COLUMN queue_depth integer CHECK (queue_depth >= 0),
    ADD COLUMN oldest_unsent_secs integer CHECK (oldest_unsent_secs >= 0),
    ADD COLUMN os_version text,
    ADD COLUMN offline_alerted_at timestamptz,
    ADD COLUMN silence_alerted_at timestamptz;

CREATE TABLE alert_channels (
    id         text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('telegram', 'wecom', 'dingtalk', 'feishu', 'bark',
                                             'email', 'webhook')),
    name       text NOT NULL,
    -- The channel's settings; its secrets sealed like every stored secret.
    config     jsonb NOT NULL,
    -- The alert kinds sent on this channel; NULL: all of them.
    kinds      text[],
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id          text PRIMARY KEY,
    kind        text NOT NULL,
    -- What it is about (a device, a payment, a delivery, a payee), for dedupe and the owner.
    subject     text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- A kept payment told in a digest instead of on its own: the digest's id.
    digest_id   text REFERENCES alerts (id)
);
CREATE INDEX alerts_kind_subject_idx ON alerts (kind, subject, created_at);
CREATE INDEX alerts_created_idx ON alerts (created_at);

CREATE TABLE alert_deliveries (
    id              bigserial PRIMARY KEY,
    alert_id        text NOT NULL REFERENCES alerts (id),
    channel_id      text NOT NULL REFERENCES alert_channels (id),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    last_error      text,
    completed_at    timestamptz,
    UNIQUE (alert_id, channel_id)
);
CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at)
    WHERE status = 'pending';
