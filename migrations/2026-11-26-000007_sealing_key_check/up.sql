-- A known value sealed with the key of the first instance that starts on this database. Every
-- start must open it, so instances holding different keys cannot both run against one database,
-- even before any secret is stored (a check on stored secrets alone passes on an empty one).
CREATE TABLE sealing_key_check (
    id         integer PRIMARY KEY CHECK (id = 1),
    sealed     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
