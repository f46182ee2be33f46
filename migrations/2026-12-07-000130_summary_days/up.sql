-- Found by the history benchmark (issue 19): with the quarters kept, a month's summary still read
-- the month's ~23,000 kept quarter rows at 10 million orders (18 ms, against 0.8 ms on an empty
-- database).
--
-- So whole days are kept too, per time zone, as the sum of their kept quarters: the summary of a
-- day in a zone adds up the same quarters whatever else happens, so a day's sum stays right as
-- long as its quarters do. It is kept the first time a summary asks for it
-- (`solopay_summary_keep_days`) and forgotten whenever one of its quarters is written again (the
-- triggers on `summary_buckets` below, in the same transaction as the quarter). A summary uses a
-- kept day only where it would use all of that day's kept quarters: before `until` and before
-- the first quarter marked stale (src/db/summary.rs).
--
-- Why a kept day is the sum of its quarters in every snapshot: quarters are written only by
-- `solopay_summary_settle` and `solopay_summary_restart`, under the advisory lock (6, 0), in the
-- same transaction as the trigger that forgets the days they touch; a day is kept only under the
-- same lock, by a statement that starts after the lock is taken, so it sums the quarters as the
-- last pass committed them.
CREATE TABLE summary_days (
    zone text NOT NULL,
    -- The day's first instant in `zone`, and the next day's: the day's quarters are [lo, hi).
    lo timestamptz NOT NULL,
    hi timestamptz NOT NULL,
    day date NOT NULL,
    -- [{metric, channel, n, total}] summed over the day's quarters.
    counts jsonb NOT NULL,
    PRIMARY KEY (zone, lo)
);

-- Forgetting the days of changed quarters reads the days that end after them.
CREATE INDEX summary_days_hi_idx ON summary_days (hi);

CREATE FUNCTION solopay_summary_forget_days() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM summary_days d
     USING (SELECT min(bucket) AS first, max(bucket) AS last FROM changed) c
     WHERE d.hi > c.first AND d.lo <= c.last;
    RETURN NULL;
END
$$;

CREATE TRIGGER summary_days_of_inserted AFTER INSERT ON summary_buckets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION solopay_summary_forget_days();
CREATE TRIGGER summary_days_of_deleted AFTER DELETE ON summary_buckets
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION solopay_summary_forget_days();
CREATE TRIGGER summary_days_of_updated_before AFTER UPDATE ON summary_buckets
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION solopay_summary_forget_days();
CREATE TRIGGER summary_days_of_updated_after AFTER UPDATE ON summary_buckets
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION solopay_summary_forget_days();

CREATE FUNCTION solopay_summary_forget_all_days() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM summary_days;
    RETURN NULL;
END
$$;

CREATE TRIGGER summary_days_of_truncated AFTER TRUNCATE ON summary_buckets
    FOR EACH STATEMENT EXECUTE FUNCTION solopay_summary_forget_all_days();

-- Even in a session with `session_replication_role = replica` (a bulk load's, which must call
-- `solopay_summary_restart()` after it, maybe in the same session): the kept days follow the
-- quarters whatever writes them.
ALTER TABLE summary_buckets ENABLE ALWAYS TRIGGER summary_days_of_inserted;
ALTER TABLE summary_buckets ENABLE ALWAYS TRIGGER summary_days_of_deleted;
ALTER TABLE summary_buckets ENABLE ALWAYS TRIGGER summary_days_of_updated_before;
ALTER TABLE summary_buckets ENABLE ALWAYS TRIGGER summary_days_of_updated_after;
ALTER TABLE summary_buckets ENABLE ALWAYS TRIGGER summary_days_of_truncated;

-- Keeps the days `first_day` to `last_day` of `in_zone` whose quarters are all kept and none
-- marked stale, and whose boundaries fall on quarters (not the days a zone skipped: Samoa's
-- 2011-12-30 starts where the next day does). Returns how many it kept, or NULL
-- when a pass of `solopay_summary_settle` holds the lock (the days are kept another time) or the
-- transaction is not READ COMMITTED.
CREATE FUNCTION solopay_summary_keep_days(in_zone text, first_day date, last_day date)
    RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    kept integer;
BEGIN
    -- The statement below must start after the lock is taken, and see what committed before.
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock(6, 0) THEN
        RETURN NULL;
    END IF;
    INSERT INTO summary_days (zone, lo, hi, day, counts)
    SELECT in_zone, d.lo, d.hi, d.day,
           coalesce((SELECT jsonb_agg(jsonb_build_object('metric', x.metric,
                                                         'channel', x.channel,
                                                         'n', x.n,
                                                         'total', x.total)
                                      ORDER BY x.metric, x.channel)
                       FROM (SELECT b.metric, b.channel, sum(b.n) AS n, sum(b.total) AS total
                               FROM summary_buckets b
                              WHERE b.bucket >= d.lo AND b.bucket < d.hi
                              GROUP BY 1, 2) x),
                    '[]'::jsonb)
      FROM (SELECT first_day + i AS day,
                   (first_day + i)::timestamp AT TIME ZONE in_zone AS lo,
                   (first_day + i + 1)::timestamp AT TIME ZONE in_zone AS hi
              FROM generate_series(0, last_day - first_day) i) d,
           summary_settled s
     WHERE d.lo < d.hi
       AND d.hi <= s.until
       AND extract(epoch FROM d.lo) % 900 = 0
       AND extract(epoch FROM d.hi) % 900 = 0
       AND NOT EXISTS (SELECT 1 FROM summary_stale m WHERE m.bucket >= d.lo AND m.bucket < d.hi)
       AND NOT EXISTS (SELECT 1 FROM summary_days k
                        WHERE k.zone = in_zone AND k.lo = d.lo AND k.hi = d.hi
                          AND k.day = d.day)
    -- A day kept before a newer time zone database moved it is kept again.
    ON CONFLICT (zone, lo) DO UPDATE
        SET hi = excluded.hi, day = excluded.day, counts = excluded.counts;
    GET DIAGNOSTICS kept = ROW_COUNT;
    -- A restart whose snapshot is older than this transaction (a TRUNCATE in REPEATABLE READ,
    -- waiting for the lock) would not see these days to forget them: it writes this row too, so
    -- it fails to serialize instead.
    IF kept > 0 THEN
        UPDATE summary_settled SET until = until;
    END IF;
    RETURN kept;
END
$$;
