CREATE INDEX orders_merchant_created_idx ON orders (merchant_id, created_at DESC);

CREATE OR REPLACE FUNCTION solopay_free_offset(p_payee_id text, p_amount numeric,
                                               p_max_steps integer, p_step numeric)
RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    taken  numeric[];
    k      integer;
BEGIN
    SELECT coalesce(array_agg(o.payable_amount), '{}')
      INTO taken
      FROM orders o
     WHERE o.payee_id = p_payee_id
       AND o.reserved_until > now()
       AND o.payable_amount BETWEEN least(p_amount, p_amount + p_max_steps * p_step)
                                AND greatest(p_amount, p_amount + p_max_steps * p_step);
    FOR k IN 0..p_max_steps LOOP
        EXIT WHEN p_amount + k * p_step < 0.01;
        IF NOT (p_amount + k * p_step = ANY (taken)) THEN
            RETURN k;
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
