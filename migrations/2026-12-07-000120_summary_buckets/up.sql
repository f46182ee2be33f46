-- Found by the history benchmark (issue 19): a month's `GET /admin/summary` read every order and
-- payment of the month, 1.8 s at 10 million orders over a year (0.8 ms on an empty database).
--
-- What the summary counts lives once, here, as `summary_facts`: one row per thing counted, with
-- the time that puts it on a day. The summary counts them per day in the caller's time zone, so
-- the totals are kept per quarter of an hour (every day boundary of every zone in use today falls
-- on one), per metric and channel, in `summary_buckets`. The quarters before
-- `summary_settled.until` are stored; the summary adds them up by day and counts the rest (the
-- last minutes, and any quarter marked in `summary_stale`) from the tables, as before, in the
-- same snapshot (src/db/summary.rs).
--
-- Why a stored quarter stays right. `solopay_summary_settle` (called by the sweep, in READ
-- COMMITTED) stores quarters only up to its horizon (`solopay_summary_horizon`): a minute ago,
-- the start of the oldest transaction open on this database, and the expiry of the oldest
-- pending order. The times the service writes that are counted are its transaction's now() or
-- later (an order's creation, its payment, a payment's arrival), so whatever it is writing lands
-- after the horizon, and a pending order can expire or be paid late only in a quarter not yet
-- stored. Every other change to a counted value of a stored quarter (an operator paying a closed
-- order, a payment assigned by hand, an order made pending again, a row written with a past time,
-- any DELETE or TRUNCATE) goes through the triggers below, which mark the quarters it touches
-- stale in the same transaction; a later pass counts them again.
CREATE VIEW summary_facts AS
    SELECT 'created'::text AS metric, created_at AS at, channel, NULL::numeric AS amount
      FROM orders
    UNION ALL
    SELECT 'paid', paid_at, channel, payable_amount
      FROM orders WHERE paid_at IS NOT NULL
    UNION ALL
    -- Orders whose expiry fell in the range, paid late or not (`orders_expired_at_idx`).
    SELECT 'expired', expires_at, channel, NULL
      FROM orders WHERE status = 'expired' OR paid_late
    UNION ALL
    SELECT 'payments_' || result, created_at, channel, NULL
      FROM payments WHERE result <> 'matched';

CREATE FUNCTION solopay_summary_bucket(at timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_bin('15 minutes', at, timestamptz '2000-01-01 00:00:00+00');

CREATE TABLE summary_settled (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    -- Quarters before this are stored (unless marked stale); always a quarter's start.
    until timestamptz NOT NULL
);

CREATE TABLE summary_buckets (
    -- A key of its own: a table replicated by a publication needs one, and (bucket, metric,
    -- channel) cannot be it (payments of no channel).
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket timestamptz NOT NULL,
    metric text NOT NULL,
    channel text,
    n bigint NOT NULL,
    total numeric,
    UNIQUE NULLS NOT DISTINCT (bucket, metric, channel)
);

CREATE TABLE summary_stale (
    bucket timestamptz PRIMARY KEY
);

-- Marks the quarters of `times` stale. The marker's row is locked even when it is there already
-- (DO UPDATE ... WHERE false locks without writing a new version): a pass that clears markers
-- skips it until this transaction ends, so the quarter stays stale until a pass that counts it
-- can see this change. In quarter order, so two markers' transactions lock them alike.
CREATE FUNCTION solopay_summary_mark(times timestamptz[]) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO summary_stale (bucket)
    SELECT DISTINCT solopay_summary_bucket(t) FROM unnest(times) t WHERE t IS NOT NULL
     ORDER BY 1
    ON CONFLICT (bucket) DO UPDATE SET bucket = excluded.bucket WHERE false
$$;

CREATE FUNCTION solopay_summary_order_touched() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        PERFORM solopay_summary_mark(ARRAY[NEW.created_at, NEW.paid_at, NEW.expires_at]);
    END IF;
    IF TG_OP <> 'INSERT' THEN
        PERFORM solopay_summary_mark(ARRAY[OLD.created_at, OLD.paid_at, OLD.expires_at]);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION solopay_summary_payment_touched() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        PERFORM solopay_summary_mark(ARRAY[NEW.created_at]);
    END IF;
    IF TG_OP <> 'INSERT' THEN
        PERFORM solopay_summary_mark(ARRAY[OLD.created_at]);
    END IF;
    RETURN NULL;
END
$$;

-- The service's own writes seldom fire these: an order is made at its transaction's now() or
-- later, paid at now(), and leaves `pending` (expired, paid, closed) only in a quarter not yet
-- stored. What fires them is a counted value changed on a row that was not pending (the operator
-- paying a closed order after its expiry, a payment assigned or its result changed), a row
-- made pending again, and anything written with a past time. An expired order paid late stays
-- counted as expired, and its payment is at now(): no trigger. (`paid_late` is only ever true
-- on a paid order: a CHECK of `orders`.)
CREATE TRIGGER summary_order_inserted AFTER INSERT ON orders
    FOR EACH ROW
    WHEN (NEW.created_at < now() OR NEW.paid_at < now() OR NEW.expires_at < now())
    EXECUTE FUNCTION solopay_summary_order_touched();

CREATE TRIGGER summary_order_changed AFTER UPDATE ON orders
    FOR EACH ROW
    WHEN (OLD.created_at IS DISTINCT FROM NEW.created_at
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.channel IS DISTINCT FROM NEW.channel
          OR OLD.payable_amount IS DISTINCT FROM NEW.payable_amount
          OR (OLD.paid_at IS DISTINCT FROM NEW.paid_at
              AND (OLD.paid_at IS NOT NULL OR NEW.paid_at < now()))
          OR (OLD.status <> 'pending'
              AND ((OLD.status = 'expired' OR OLD.paid_late)
                       IS DISTINCT FROM (NEW.status = 'expired' OR NEW.paid_late)
                   OR NEW.status = 'pending')))
    EXECUTE FUNCTION solopay_summary_order_touched();

CREATE TRIGGER summary_order_deleted AFTER DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION solopay_summary_order_touched();

CREATE TRIGGER summary_payment_inserted AFTER INSERT ON payments
    FOR EACH ROW WHEN (NEW.created_at < now())
    EXECUTE FUNCTION solopay_summary_payment_touched();

CREATE TRIGGER summary_payment_changed AFTER UPDATE ON payments
    FOR EACH ROW
    WHEN (OLD.created_at IS DISTINCT FROM NEW.created_at
          OR OLD.channel IS DISTINCT FROM NEW.channel
          OR OLD.result IS DISTINCT FROM NEW.result)
    EXECUTE FUNCTION solopay_summary_payment_touched();

CREATE TRIGGER summary_payment_deleted AFTER DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION solopay_summary_payment_touched();

-- A TRUNCATE fires no row trigger: what is stored is forgotten (below).
CREATE FUNCTION solopay_summary_truncated() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM solopay_summary_restart();
    RETURN NULL;
END
$$;

-- Forgets what is stored and starts again from the quarter of the first thing counted (or the
-- current one). For this migration and for a history written in bulk with the triggers off.
CREATE FUNCTION solopay_summary_restart() RETURNS void
    LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(6, 0);
    DELETE FROM summary_buckets;
    DELETE FROM summary_stale;
    INSERT INTO summary_settled (until)
    SELECT solopay_summary_bucket(least((SELECT min(created_at) FROM orders),
                                        (SELECT min(created_at) FROM payments),
                                        now()))
    ON CONFLICT (only_row) DO UPDATE SET until = excluded.until;
$$;

-- The time before which nothing the service writes can land in a quarter any more, now: `margin`
-- before now, the start of the oldest transaction running on this database (autovacuum's
-- excepted: it writes no counted value), the expiry of the oldest pending order. NULL when that
-- cannot be told: a session on this database is hidden from this role (grant it
-- pg_read_all_stats), or does not report its activity (`track_activities` off), or a prepared
-- transaction waits.
CREATE FUNCTION solopay_summary_horizon(margin interval) RETURNS timestamptz
    LANGUAGE sql AS $$
    -- A session this role may not see shows no backend type; one that does not report its
    -- activity shows the state `disabled`.
    SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_stat_activity
                              WHERE datname = current_database()
                                AND (backend_type IS NULL OR state = 'disabled'))
                  OR EXISTS (SELECT 1 FROM pg_prepared_xacts
                              WHERE database = current_database())
                THEN NULL
                ELSE least(now() - margin,
                           (SELECT min(xact_start) FROM pg_stat_activity
                             WHERE datname = current_database()
                               AND backend_type <> 'autovacuum worker'),
                           (SELECT min(expires_at) FROM orders WHERE status = 'pending'))
           END
$$;

-- One pass: counts again the quarters marked stale and keeps the next ones that ended before the
-- horizon (at most `span` of them from the earliest), then returns how far quarters are kept.
-- NULL when another pass holds the lock (one at a time, whatever the instances) or the horizon
-- is unknown.
CREATE FUNCTION solopay_summary_settle(span interval, margin interval) RETURNS timestamptz
    LANGUAGE plpgsql AS $$
DECLARE
    settled timestamptz;
    first_stale timestamptz;
    horizon timestamptz;
    lo timestamptz;
    hi timestamptz;
BEGIN
    -- Each statement below must see what committed before it started.
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock(6, 0) THEN
        RETURN NULL;
    END IF;
    horizon := solopay_summary_horizon(margin);
    IF horizon IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT until INTO settled FROM summary_settled;
    SELECT min(bucket) INTO first_stale FROM summary_stale;
    lo := least(settled, first_stale);
    hi := least(solopay_summary_bucket(horizon), solopay_summary_bucket(lo + span));
    IF lo >= hi THEN
        RETURN settled;
    END IF;
    -- The markers first, in a statement of their own. A transaction that marked a quarter and
    -- has not committed holds its marker's row, or its marker is not visible yet: either way the
    -- marker stays (skipped, never waited for: the sweep does not stall behind an open
    -- transaction), and the quarter is counted from the tables until a later pass.
    DELETE FROM summary_stale
     WHERE bucket IN (SELECT bucket FROM summary_stale WHERE bucket >= lo AND bucket < hi
                         FOR UPDATE SKIP LOCKED);
    DELETE FROM summary_buckets WHERE bucket >= lo AND bucket < hi;
    INSERT INTO summary_buckets (bucket, metric, channel, n, total)
    SELECT solopay_summary_bucket(at), metric, channel, count(*), sum(amount)
      FROM summary_facts
     WHERE at >= lo AND at < hi
     GROUP BY 1, 2, 3;
    UPDATE summary_settled SET until = greatest(until, hi) RETURNING until INTO settled;
    RETURN settled;
END
$$;

CREATE TRIGGER summary_orders_truncated AFTER TRUNCATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION solopay_summary_truncated();
CREATE TRIGGER summary_payments_truncated AFTER TRUNCATE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION solopay_summary_truncated();

SELECT solopay_summary_restart();
