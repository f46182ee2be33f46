//! The daily summary's counts: what is counted lives once, in the view `summary_facts`; the
//! counts of past quarters of an hour are kept in `summary_buckets` by the sweep
//! (`solopay_summary_settle`, with why they stay right, in the migration
//! `2026-12-07-000120_summary_buckets`), and whole days per time zone in `summary_days` as a
//! summary first reads them (`2026-12-07-000130_summary_days`). A summary adds up the kept days
//! and quarters of its range and counts the rest from the tables, in one snapshot.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::PgConnection;
use diesel::data_types::PgInterval;
use diesel::prelude::*;
use diesel::sql_types::{Array, Date, Int8, Interval, Nullable, Numeric, Text, Timestamptz};
use rust_decimal::Decimal;

use super::prepared::KeepPrepared;

/// One metric of one day and channel: a count, and for `paid` the amount.
#[derive(Debug, QueryableByName)]
pub struct MetricRow {
    #[diesel(sql_type = Text)]
    pub metric: String,
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = Nullable<Text>)]
    pub channel: Option<String>,
    #[diesel(sql_type = Int8)]
    pub n: i64,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub total: Option<Decimal>,
}

#[derive(QueryableByName)]
struct Range {
    /// The first instant of each day of the range in the zone, and of the day after it.
    #[diesel(sql_type = Nullable<Array<Timestamptz>>)]
    bounds: Option<Vec<DateTime<Utc>>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    until: Option<DateTime<Utc>>,
    /// The first quarter of the range marked stale.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    first_stale: Option<DateTime<Utc>>,
}

/// A kept day's metric (`metric` `None` for a day with nothing to count), with the day's
/// bounds as they were kept.
#[derive(QueryableByName)]
struct KeptDay {
    #[diesel(sql_type = Timestamptz)]
    lo: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    hi: DateTime<Utc>,
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = Nullable<Text>)]
    metric: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    channel: Option<String>,
    #[diesel(sql_type = Nullable<Int8>)]
    n: Option<i64>,
    #[diesel(sql_type = Nullable<Numeric>)]
    total: Option<Decimal>,
}

/// The metrics of the days `from` to `to` (inclusive, in `timezone`, a name Postgres knows), per
/// day and channel; a day and channel may come in several rows (kept and counted), to be added
/// up. Kept quarters serve only where every day boundary of the range falls on a quarter of an
/// hour in that zone (every zone in use today; not some zones' historical offsets): otherwise
/// the whole range is counted from the tables. Where they serve, a whole day is read from its
/// kept sum (`summary_days`) if it has one, and kept after the answer is read if it has none.
///
/// The statements reading kept counts have fixed texts and are kept prepared, and the zone's day
/// boundaries are computed once: a summary of kept days is a few index reads, and planning one
/// statement that did it all, with the boundaries computed in each part, cost more than running
/// it.
pub fn day_metrics(
    conn: &mut PgConnection,
    from: NaiveDate,
    to: NaiveDate,
    timezone: &str,
) -> QueryResult<Vec<MetricRow>> {
    // One snapshot for every statement: the kept days and quarters and the rows counted beside
    // them are of the same moment, so nothing is counted twice or missed while the sweep keeps
    // more.
    let (rows, days_to_keep) = conn
        .build_transaction()
        .repeatable_read()
        .read_only()
        .run(|conn| read_range(conn, from, to, timezone))?;
    if days_to_keep {
        // For the next summary; this one is answered whatever comes of it.
        if let Err(error) = keep_days(conn, from, to, timezone) {
            tracing::warn!(%error, "the summary's days could not be kept");
        }
    }
    Ok(rows)
}

/// [`day_metrics`]' reading, in its snapshot; and whether a whole day read from its quarters is
/// not kept yet.
fn read_range(
    conn: &mut PgConnection,
    from: NaiveDate,
    to: NaiveDate,
    timezone: &str,
) -> QueryResult<(Vec<MetricRow>, bool)> {
    let range: Range = diesel::sql_query(
        "SELECT b.bounds, s.until, \
                (SELECT min(bucket) FROM summary_stale WHERE bucket >= b.bounds[1]) \
                    AS first_stale \
           FROM (SELECT array_agg(($1::date + i)::timestamp AT TIME ZONE $3 ORDER BY i) \
                            AS bounds \
                   FROM generate_series(0, $2::date - $1::date + 1) i) b \
                LEFT JOIN summary_settled s ON true",
    )
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .bind::<Text, _>(timezone)
    .prepared()
    .get_result(conn)?;
    // None when `to` is before `from`: no day.
    let bounds = range.bounds.unwrap_or_default();
    let (Some(&lo), Some(&hi)) = (bounds.first(), bounds.last()) else {
        return Ok((Vec::new(), false));
    };
    let on_quarters = bounds
        .iter()
        .all(|b| b.timestamp() % 900 == 0 && b.timestamp_subsec_nanos() == 0);
    let counted_from = match range.until {
        Some(until) if on_quarters => range
            .first_stale
            .map_or(until, |stale| stale.min(until))
            .clamp(lo, hi),
        _ => lo,
    };
    let (mut rows, kept) = if counted_from > lo {
        kept_days(conn, timezone, from, &bounds, counted_from)?
    } else {
        (Vec::new(), vec![false; bounds.len().saturating_sub(1)])
    };
    let (gaps, days_to_keep) = not_kept(&bounds, &kept, counted_from);
    for (lo, hi) in gaps {
        rows.extend(
            diesel::sql_query(
                "SELECT metric, (bucket AT TIME ZONE $3)::date AS day, channel, \
                        sum(n)::int8 AS n, sum(total) AS total \
                   FROM summary_buckets WHERE bucket >= $1 AND bucket < $2 \
                  GROUP BY 1, 2, 3",
            )
            .bind::<Timestamptz, _>(lo)
            .bind::<Timestamptz, _>(hi)
            .bind::<Text, _>(timezone)
            .prepared()
            .load::<MetricRow>(conn)?,
        );
    }
    if hi > counted_from {
        rows.extend(
            diesel::sql_query(
                "SELECT metric, (at AT TIME ZONE $3)::date AS day, channel, \
                        count(*) AS n, sum(amount) AS total \
                   FROM summary_facts WHERE at >= $1 AND at < $2 GROUP BY 1, 2, 3",
            )
            .bind::<Timestamptz, _>(counted_from)
            .bind::<Timestamptz, _>(hi)
            .bind::<Text, _>(timezone)
            // Planned for its range each time (the last minutes, or a whole year where the
            // kept quarters cannot serve): a generic plan would be the same for both.
            .load::<MetricRow>(conn)?,
        );
    }
    Ok((rows, days_to_keep))
}

/// The kept days of a range whose day boundaries are `bounds` (the first day `from`) that end
/// before `counted_from`, and whose bounds are still the zone's (a newer time zone database may
/// have moved them): their metrics, and which days (by index in `bounds`) they are.
fn kept_days(
    conn: &mut PgConnection,
    timezone: &str,
    from: NaiveDate,
    bounds: &[DateTime<Utc>],
    counted_from: DateTime<Utc>,
) -> QueryResult<(Vec<MetricRow>, Vec<bool>)> {
    let mut kept = vec![false; bounds.len().saturating_sub(1)];
    let mut rows = Vec::new();
    let Some(&lo) = bounds.first() else {
        return Ok((rows, kept));
    };
    let days: Vec<KeptDay> = diesel::sql_query(
        "SELECT d.lo, d.hi, d.day, c.metric, c.channel, c.n, c.total \
           FROM summary_days d \
                LEFT JOIN LATERAL jsonb_to_recordset(d.counts) \
                     AS c(metric text, channel text, n int8, total numeric) ON true \
          WHERE d.zone = $1 AND d.lo >= $2 AND d.lo < $3",
    )
    .bind::<Text, _>(timezone)
    .bind::<Timestamptz, _>(lo)
    .bind::<Timestamptz, _>(counted_from)
    .prepared()
    .load(conn)?;
    for day in days {
        // The last day that starts there: a day a zone skipped starts where the next one does.
        let Some(i) = bounds
            .partition_point(|bound| *bound <= day.lo)
            .checked_sub(1)
            .filter(|i| bounds.get(*i) == Some(&day.lo))
        else {
            continue;
        };
        let is_that_day = u64::try_from(i)
            .ok()
            .and_then(|i| from.checked_add_days(chrono::Days::new(i)))
            == Some(day.day);
        if bounds.get(i + 1) != Some(&day.hi) || day.hi > counted_from || !is_that_day {
            continue;
        }
        if let Some(is_kept) = kept.get_mut(i) {
            *is_kept = true;
        }
        if let Some(metric) = day.metric {
            rows.push(MetricRow {
                metric,
                day: day.day,
                channel: day.channel,
                n: day.n.unwrap_or_default(),
                total: day.total,
            });
        }
    }
    Ok((rows, kept))
}

/// From an instant to another, the second excluded.
type Stretch = (DateTime<Utc>, DateTime<Utc>);

/// The stretches before `counted_from` that no kept day covers (their quarters are read), and
/// whether a whole day is among them (to be kept for the next summary).
fn not_kept(
    bounds: &[DateTime<Utc>],
    kept: &[bool],
    counted_from: DateTime<Utc>,
) -> (Vec<Stretch>, bool) {
    let mut gaps: Vec<Stretch> = Vec::new();
    let mut days_to_keep = false;
    for (day, is_kept) in bounds.windows(2).zip(kept) {
        let &[day_lo, day_hi] = day else {
            continue;
        };
        // A day the zone skipped has no quarter.
        if *is_kept || day_lo >= counted_from || day_lo >= day_hi {
            continue;
        }
        days_to_keep |= day_hi <= counted_from;
        let gap_hi = day_hi.min(counted_from);
        match gaps.last_mut() {
            Some(last) if last.1 == day_lo => last.1 = gap_hi,
            _ => gaps.push((day_lo, gap_hi)),
        }
    }
    (gaps, days_to_keep)
}

/// Keeps the sums of the days `from` to `to` in `timezone` whose quarters are all kept, in a
/// transaction of its own (`solopay_summary_keep_days`; nothing when a pass of the sweep's
/// keeping holds the lock).
fn keep_days(
    conn: &mut PgConnection,
    from: NaiveDate,
    to: NaiveDate,
    timezone: &str,
) -> QueryResult<()> {
    conn.build_transaction().read_committed().run(|conn| {
        diesel::sql_query("SELECT solopay_summary_keep_days($1, $2, $3)")
            .bind::<Text, _>(timezone)
            .bind::<Date, _>(from)
            .bind::<Date, _>(to)
            .execute(conn)
            .map(drop)
    })
}

fn interval(d: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[derive(QueryableByName)]
struct Settled {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    until: Option<DateTime<Utc>>,
}

/// Keeps the counts of the quarters due (those marked stale, then the next ones that ended
/// before the horizon, `margin` before now at the latest; at most `span` from the earliest), in
/// a transaction of its own. Returns how far quarters are kept, or `None` when another pass was
/// at it or a session is hidden from this role.
pub fn settle(
    conn: &mut PgConnection,
    span: Duration,
    margin: Duration,
) -> QueryResult<Option<DateTime<Utc>>> {
    let pass = |conn: &mut PgConnection| -> QueryResult<Option<DateTime<Utc>>> {
        let settled: Settled = diesel::sql_query("SELECT solopay_summary_settle($1, $2) AS until")
            .bind::<Interval, _>(interval(span))
            .bind::<Interval, _>(interval(margin))
            .get_result(conn)?;
        Ok(settled.until)
    };
    if super::in_transaction(conn) {
        // The caller's (the benchmark's sweep): the pass keeps nothing outside READ COMMITTED.
        return pass(conn);
    }
    // Whatever the connection's default: each statement of the pass must see what committed
    // before it started.
    conn.build_transaction().read_committed().run(pass)
}

#[derive(QueryableByName)]
struct Behind {
    #[diesel(sql_type = Int8)]
    seconds: i64,
}

/// How long ago, by the database clock, the last quarter whose counts are kept ended (a quarter
/// and the sweep's margin at most while the sweep keeps them).
pub fn kept_behind_secs(conn: &mut PgConnection) -> QueryResult<i64> {
    let behind: Option<Behind> = diesel::sql_query(
        "SELECT extract(epoch FROM now() - until)::int8 AS seconds FROM summary_settled",
    )
    .prepared()
    .get_result(conn)
    .optional()?;
    Ok(behind.map_or(0, |b| b.seconds))
}

#[derive(QueryableByName)]
struct HorizonBehind {
    #[diesel(sql_type = Nullable<Int8>)]
    seconds: Option<i64>,
}

/// How long ago the sweep's horizon is (`solopay_summary_horizon`, with `margin`): `None` when
/// it cannot be told (a session hidden from this role, or not reporting its activity, or a
/// prepared transaction).
pub fn horizon_behind_secs(conn: &mut PgConnection, margin: Duration) -> QueryResult<Option<i64>> {
    let behind: HorizonBehind = diesel::sql_query(
        "SELECT extract(epoch FROM now() - solopay_summary_horizon($1))::int8 AS seconds",
    )
    .bind::<Interval, _>(interval(margin))
    .get_result(conn)?;
    Ok(behind.seconds)
}

/// Forgets the kept counts and keeps them again from the first thing counted: for a history
/// written in bulk with the triggers off (the benchmark's).
pub fn restart(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT solopay_summary_restart()").execute(conn)?;
    Ok(())
}
