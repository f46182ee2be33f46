-- Money correctness at the edge (issue "credit only what is provably a new incoming payment").
--
-- Payments gain two kept results: `contradicted` (the listener's amount or channel and the
-- payment app's text disagree, or the text is not a recognised incoming payment) and
-- `duplicate` (the same payment reported again: `duplicate_of` names the first report, when
-- there is one). `amounts_read` keeps every amount an ambiguous text mentions.
ALTER TABLE payments DROP CONSTRAINT payments_result_check;
ALTER TABLE payments ADD CONSTRAINT payments_result_check
    CHECK (result IN ('matched', 'unmatched', 'unparsed', 'untrusted', 'ambiguous',
                      'contradicted', 'duplicate'));
ALTER TABLE payments
    ADD COLUMN duplicate_of text REFERENCES payments (id),
    ADD COLUMN amounts_read numeric(12, 2)[],
    -- A duplicate the operator assigned to an order keeps what it was reported as a copy of.
    ADD CONSTRAINT payments_duplicate_of_check
        CHECK (duplicate_of IS NULL OR result IN ('duplicate', 'matched'));
CREATE INDEX payments_duplicate_of_idx ON payments (duplicate_of) WHERE duplicate_of IS NOT NULL;

-- A payment no order owed holds its amount on its payee until then (the duplicate window): a
-- copy of it may still arrive, and allocation must not give the amount to a new order meanwhile.
ALTER TABLE payments ADD COLUMN holds_amount_until timestamptz;
CREATE INDEX payments_amount_hold_idx ON payments (payee_id, amount, holds_amount_until)
    WHERE holds_amount_until IS NOT NULL;

-- What two reports of one payment share (device, channel, amount, normalised text and, for
-- listeners that send it, the post time), hashed; NULL where the source's own ids tell
-- payments apart. Reports with the same key within the duplicate window are one payment.
ALTER TABLE notifications ADD COLUMN same_payment_key bytea;
CREATE INDEX notifications_same_payment_idx ON notifications (device_id, same_payment_key, received_at)
    WHERE same_payment_key IS NOT NULL;

-- The server-side functions live once, in the service's SQL sources (src/db/sql/), applied at
-- start after the migrations when their revision or content changed. This table records what
-- is applied.
CREATE TABLE sql_sources (
    name       text PRIMARY KEY,
    revision   integer NOT NULL CHECK (revision >= 1),
    sha256     bytea NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
