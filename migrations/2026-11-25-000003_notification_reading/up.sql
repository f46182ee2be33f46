-- Reading raw notifications: payments that could not be read, were not trusted or were
-- ambiguous are kept for the operator; per-device trust rules; generic forwarders.

-- A notification from an app that is not a payment channel has no channel.
ALTER TABLE payments ALTER COLUMN channel DROP NOT NULL;
ALTER TABLE payments DROP CONSTRAINT payments_result_check;
ALTER TABLE payments ADD CONSTRAINT payments_result_check
    CHECK (result IN ('matched', 'unmatched', 'unparsed', 'untrusted', 'ambiguous'));
-- Why a payment was not read or not trusted, in words for the operator.
ALTER TABLE payments ADD COLUMN reason text;

-- The notification as the service reads it (id, channel, amount, package, title, text), derived
-- from the body when it was stored; what the sweep re-reads after a crash.
ALTER TABLE notifications ADD COLUMN reading jsonb;
ALTER TABLE notifications DROP CONSTRAINT notifications_auth_result_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_auth_result_check
    CHECK (auth_result IN ('ok', 'missing_credentials', 'unknown_device', 'bad_signature',
                           'stale_timestamp', 'device_disabled', 'replayed'));

-- Which Android packages a device may report payments for. NULL: the official packages of the
-- channels of its payees. A forwarder that names no package is trusted only when the operator
-- says so.
ALTER TABLE devices
    ADD COLUMN allowed_packages text[],
    ADD COLUMN trust_unlabelled boolean NOT NULL DEFAULT false;

-- A forwarder's signature covers only its timestamp: each (timestamp, sign) is accepted once.
-- Rows older than the acceptance window are useless and swept.
CREATE TABLE forwarder_signatures (
    device_id     text NOT NULL REFERENCES devices (id),
    timestamp_ms  bigint NOT NULL,
    sign          text NOT NULL,
    body_sha256   bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, timestamp_ms, sign)
);
CREATE INDEX forwarder_signatures_age_idx ON forwarder_signatures (created_at);
