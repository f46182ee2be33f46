-- revision: 7
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

-- Revision 6: a holder's claim to the amount may be contested (`solopay_match_findings`, which
-- `solopay_match_reads` now calls without the contest, for instances of the previous release
-- during an upgrade). An order takes an amount once the reservation (and any payment's hold)
-- before it ends, whether or not every report of the payee's device that arrived before then
-- was decided. One that was not (its request died: the sweep finishes it as of its arrival and
-- pays the earlier order, or keeps it with a hold) may be the very payment a later report,
-- with a new id and no shared key, reports again; decided at once, it would have kept the
-- amount held and that later report would have been its duplicate. Found by a payer's attack
-- (the later report paid the new order, then the sweep paid the old one) and by review (the
-- same through a third order, after the one that cut the paid order's hold short).

-- Revision 7: a waiting report contests only what it may pay. Its stored reading carries what
-- it would pay were its device trusted for everything (`would_pay`: channel and amount, or
-- null when its text or marks alone refuse it; `src/core/notifications/assess.rs`, `could_pay`),
-- so a report whose listener sent only a text no longer contests every order of its phone:
-- only those of the channel and amount it reads as. Readings stored without the key (by
-- earlier releases) are read as before. And the other way round (found by review): a report
-- decided as of an earlier arrival is contested by a payment from the device that arrived
-- after it, within a paid order's hold, and paid a later order of the amount. That covers a
-- waiting report read differently when it is decided (another release's reader), and a report
-- matched as of an earlier report of its text that was kept and held nothing (the device was
-- not trusted for the app then), after another app's copy paid the new order. Found by a
-- payer's attack: a report is matched as of an earlier report sharing its key only when that
-- one may pay its amount (a chat from a look-alike sender shares the key of the receipt it
-- copies, and moved a customer's receipt back to the payer's expired order); and a payment
-- that cut an earlier order's hold contests the holder whenever it arrived (matched as of an
-- earlier report, it may have arrived after the holder took the amount).

-- Whether a stored reading may pay p_amount (on p_channel; NULL: any channel): what it would
-- pay, as the service read it when it stored it (`would_pay`; null: nothing; a part unreadable
-- here counts as a match); a reading stored before that was kept, or none, may pay what the
-- listener gave, or any amount where it gave only a text.
CREATE OR REPLACE FUNCTION solopay_reading_may_pay(p_reading jsonb, p_channel text, p_amount numeric)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN p_reading ? 'would_pay' THEN
                    jsonb_typeof(p_reading->'would_pay') = 'object'
                    AND (p_channel IS NULL
                         OR coalesce(p_reading->'would_pay'->>'channel', p_channel) = p_channel)
                    AND CASE WHEN p_reading->'would_pay'->>'amount' ~ '^[0-9]{1,10}([.][0-9]{1,2})?$'
                             THEN (p_reading->'would_pay'->>'amount')::numeric = p_amount
                             ELSE true END
                ELSE (p_channel IS NULL OR coalesce(p_reading->>'channel', p_channel) = p_channel)
                    AND CASE WHEN p_reading->>'amount' ~ '^[0-9]{1,10}([.][0-9]{1,2})?$'
                             THEN (p_reading->>'amount')::numeric = p_amount
                             ELSE true END
           END
$$;

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
-- - with p_hold (a paid order's hold), when the holder is pending or expired (payable): what
--   contests its claim, the first by arrival of the reports that arrived within p_hold before
--   arrived_at and before the holder took the amount, and were not decided when it did:
--   contested_row, one of the device's reports (not a copy of this one, and one that would
--   pay this channel and amount) still unprocessed; or contested_payment, a
--   payment of this payee and amount decided out of the holder's allocation's sight (paying an
--   earlier order whose hold a later order then cut short, or kept with a hold running past
--   the holder's start), or a payment from this device that arrived after arrived_at within
--   p_hold and paid a later order of this amount (contested_at after arrived_at);
--   contested_at, when that report arrived. NULL when nothing does (or
--   p_hold is NULL).
-- One row, always.
CREATE OR REPLACE FUNCTION solopay_match_findings(
    p_payee_id text,
    p_amount numeric,
    p_device_id text,
    p_notification_id text,
    p_body_sha256 bytea,
    p_received_at timestamptz,
    p_same_payment_key bytea,
    p_window interval,
    p_hold interval)
RETURNS TABLE (
    arrived_at timestamptz,
    earlier_id text,
    earlier_duplicate_of text,
    holder_id text,
    holder_status text,
    holder_created_at timestamptz,
    holder_paid_at timestamptz,
    holder_overdue boolean,
    contested_row bigint,
    contested_payment text,
    contested_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    v_arrived timestamptz;
    v_first timestamptz;
    v_channel text;
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

        -- Only a report that may pay this amount is this payment's first (the key is made
        -- of the normalised text: a chat from a look-alike sender the reader refused shares
        -- it, and must not move a receipt back to an order the payer let expire).
        IF p_window IS NULL THEN
            SELECT min(n.received_at) INTO v_first
            FROM notifications n
            WHERE n.auth_result = 'ok' AND n.device_id = p_device_id
              AND n.same_payment_key = p_same_payment_key
              AND n.received_at <= v_arrived
              AND solopay_reading_may_pay(n.reading, NULL, p_amount);
        ELSE
            SELECT min(n.received_at) INTO v_first
            FROM notifications n
            WHERE n.auth_result = 'ok' AND n.device_id = p_device_id
              AND n.same_payment_key = p_same_payment_key
              AND n.received_at BETWEEN v_arrived - p_window AND v_arrived
              AND solopay_reading_may_pay(n.reading, NULL, p_amount);
        END IF;
        v_arrived := LEAST(v_arrived, v_first);
    END IF;

    arrived_at := v_arrived;
    -- `holds_amount` written out: the partial index of the orders that hold.
    SELECT o.id, o.status, o.created_at, o.paid_at,
           (o.status = 'pending' AND o.expires_at <= v_arrived), o.channel
    INTO holder_id, holder_status, holder_created_at, holder_paid_at, holder_overdue, v_channel
    FROM orders o
    WHERE o.payee_id = p_payee_id AND o.payable_amount = p_amount
      AND o.created_at <= v_arrived AND o.reserved_until > v_arrived
      AND o.holds_amount
    ORDER BY o.created_at
    LIMIT 1
    FOR NO KEY UPDATE;

    IF p_hold IS NOT NULL AND holder_status IN ('pending', 'expired') THEN
        -- `auth_result = 'ok'` written out: the partial index of unprocessed notifications.
        SELECT n.id, n.received_at INTO contested_row, contested_at
        FROM notifications n
        WHERE n.auth_result = 'ok' AND n.payment_id IS NULL AND n.rejection IS NULL
          AND n.device_id = p_device_id AND n.body_sha256 <> p_body_sha256
          AND n.received_at >= v_arrived - p_hold AND n.received_at < holder_created_at
          -- An earlier report of this one's notification (its key) that cannot pay the amount
          -- as it was read is not matched as of, but may yet be this payment's first report.
          AND (n.same_payment_key = p_same_payment_key
               OR solopay_reading_may_pay(n.reading, v_channel, p_amount))
        ORDER BY n.received_at
        LIMIT 1;
        IF contested_row IS NULL THEN
            -- Decided since, or at least out of sight of the holder's allocation: a payment of
            -- this payee and amount that paid an earlier order whose hold was then cut short by
            -- a later order (its reservation ends where one began: only a payment decided after
            -- the reservation it arrived in had ended is cut so), or one kept with a hold still
            -- running when the holder took the amount (which the allocation would have seen,
            -- had it been there). Each read through its own index (the orders' by amount, then
            -- payments by order; payments held by amount), and its arrival by the
            -- notification's key: plans made on empty tables cannot walk a whole table instead.
            SELECT c.id, c.arrived INTO contested_payment, contested_at
            FROM (SELECT q.id,
                         (SELECT n.received_at FROM notifications n
                           WHERE n.id = q.notification_row) AS arrived,
                         true AS cut
                    FROM payments q
                   WHERE q.order_id = ANY (ARRAY(
                             SELECT e.id FROM orders e
                              WHERE e.payee_id = p_payee_id AND e.payable_amount = p_amount
                                AND e.holds_amount AND e.status = 'paid'
                                AND e.created_at < holder_created_at
                                AND e.reserved_until <= holder_created_at
                                AND EXISTS (SELECT 1 FROM orders l
                                             WHERE l.payee_id = p_payee_id
                                               AND l.payable_amount = p_amount
                                               AND l.holds_amount
                                               AND l.created_at = e.reserved_until)))
                  UNION ALL
                  SELECT q.id,
                         (SELECT n.received_at FROM notifications n
                           WHERE n.id = q.notification_row),
                         false
                    FROM payments q
                   WHERE q.payee_id = p_payee_id AND q.amount = p_amount
                     AND q.holds_amount_until > holder_created_at) c
            -- A payment that cut a hold short may have arrived after the holder took the
            -- amount: matched as of an earlier arrival, it paid the order before (found by a
            -- payer's attack: then another app's copy of it paid the holder).
            WHERE c.arrived >= v_arrived - p_hold AND (c.cut OR c.arrived < holder_created_at)
            ORDER BY c.arrived
            LIMIT 1;
        END IF;
        IF contested_row IS NULL AND contested_payment IS NULL THEN
            -- Paid since: a report decided as of an earlier arrival (the sweep's, a retry's, or
            -- one matched as of the first report of its notification) is contested by a payment
            -- from this device that arrived after it, within p_hold, and paid a later order of
            -- this payee and amount: that payment may be this one reported again, which the
            -- holder's claim did not contest when it was matched (this report could pay nothing
            -- as it was first read, or was decided another way). contested_at, after arrived_at,
            -- tells it from the contests above. Read as the one above is: orders by amount,
            -- payments by order, arrivals by key.
            SELECT c.id, c.arrived INTO contested_payment, contested_at
            FROM (SELECT q.id,
                         (SELECT n.received_at FROM notifications n
                           WHERE n.id = q.notification_row) AS arrived
                    FROM payments q
                   WHERE q.order_id = ANY (ARRAY(
                             SELECT l.id FROM orders l
                              WHERE l.payee_id = p_payee_id AND l.payable_amount = p_amount
                                AND l.holds_amount AND l.reserved_until > v_arrived
                                AND l.created_at > holder_created_at AND l.status = 'paid'))
                     -- Not `=`: a plan made on empty tables would read the device's payments
                     -- through their (device, notification id) key, the whole history.
                     AND q.device_id IS NOT DISTINCT FROM p_device_id) c
            WHERE c.arrived > v_arrived AND c.arrived <= v_arrived + p_hold
            ORDER BY c.arrived
            LIMIT 1;
        END IF;
    END IF;
    RETURN NEXT;
END
$$;

-- What `solopay_match_findings` reads, without the contest: the function instances of revision
-- 5 call.
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
LANGUAGE sql VOLATILE
AS $$
    SELECT f.arrived_at, f.earlier_id, f.earlier_duplicate_of, f.holder_id, f.holder_status,
           f.holder_created_at, f.holder_paid_at, f.holder_overdue
      FROM solopay_match_findings(p_payee_id, p_amount, p_device_id, p_notification_id,
                                  p_body_sha256, p_received_at, p_same_payment_key, p_window,
                                  NULL) f
$$;
