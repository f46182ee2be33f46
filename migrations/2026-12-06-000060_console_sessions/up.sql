-- The operator console: server-side sessions (the cookie holds a random token; only its digest
-- is stored) and the failed sign-ins that lock an address out for a while.
CREATE TABLE console_sessions (
    token_hash   bytea PRIMARY KEY,
    operator     text NOT NULL,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

CREATE TABLE console_sign_in_failures (
    id         bigserial PRIMARY KEY,
    address    text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sign_in_failures_address_idx
    ON console_sign_in_failures (address, failed_at);
