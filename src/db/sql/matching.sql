-- revision: 5
--
-- Matching: what a reported payment finds once its amount is locked. This file is the only home
-- of this function (applied at start like `allocation.sql`; bump the revision when you change
-- it). The rules that decide what the payment comes to stay in the service
-- (`src/core/notifications/matching.rs`); this reads, under the amount's lock, what they decide
-- from, in one round trip instead of three to five.
--
-- Revision 2: no bitmap scans, and one generic plan per connection, while the function runs.
-- The unprocessed copies are read through their partial index, which keeps an entry for every
-- notification until VACUUM (each is linked to its payment moments after it is stored). A
-- bitmap scan visits every such entry's row on every call (about 200 on a history of 100,000
-- orders between two autovacuum passes: 300 buffers and 0.3 ms per call), where an index scan
-- marks the dead entries on its first visit and skips them after. The other reads are index
-- scans either way. PL/pgSQL also kept planning each call again (custom plans).
--
-- Revision 3: an earlier report of the same payment is looked for among the device's
-- notifications (`n.device_id`, the leading column of their same-payment index), where it was
-- looked for among the device's payments. No index held that: every report that carries a
-- same-payment key (every V免签 push, every listener report with a post time) read the whole
-- notifications table, 28 to 40 ms and 5,800 buffers on 300,000 notifications. A payment is
-- always its notification's device's, so the reports found are the same.
--
-- Revision 4: plans that stay right when made on empty tables. The generic plans are made at a
-- connection's first call and kept until the tables are analyzed again. Made while the tables
-- were empty (a new installation, or a VACUUM ANALYZE of a quiet database), the earlier-report
-- read was a sequential scan, and with those off a walk of the whole primary key: both read
-- every report as the tables grew (2,200 and 900 buffers per call on 30,000 reports,
-- `tests/api/edge.rs`). Sequential scans are now off, and the earlier report is the first by
-- arrival alone, the order of the device's index of reports, so that index answers it without
-- a sort whatever the statistics (reports arriving in the same microsecond were told apart by
-- payment id; either is the same payment, and its first report is what the caller takes).
--
-- Revision 5: the reports of one payment of a device (those sharing a same-payment key) are
-- locked too (`solopay_lock_same_payment`), after the amount: the operator's assign of a report
-- takes the same lock first, so that it and the matching of another report of that payment are
-- decided one at a time (a withheld report and a matched one share no other lock).

-- Locks the reports of one payment of `p_device_id` (those sharing `p_same_payment_key`) until
-- the transaction ends.
CREATE OR REPLACE FUNCTION solopay_lock_same_payment(p_device_id text, p_same_payment_key bytea)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    SELECT pg_advisory_xact_lock(7, hashtext(p_device_id || ':' || encode(p_same_payment_key, 'hex')))
$$;

-- Each statement below takes its own snapshot (a VOLATILE function in READ COMMITTED), so the
-- reads after the lock see every report of the same amount committed while this one waited for
-- it, exactly as separate statements after the lock did.

-- Locks the amount of p_payee_id (matched one report at a time), then reads:
-- - arrived_at: when this payment arrived for matching: p_received_at, or earlier when the
--   device's first still unprocessed copy of the notification (the same id and the same body; a
--   retry whose first request died) or the device's first report sharing p_same_payment_key
--   (within p_window before it, or any time when p_window is NULL) arrived earlier;
-- - earlier_id, earlier_duplicate_of: the first payment recorded from another report of the
--   device sharing p_same_payment_key (with a window: a credit, one kept unmatched or a
--   duplicate, arrived within p_window either side; without: any, any time). When there is
--   one, nothing else is read (the payment is its duplicate);
-- - the order holding the amount at arrived_at (its reservation around that moment, among the
--   orders that hold), locked FOR NO KEY UPDATE, and whether it was pending and past its
--   expiry then. All NULL when no order held it.
-- One row, always.
CREATE OR REPLACE FUNCTION solopay_match_reads(
    p_payee_id text,
    p_amount numeric,
    p_device_id text,
    p_notification_id text,
    p_body_sha256 bytea,
    p_received_at timestamptz,
    p_same_payment_key bytea,
    p_window interval)
RETURNS TABLE (
    arrived_at timestamptz,
    earlier_id text,
    earlier_duplicate_of text,
    holder_id text,
    holder_status text,
    holder_created_at timestamptz,
    holder_paid_at timestamptz,
    holder_overdue boolean)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    v_arrived timestamptz;
    v_first timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(2, hashtext(p_payee_id || ':' || p_amount::numeric(12, 2)::text));
    IF p_same_payment_key IS NOT NULL THEN
        PERFORM solopay_lock_same_payment(p_device_id, p_same_payment_key);
    END IF;

    -- `auth_result = 'ok'` written out: the partial index of unprocessed notifications.
    SELECT min(n.received_at) INTO v_first
    FROM notifications n
    WHERE n.auth_result = 'ok' AND n.payment_id IS NULL AND n.rejection IS NULL
      AND n.device_id = p_device_id AND n.body_sha256 = p_body_sha256
      AND n.reading->>'notification_id' = p_notification_id;
    v_arrived := LEAST(p_received_at, v_first);

    IF p_same_payment_key IS NOT NULL THEN
        IF p_window IS NULL THEN
            SELECT p.id, p.duplicate_of INTO earlier_id, earlier_duplicate_of
            FROM notifications n JOIN payments p ON p.notification_row = n.id
            WHERE n.device_id = p_device_id AND n.same_payment_key = p_same_payment_key
            ORDER BY n.received_at
            LIMIT 1;
        ELSE
            SELECT p.id, p.duplicate_of INTO earlier_id, earlier_duplicate_of
            FROM notifications n JOIN payments p ON p.notification_row = n.id
            WHERE n.device_id = p_device_id AND n.same_payment_key = p_same_payment_key
              AND p.result IN ('matched', 'unmatched', 'duplicate')
              AND n.received_at BETWEEN v_arrived - p_window AND v_arrived + p_window
            ORDER BY n.received_at
            LIMIT 1;
        END IF;
        IF earlier_id IS NOT NULL THEN
            arrived_at := v_arrived;
            RETURN NEXT;
            RETURN;
        END IF;

        IF p_window IS NULL THEN
            SELECT min(n.received_at) INTO v_first
            FROM notifications n
            WHERE n.auth_result = 'ok' AND n.device_id = p_device_id
              AND n.same_payment_key = p_same_payment_key
              AND n.received_at <= v_arrived;
        ELSE
            SELECT min(n.received_at) INTO v_first
            FROM notifications n
            WHERE n.auth_result = 'ok' AND n.device_id = p_device_id
              AND n.same_payment_key = p_same_payment_key
              AND n.received_at BETWEEN v_arrived - p_window AND v_arrived;
        END IF;
        v_arrived := LEAST(v_arrived, v_first);
    END IF;

    arrived_at := v_arrived;
    -- `holds_amount` written out: the partial index of the orders that hold.
    SELECT o.id, o.status, o.created_at, o.paid_at,
           (o.status = 'pending' AND o.expires_at <= v_arrived)
    INTO holder_id, holder_status, holder_created_at, holder_paid_at, holder_overdue
    FROM orders o
    WHERE o.payee_id = p_payee_id AND o.payable_amount = p_amount
      AND o.created_at <= v_arrived AND o.reserved_until > v_arrived
      AND o.holds_amount
    ORDER BY o.created_at
    LIMIT 1
    FOR NO KEY UPDATE;
    RETURN NEXT;
END
$$;
