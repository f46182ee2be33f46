-- Back to solopay_allocate_order (2026-11-26-000008_allocation_ranking) and the
-- (payee_id, reserved_until) index.
DROP FUNCTION solopay_create_order(text, text, text, bytea, text, numeric, integer, text, text,
                                   text, jsonb, integer, integer, numeric, integer, text, jsonb);

ALTER TABLE orders
    DROP CONSTRAINT orders_payable_amount_reserved_once,
    ADD CONSTRAINT orders_payable_amount_reserved_once EXCLUDE USING gist (
        payee_id WITH =,
        payable_amount WITH =,
        tstzrange(created_at, reserved_until) WITH &&
    );
CREATE INDEX orders_payee_reserved_idx ON orders (payee_id, reserved_until) INCLUDE (payable_amount);
DROP INDEX orders_payee_amount_idx;

-- As in 2026-11-25-000006_allocation_speed.
CREATE OR REPLACE FUNCTION solopay_free_offset(p_payee_id text, p_amount numeric,
                                               p_max_steps integer, p_step numeric)
RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    -- Offsets below 0.01 are not payable (stepping down from a small amount).
    max_k  integer := CASE WHEN p_step < 0
                           THEN least(p_max_steps, floor((p_amount - 0.01) / -p_step)::integer)
                           ELSE p_max_steps END;
    gap    integer;
BEGIN
    IF max_k < 0 THEN
        RETURN NULL;
    END IF;
    -- Two reservations of one amount may both be visible (one ended before the other began),
    -- hence DISTINCT.
    SELECT coalesce(min(t.position) FILTER (WHERE t.k <> t.position), count(*))
      INTO gap
      FROM (SELECT d.k, (row_number() OVER (ORDER BY d.k) - 1)::integer AS position
              FROM (SELECT DISTINCT ((o.payable_amount - p_amount) / p_step)::integer AS k
                      FROM orders o
                     WHERE o.payee_id = p_payee_id
                       AND o.reserved_until > now()
                       AND o.payable_amount BETWEEN least(p_amount, p_amount + max_k * p_step)
                                                AND greatest(p_amount, p_amount + max_k * p_step)
                       AND mod(o.payable_amount - p_amount, p_step) = 0) d) t;
    RETURN CASE WHEN gap <= max_k THEN gap END;
END;
$$;

-- As in 2026-11-26-000008_allocation_ranking (up.sql left it in place; restated for clarity).
CREATE OR REPLACE FUNCTION solopay_allocate_order(
    p_order_id text, p_merchant_id text, p_merchant_order_id text, p_request_fingerprint bytea,
    p_channel text, p_amount numeric, p_expires_in integer, p_subject text, p_notify_url text,
    p_return_url text, p_metadata jsonb, p_grace integer, p_max_steps integer, p_step numeric,
    p_offline_after integer, p_protocol text, p_compat jsonb)
RETURNS TABLE (outcome text, order_id text)
LANGUAGE plpgsql
AS $$
DECLARE
    ranked_ids  text[];
    ranked_ks   integer[];
    best_k      integer;
    pass        integer;
    i           integer;
    k           integer;
    amt         numeric(12, 2);
    fixed_code  text;
    created_id  text;
    max_k       integer;
    lo          numeric;
    hi          numeric;
BEGIN
    -- Offsets below 0.01 are not payable (stepping down from a small amount).
    max_k := CASE WHEN p_step < 0
                  THEN least(p_max_steps, floor((p_amount - 0.01) / -p_step)::integer)
                  ELSE p_max_steps END;
    lo := least(p_amount, p_amount + max_k * p_step);
    hi := greatest(p_amount, p_amount + max_k * p_step);

    -- The free offset of every candidate in one statement: per payee, the first offset where
    -- its reserved offsets, sorted, stop counting 0, 1, 2, … (as solopay_free_offset does for
    -- one payee).
    WITH candidates AS (
        SELECT p.id, p.last_used_at
          FROM payees p
          JOIN devices d ON d.id = p.device_id
         WHERE p.channel = p_channel
           AND p.enabled
           AND d.enabled
           AND d.last_seen_at > now() - make_interval(secs => p_offline_after)
    ), taken AS (
        -- Two reservations of one amount may both be visible, hence DISTINCT.
        SELECT DISTINCT o.payee_id, ((o.payable_amount - p_amount) / p_step)::integer AS step
          FROM orders o
         WHERE o.payee_id IN (SELECT cd.id FROM candidates cd)
           AND o.reserved_until > now()
           AND o.payable_amount BETWEEN lo AND hi
           AND mod(o.payable_amount - p_amount, p_step) = 0
    ), gaps AS (
        SELECT s.payee_id,
               coalesce(min(s.pos) FILTER (WHERE s.step <> s.pos), count(*))::integer AS gap
          FROM (SELECT t.payee_id, t.step,
                       (row_number() OVER (PARTITION BY t.payee_id ORDER BY t.step) - 1)::integer
                           AS pos
                  FROM taken t) s
         GROUP BY s.payee_id
    ), offsets AS (
        SELECT cd.id, cd.last_used_at,
               CASE WHEN max_k >= 0 AND coalesce(g.gap, 0) <= max_k THEN coalesce(g.gap, 0) END
                   AS free_k
          FROM candidates cd
          LEFT JOIN gaps g ON g.payee_id = cd.id
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
        RETURN QUERY SELECT 'no_payee'::text, NULL::text;
        RETURN;
    END IF;

    FOR pass IN 1..2 LOOP
        FOR i IN 1..array_length(ranked_ids, 1) LOOP
            EXIT WHEN pass = 1 AND (best_k IS NULL OR ranked_ks[i] IS DISTINCT FROM best_k);
            -- Each attempt is a subtransaction: when the payee turns out to have no free amount,
            -- rolling it back releases the payee's lock before the next payee is waited for, so
            -- an allocation never waits for a payee while holding another.
            BEGIN
                IF pass = 1 THEN
                    PERFORM 1 FROM payees WHERE id = ranked_ids[i] FOR NO KEY UPDATE SKIP LOCKED;
                ELSE
                    PERFORM 1 FROM payees WHERE id = ranked_ids[i] FOR NO KEY UPDATE;
                END IF;
                CONTINUE WHEN NOT FOUND;

                k := solopay_free_offset(ranked_ids[i], p_amount, p_max_steps, p_step);
                IF k IS NULL THEN
                    RAISE EXCEPTION USING ERRCODE = 'SPX01';
                END IF;

                amt := p_amount + k * p_step;
                SELECT fc.qr_code INTO fixed_code
                  FROM payee_fixed_codes fc
                 WHERE fc.payee_id = ranked_ids[i] AND fc.amount = amt;

                INSERT INTO orders (id, merchant_id, merchant_order_id, request_fingerprint,
                                    channel, amount, payable_amount, payee_id, qr_code,
                                    qr_fixed_amount, subject, notify_url, return_url, metadata,
                                    protocol, compat, created_at, expires_at, reserved_until)
                SELECT p_order_id, p_merchant_id, p_merchant_order_id, p_request_fingerprint,
                       p_channel, p_amount, amt, p.id, coalesce(fixed_code, p.qr_code),
                       fixed_code IS NOT NULL, p_subject, p_notify_url, p_return_url, p_metadata,
                       p_protocol, p_compat, now(), now() + make_interval(secs => p_expires_in),
                       now() + make_interval(secs => p_expires_in + p_grace)
                  FROM payees p
                 WHERE p.id = ranked_ids[i]
                ON CONFLICT (merchant_id, merchant_order_id) DO NOTHING
                RETURNING id INTO created_id;

                IF created_id IS NULL THEN
                    RETURN QUERY SELECT 'duplicate'::text, NULL::text;
                    RETURN;
                END IF;

                UPDATE payees SET last_used_at = now() WHERE id = ranked_ids[i];
                RETURN QUERY SELECT 'created'::text, created_id;
                RETURN;
            EXCEPTION WHEN SQLSTATE 'SPX01' THEN
                NULL;  -- this payee is full right now; its lock is released, try the next one
            END;
        END LOOP;
    END LOOP;

    RETURN QUERY SELECT 'exhausted'::text, NULL::text;
END;
$$;
