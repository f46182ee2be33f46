-- The ranking by one solopay_free_offset call per payee (2026-11-25-000005_compat).
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
BEGIN
    SELECT array_agg(c.id ORDER BY c.k NULLS LAST, c.fixed DESC, c.last_used_at NULLS FIRST, c.id),
           array_agg(c.k ORDER BY c.k NULLS LAST, c.fixed DESC, c.last_used_at NULLS FIRST, c.id),
           min(c.k)
      INTO ranked_ids, ranked_ks, best_k
      FROM (SELECT p.id, p.last_used_at, f.k,
                   EXISTS (SELECT 1 FROM payee_fixed_codes fc
                            WHERE fc.payee_id = p.id AND fc.amount = p_amount + f.k * p_step) AS fixed
              FROM payees p
              JOIN devices d ON d.id = p.device_id
             -- OFFSET 0 keeps the planner from inlining the call at every use of k.
             CROSS JOIN LATERAL (SELECT solopay_free_offset(p.id, p_amount, p_max_steps, p_step) AS k
                                 OFFSET 0) f
             WHERE p.channel = p_channel
               AND p.enabled
               AND d.enabled
               AND d.last_seen_at > now() - make_interval(secs => p_offline_after)) c;

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
