-- revision: 5
--
-- Allocation: the amounts a payee has taken, the free offset of a payee, and the single
-- statement that creates an order with a unique payable amount. This file is the only home of
-- these functions: the service applies it at start, after the migrations and under the same
-- advisory lock, when the database (`sql_sources`) records an older revision; a newer revision,
-- applied by a newer release, is left alone, and the same revision with other content stops the
-- start (bump the revision when you change this file).
--
-- Revision 1: an order holds its amount from the moment its row is written under the payee
-- lock (`clock_timestamp()` after the lock, not the statement's start), so a payment that
-- arrived while the order waited for the lock can never pay it.
-- Revision 2: a payment that no order owed holds its amount on its payee for the duplicate
-- window (`payments.holds_amount_until`): a copy of it may still come, and must not find a new
-- order that was given the amount meanwhile.
-- Revision 3: refusals are SQLSTATEs (SP001 no payee available, SP002 amounts exhausted), with
-- the same messages as before (instances of the previous release still read those) and the
-- condition named in the error's constraint field, which diesel exposes where it does not
-- expose SQLSTATEs of its own choosing.
-- Revision 4: the offset range of a price and the first free offset of a payee are written once
-- (solopay_max_offset, solopay_first_free_offset), inlined where they were written out before.
-- Revision 5: the reserved amounts are read among the orders that hold (`holds_amount`, the
-- partial index and exclusion constraint of migration 000110): the same amounts, since an order
-- is released only long after its reservation ended, from an index the size of the last hours.

-- The amounts between p_lo and p_hi that a payee has taken right now: the payable amounts of
-- its reserved orders and the amounts held by its payments that no order owed. Inlined into the
-- queries that call it.
CREATE OR REPLACE FUNCTION solopay_taken_amounts(p_payee_id text, p_lo numeric, p_hi numeric)
RETURNS TABLE (amount numeric)
LANGUAGE sql STABLE
AS $$
    SELECT o.payable_amount
      FROM orders o
     WHERE o.payee_id = p_payee_id
       AND o.payable_amount BETWEEN p_lo AND p_hi
       AND o.reserved_until > now()
       AND o.holds_amount
    UNION ALL
    SELECT q.amount
      FROM payments q
     WHERE q.payee_id = p_payee_id
       AND q.amount BETWEEN p_lo AND p_hi
       AND q.holds_amount_until > now()
$$;

-- The payees an order of `p_channel` may go to: enabled, with an enabled device seen within
-- `p_offline_after` seconds. Inlined into the queries that call it.
CREATE OR REPLACE FUNCTION solopay_online_payees(p_channel text, p_offline_after integer)
RETURNS TABLE (id text, last_used_at timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT p.id, p.last_used_at
      FROM payees p
      JOIN devices d ON d.id = p.device_id
     WHERE p.channel = p_channel
       AND p.enabled
       AND d.enabled
       AND d.last_seen_at > now() - make_interval(secs => p_offline_after)
$$;

-- The largest offset step a price may take: p_max_steps, or fewer where stepping down would go
-- below 0.01 (offsets below 0.01 are not payable). Inlined into the expressions that call it.
CREATE OR REPLACE FUNCTION solopay_max_offset(p_amount numeric, p_max_steps integer, p_step numeric)
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN p_step < 0
                THEN least(p_max_steps, floor((p_amount - 0.01) / -p_step)::integer)
                ELSE p_max_steps END
$$;

-- The smallest offset step k in 0..=p_max_k whose amount (p_amount + k * p_step) the payee has
-- not taken right now; NULL when every candidate is taken. One row, always. One pass over the
-- payee's taken amounts in the range, sorted: the first offset that is not taken is where the
-- sorted offsets stop counting 0, 1, 2, … . One amount may be taken twice (two reservations,
-- one ended before the other began, or an order and a held payment), hence DISTINCT. Inlined
-- into the queries that call it (in FROM).
CREATE OR REPLACE FUNCTION solopay_first_free_offset(p_payee_id text, p_amount numeric,
                                                     p_max_k integer, p_step numeric)
RETURNS TABLE (free_k integer)
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN p_max_k >= 0 AND g.gap <= p_max_k THEN g.gap END
      FROM (SELECT coalesce(min(t.pos) FILTER (WHERE t.step <> t.pos), count(*))::integer AS gap
              FROM (SELECT d.step, (row_number() OVER (ORDER BY d.step) - 1)::integer AS pos
                      FROM (SELECT DISTINCT ((a.amount - p_amount) / p_step)::integer AS step
                              FROM solopay_taken_amounts(
                                       p_payee_id,
                                       least(p_amount, p_amount + p_max_k * p_step),
                                       greatest(p_amount, p_amount + p_max_k * p_step)) a
                             WHERE mod(a.amount - p_amount, p_step) = 0) d) t) g
$$;

-- The smallest offset step k in 0..=max_steps whose amount (amount + k * step) is not taken
-- on the payee right now and stays at least 0.01; NULL when every candidate is taken.
CREATE OR REPLACE FUNCTION solopay_free_offset(p_payee_id text, p_amount numeric,
                                               p_max_steps integer, p_step numeric)
RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    max_k  integer := solopay_max_offset(p_amount, p_max_steps, p_step);
    k      integer;
BEGIN
    IF max_k < 0 THEN
        RETURN NULL;
    END IF;
    SELECT f.free_k INTO k FROM solopay_first_free_offset(p_payee_id, p_amount, max_k, p_step) f;
    RETURN k;
END;
$$;

-- Creates an order with a unique payable amount in one server-side call, and returns it.
--
-- 0. A merchant_order_id the merchant already used: returns that order as it is (the caller
--    tells it from a new one by its id, and compares the request fingerprints).
-- 1. Rank the enabled payees of the channel whose device is online by the smallest free offset
--    each would give (read without locks), then fixed-amount code first, then least recently
--    used. Usually the price itself (offset 0) is free on some payee: then the ranking is just
--    those payees (one index probe each), and the full ranking is read only when none of them
--    can take the order after all.
-- 2. Take the lock of the best payee not being allocated right now among those tied for the
--    smallest offset (SKIP LOCKED); if all are busy, wait for each payee's lock in rank order.
--    The lock is FOR NO KEY UPDATE: it serializes allocations on the payee exactly like FOR
--    UPDATE, but does not conflict with the key-share lock that inserting a payment or an order
--    referencing the payee takes, so a payment being recorded never blocks an allocation (and
--    the two can never wait for each other).
-- 3. Under the lock, new statements (a fresh snapshot each in READ COMMITTED) find the free
--    offset again and insert the order. The exclusion constraint on orders backs this up.
--
-- Raises SQLSTATE SP001 (constraint solopay_no_payee) when no payee of the channel is enabled
-- and online, and SP002 (solopay_amounts_exhausted) when every candidate amount of every such
-- payee is taken; SP003 when an order of the same merchant_order_id conflicts and cannot be read.
CREATE OR REPLACE FUNCTION solopay_create_order(
    p_order_id text, p_merchant_id text, p_merchant_order_id text, p_request_fingerprint bytea,
    p_channel text, p_amount numeric, p_expires_in integer, p_subject text, p_notify_url text,
    p_return_url text, p_metadata jsonb, p_grace integer, p_max_steps integer, p_step numeric,
    p_offline_after integer, p_protocol text, p_compat jsonb)
RETURNS SETOF orders
LANGUAGE plpgsql
AS $$
DECLARE
    ranked_ids  text[];
    ranked_ks   integer[];
    best_k      integer;
    round       integer;
    pass        integer;
    i           integer;
    k           integer;
    amt         numeric(12, 2);
    created     orders%ROWTYPE;
    max_k       integer;
    held_from   timestamptz;
BEGIN
    RETURN QUERY SELECT * FROM orders o
                  WHERE o.merchant_id = p_merchant_id
                    AND o.merchant_order_id = p_merchant_order_id;
    IF FOUND THEN
        RETURN;
    END IF;

    max_k := solopay_max_offset(p_amount, p_max_steps, p_step);

    -- Round 1: the payees on which the price itself is free, the best offset there is.
    IF max_k >= 0 THEN
        SELECT array_agg(c.id ORDER BY c.fixed DESC, c.last_used_at NULLS FIRST, c.id)
          INTO ranked_ids
          FROM (SELECT p.id, p.last_used_at,
                       EXISTS (SELECT 1 FROM payee_fixed_codes fc
                                WHERE fc.payee_id = p.id AND fc.amount = p_amount) AS fixed
                  FROM solopay_online_payees(p_channel, p_offline_after) p
                 WHERE NOT EXISTS (SELECT 1 FROM solopay_taken_amounts(p.id, p_amount, p_amount))) c;
    END IF;

    FOR round IN 1..2 LOOP
        IF round = 1 THEN
            CONTINUE WHEN ranked_ids IS NULL;
            ranked_ks := array_fill(0, ARRAY[array_length(ranked_ids, 1)]);
            best_k := 0;
        ELSE
            -- Round 2: the free offset of every candidate in one statement (per payee a
            -- lateral subquery, one btree range read each).
            WITH offsets AS (
                SELECT p.id, p.last_used_at, f.free_k
                  FROM solopay_online_payees(p_channel, p_offline_after) p
                  CROSS JOIN LATERAL solopay_first_free_offset(p.id, p_amount, max_k, p_step) f
            )
            SELECT array_agg(c.id ORDER BY c.free_k NULLS LAST, c.fixed DESC, c.last_used_at NULLS FIRST, c.id),
                   array_agg(c.free_k ORDER BY c.free_k NULLS LAST, c.fixed DESC, c.last_used_at NULLS FIRST, c.id),
                   min(c.free_k)
              INTO ranked_ids, ranked_ks, best_k
              FROM (SELECT os.id, os.last_used_at, os.free_k,
                           EXISTS (SELECT 1 FROM payee_fixed_codes fc
                                    WHERE fc.payee_id = os.id
                                      AND fc.amount = p_amount + os.free_k * p_step) AS fixed
                      FROM offsets os) c;

            IF ranked_ids IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'SP001', MESSAGE = 'solopay: no payee available',
                    CONSTRAINT = 'solopay_no_payee';
            END IF;
            -- Every amount of every payee was reserved a moment ago: waiting for each payee's
            -- lock to find it full again would only hold up other allocations.
            IF best_k IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'SP002', MESSAGE = 'solopay: amounts exhausted',
                    CONSTRAINT = 'solopay_amounts_exhausted';
            END IF;
        END IF;

        FOR pass IN 1..2 LOOP
            FOR i IN 1..array_length(ranked_ids, 1) LOOP
                EXIT WHEN pass = 1 AND (best_k IS NULL OR ranked_ks[i] IS DISTINCT FROM best_k);
                -- Each attempt is a subtransaction: when the payee turns out to have no free
                -- amount, rolling it back releases the payee's lock before the next payee is
                -- waited for, so an allocation never waits for a payee while holding another.
                BEGIN
                    IF pass = 1 THEN
                        PERFORM 1 FROM payees WHERE id = ranked_ids[i]
                            FOR NO KEY UPDATE SKIP LOCKED;
                    ELSE
                        PERFORM 1 FROM payees WHERE id = ranked_ids[i] FOR NO KEY UPDATE;
                    END IF;
                    CONTINUE WHEN NOT FOUND;

                    -- The price itself, when it is still free (no smaller offset exists);
                    -- otherwise the payee's smallest free offset now.
                    IF ranked_ks[i] = 0 AND NOT EXISTS (
                           SELECT 1 FROM solopay_taken_amounts(ranked_ids[i], p_amount, p_amount)
                       ) THEN
                        k := 0;
                    ELSE
                        k := solopay_free_offset(ranked_ids[i], p_amount, p_max_steps, p_step);
                    END IF;
                    IF k IS NULL THEN
                        RAISE EXCEPTION USING ERRCODE = 'SPX01';
                    END IF;

                    -- The payee's fixed-amount code for the payable amount, if it has one.
                    amt := p_amount + k * p_step;
                    -- The order holds its amount from now, under the lock: a payment that
                    -- arrived before this moment (while this call waited) cannot pay it.
                    held_from := clock_timestamp();
                    INSERT INTO orders (id, merchant_id, merchant_order_id, request_fingerprint,
                                        channel, amount, payable_amount, payee_id, qr_code,
                                        qr_fixed_amount, subject, notify_url, return_url,
                                        metadata, protocol, compat, created_at, expires_at,
                                        reserved_until)
                    SELECT p_order_id, p_merchant_id, p_merchant_order_id, p_request_fingerprint,
                           p_channel, p_amount, amt, p.id, coalesce(fc.qr_code, p.qr_code),
                           fc.qr_code IS NOT NULL, p_subject, p_notify_url, p_return_url,
                           p_metadata, p_protocol, p_compat, held_from,
                           held_from + make_interval(secs => p_expires_in),
                           held_from + make_interval(secs => p_expires_in + p_grace)
                      FROM payees p
                      LEFT JOIN payee_fixed_codes fc ON fc.payee_id = p.id AND fc.amount = amt
                     WHERE p.id = ranked_ids[i]
                    ON CONFLICT (merchant_id, merchant_order_id) DO NOTHING
                    RETURNING * INTO created;

                    IF NOT FOUND THEN
                        -- The same merchant_order_id, created by a concurrent request since
                        -- the check above (it has committed: ON CONFLICT waited for it).
                        RETURN QUERY SELECT * FROM orders o
                                      WHERE o.merchant_id = p_merchant_id
                                        AND o.merchant_order_id = p_merchant_order_id;
                        IF NOT FOUND THEN
                            RAISE EXCEPTION USING ERRCODE = 'SP003',
                                MESSAGE = format('solopay: the conflicting order %s of %s is not visible',
                                                 p_merchant_order_id, p_merchant_id);
                        END IF;
                        RETURN;
                    END IF;

                    UPDATE payees SET last_used_at = now() WHERE id = ranked_ids[i];
                    RETURN NEXT created;
                    RETURN;
                EXCEPTION WHEN SQLSTATE 'SPX01' THEN
                    NULL;  -- this payee is full right now; its lock is released, try the next
                END;
            END LOOP;
        END LOOP;
    END LOOP;

    RAISE EXCEPTION USING ERRCODE = 'SP002', MESSAGE = 'solopay: amounts exhausted',
        CONSTRAINT = 'solopay_amounts_exhausted';
END;
$$;
