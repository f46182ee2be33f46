//! The daily summary's counts: what is counted lives once, in the view `summary_facts`; the
//! counts of past quarters of an hour are kept in `summary_buckets` by the sweep
//! (`solopay_summary_settle`, with why they stay right, in the migration
//! `2026-12-07-000120_summary_buckets`). A summary adds up the kept quarters of its range and
//! counts the rest from the tables, in one snapshot.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::PgConnection;
use diesel::data_types::PgInterval;
use diesel::prelude::*;
use diesel::sql_types::{Date, Int8, Interval, Nullable, Numeric, Text, Timestamptz};
use rust_decimal::Decimal;

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
struct Split {
    #[diesel(sql_type = Timestamptz)]
    lo: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    hi: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    counted_from: DateTime<Utc>,
}

/// The metrics of the days `from` to `to` (inclusive, in `timezone`, a name Postgres knows), per
/// day and channel; a day and channel may come in two rows (kept and counted), to be added up.
/// Kept quarters serve only where every day boundary of the range falls on a quarter of an hour
/// in that zone (every zone in use today; not some zones' historical offsets): otherwise the
/// whole range is counted from the tables.
pub fn day_metrics(
    conn: &mut PgConnection,
    from: NaiveDate,
    to: NaiveDate,
    timezone: &str,
) -> QueryResult<Vec<MetricRow>> {
    // One snapshot for both statements: the kept quarters and the rows counted beside them are
    // of the same moment, so nothing is counted twice or missed while the sweep keeps more.
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(|conn| {
            let split: Split = diesel::sql_query(
                "SELECT b.lo, b.hi, \
                        CASE WHEN (SELECT bool_and(extract(epoch FROM \
                                       (($1::date + i)::timestamp AT TIME ZONE $3)) % 900 = 0) \
                                     FROM generate_series(0, $2::date - $1::date + 1) i) \
                             THEN greatest(b.lo, least(b.hi, s.until, \
                                      coalesce((SELECT min(bucket) FROM summary_stale \
                                                 WHERE bucket >= b.lo), 'infinity'))) \
                             ELSE b.lo END AS counted_from \
                   FROM (SELECT $1::date::timestamp AT TIME ZONE $3 AS lo, \
                                ($2::date + 1)::timestamp AT TIME ZONE $3 AS hi) b, \
                        summary_settled s",
            )
            .bind::<Date, _>(from)
            .bind::<Date, _>(to)
            .bind::<Text, _>(timezone)
            .get_result(conn)?;
            diesel::sql_query(
                "SELECT metric, (bucket AT TIME ZONE $4)::date AS day, channel, \
                        sum(n)::int8 AS n, sum(total) AS total \
                   FROM summary_buckets WHERE bucket >= $1 AND bucket < $2 GROUP BY 1, 2, 3 \
                 UNION ALL \
                 SELECT metric, (at AT TIME ZONE $4)::date, channel, count(*), sum(amount) \
                   FROM summary_facts WHERE at >= $2 AND at < $3 GROUP BY 1, 2, 3",
            )
            .bind::<Timestamptz, _>(split.lo)
            .bind::<Timestamptz, _>(split.counted_from)
            .bind::<Timestamptz, _>(split.hi)
            .bind::<Text, _>(timezone)
            .load(conn)
        })
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
    let interval = |d: Duration| {
        PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    };
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

/// Forgets the kept counts and keeps them again from the first thing counted: for a history
/// written in bulk with the triggers off (the benchmark's).
pub fn restart(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT solopay_summary_restart()").execute(conn)?;
    Ok(())
}
