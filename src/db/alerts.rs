//! The `alert_channels`, `alerts` and `alert_deliveries` tables: how the owner is reached, what
//! each alert says, and its delivery on each channel, claimed by one instance at a time under a
//! lease like a merchant webhook.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int8, Interval, Nullable, Text, Timestamptz};

use super::interval;
use super::schema::{alert_channels, alert_deliveries, alerts};
use crate::domain::{AlertChannelKind, AlertKind, DeliveryStatus};

/// The channel that tells every instance's alert worker a delivery became due.
pub const ALERT_DUE_CHANNEL: &str = "solopay_alert_due";

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = alert_channels, check_for_backend(diesel::pg::Pg))]
pub struct Channel {
    pub id: String,
    pub kind: AlertChannelKind,
    pub name: String,
    /// The settings as stored: secrets sealed.
    pub config: serde_json::Value,
    pub kinds: Option<Vec<Option<String>>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = alert_channels)]
pub struct NewChannel<'a> {
    pub id: &'a str,
    pub kind: AlertChannelKind,
    pub name: &'a str,
    pub config: &'a serde_json::Value,
    pub kinds: Option<Vec<String>>,
    pub enabled: bool,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = alert_channels)]
pub struct ChannelChanges {
    pub name: Option<String>,
    pub config: Option<serde_json::Value>,
    /// `Some(None)` sends every kind again.
    pub kinds: Option<Option<Vec<String>>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = alerts, check_for_backend(diesel::pg::Pg))]
pub struct Alert {
    pub id: String,
    pub kind: AlertKind,
    pub subject: String,
    pub title: String,
    pub body: String,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub digest_id: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = alerts)]
pub struct NewAlert<'a> {
    pub id: &'a str,
    pub kind: AlertKind,
    pub subject: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub details: &'a serde_json::Value,
    pub digest_id: Option<&'a str>,
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Identifiable)]
#[diesel(table_name = alert_deliveries, check_for_backend(diesel::pg::Pg))]
pub struct Delivery {
    pub id: i64,
    pub alert_id: String,
    pub channel_id: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub leased_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub fn insert_channel(conn: &mut PgConnection, new: &NewChannel<'_>) -> QueryResult<Channel> {
    diesel::insert_into(alert_channels::table)
        .values(new)
        .returning(Channel::as_returning())
        .get_result(conn)
}

pub fn list_channels(conn: &mut PgConnection) -> QueryResult<Vec<Channel>> {
    alert_channels::table
        .order(alert_channels::created_at)
        .select(Channel::as_select())
        .load(conn)
}

pub fn find_channel(conn: &mut PgConnection, id: &str) -> QueryResult<Option<Channel>> {
    alert_channels::table
        .find(id)
        .select(Channel::as_select())
        .first(conn)
        .optional()
}

pub fn update_channel(
    conn: &mut PgConnection,
    id: &str,
    changes: &ChannelChanges,
) -> QueryResult<Option<Channel>> {
    if changes.name.is_none()
        && changes.config.is_none()
        && changes.kinds.is_none()
        && changes.enabled.is_none()
    {
        return find_channel(conn, id);
    }
    diesel::update(alert_channels::table.find(id))
        .set(changes)
        .returning(Channel::as_returning())
        .get_result(conn)
        .optional()
}

/// Writes an alert and its deliveries to every enabled channel that sends its kind, due after
/// `due_in` by the database clock (at once when `None`); part of the transaction of what caused
/// it.
pub fn insert(
    conn: &mut PgConnection,
    alert: &NewAlert<'_>,
    told_as: &[AlertKind],
    due_in: Option<Duration>,
) -> QueryResult<usize> {
    diesel::insert_into(alerts::table)
        .values(alert)
        .execute(conn)?;
    if alert.digest_id.is_some() {
        // Told in its digest, not on its own.
        return Ok(0);
    }
    let told_as: Vec<&str> = told_as.iter().map(AlertKind::as_str).collect();
    diesel::sql_query(
        "INSERT INTO alert_deliveries (alert_id, channel_id, next_attempt_at) \
         SELECT $1, c.id, now() + $3 FROM alert_channels c \
         WHERE c.enabled AND (c.kinds IS NULL OR c.kinds && $2)",
    )
    .bind::<Text, _>(alert.id)
    .bind::<Array<Text>, _>(told_as)
    .bind::<Interval, _>(interval(due_in.unwrap_or_default()))
    .execute(conn)
}

/// How many alerts of these kinds were raised within `within`, told on their own (not in a
/// digest).
pub fn count_recent(
    conn: &mut PgConnection,
    kinds: &[AlertKind],
    within: Duration,
) -> QueryResult<i64> {
    let kinds: Vec<&str> = kinds.iter().map(AlertKind::as_str).collect();
    alerts::table
        .filter(alerts::kind.eq_any(kinds))
        .filter(alerts::digest_id.is_null())
        .filter(sql::<Bool>("alerts.created_at > now() - ").bind::<Interval, _>(interval(within)))
        .count()
        .get_result(conn)
}

/// Whether an alert of `kind` about `subject` was raised within `within`.
pub fn raised_recently(
    conn: &mut PgConnection,
    kind: AlertKind,
    subject: &str,
    within: Duration,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        alerts::table
            .filter(alerts::kind.eq(kind))
            .filter(alerts::subject.eq(subject))
            .filter(
                sql::<Bool>("alerts.created_at > now() - ").bind::<Interval, _>(interval(within)),
            ),
    ))
    .get_result(conn)
}

/// The digest still gathering alerts, if there is one: none of its deliveries claimed and none
/// due by the clock (not the transaction's start, which may be long past). Its deliveries are
/// locked until the caller's transaction ends, so the alert worker cannot claim them, read the
/// members and send without the alert that is joining. Under an advisory lock, so that two alerts
/// raised at once join the same digest. A digest's deliveries are due `window` after it was
/// opened (`insert` with that delay, in its own transaction), so only digests opened within
/// `window` of now can still be gathering: only those are read, so that the read stays the
/// size of a window's alerts, not of the history.
pub fn gathering_digest(conn: &mut PgConnection, window: Duration) -> QueryResult<Option<String>> {
    diesel::sql_query(format!(
        "SELECT pg_advisory_xact_lock({DIGEST_LOCK_CLASS}, 0)"
    ))
    .execute(conn)?;
    let newest: Option<String> = alerts::table
        .filter(alerts::kind.eq(AlertKind::Digest))
        .filter(sql::<Bool>("alerts.created_at > now() - ").bind::<Interval, _>(interval(window)))
        .filter(sql::<Bool>(
            "EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = alerts.id \
             AND d.status = 'pending' AND d.attempts = 0 AND d.next_attempt_at > clock_timestamp())",
        ))
        .order(alerts::created_at.desc())
        .select(alerts::id)
        .first(conn)
        .optional()?;
    let Some(digest_id) = newest else {
        return Ok(None);
    };
    alert_deliveries::table
        .filter(alert_deliveries::alert_id.eq(&digest_id))
        .select(alert_deliveries::id)
        .for_no_key_update()
        .load::<i64>(conn)?;
    // A new statement sees what a worker that held a lock first committed.
    let still_gathering: bool = diesel::select(
        sql::<Bool>("NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = ")
            .bind::<Text, _>(&digest_id)
            .sql(
                " AND (d.status <> 'pending' OR d.attempts > 0 \
                 OR d.next_attempt_at <= clock_timestamp()))",
            ),
    )
    .get_result(conn)?;
    Ok(still_gathering.then_some(digest_id))
}

/// The class of the advisory lock under which digests are opened and joined.
const DIGEST_LOCK_CLASS: i32 = 4;

/// The alerts a digest tells.
pub fn digest_members(conn: &mut PgConnection, digest_id: &str) -> QueryResult<Vec<Alert>> {
    alerts::table
        .filter(alerts::digest_id.eq(digest_id))
        .order(alerts::created_at)
        .select(Alert::as_select())
        .load(conn)
}

/// Claims up to `limit` due deliveries for one attempt each, under a lease.
pub fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
    lease: Duration,
) -> QueryResult<Vec<Delivery>> {
    diesel::sql_query(
        "UPDATE alert_deliveries SET attempts = attempts + 1, leased_until = now() + $2 \
         WHERE id IN (SELECT id FROM alert_deliveries \
                      WHERE status = 'pending' AND next_attempt_at <= now() \
                        AND (leased_until IS NULL OR leased_until <= now()) \
                      ORDER BY next_attempt_at LIMIT $1 \
                      FOR NO KEY UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<Int8, _>(limit)
    .bind::<Interval, _>(interval(lease))
    .load(conn)
}

pub fn find_alert(conn: &mut PgConnection, id: &str) -> QueryResult<Alert> {
    alerts::table
        .find(id)
        .select(Alert::as_select())
        .first(conn)
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Sent,
    RetryIn(Duration),
    Failed,
}

/// Records attempt `attempt` of a delivery, unless a later one was claimed meanwhile.
pub fn record(
    conn: &mut PgConnection,
    delivery_id: i64,
    attempt: i32,
    outcome: Outcome,
    error: Option<&str>,
) -> QueryResult<()> {
    let mine = alert_deliveries::table
        .find(delivery_id)
        .filter(alert_deliveries::attempts.eq(attempt))
        .filter(alert_deliveries::status.eq(DeliveryStatus::Pending));
    let now = sql::<Nullable<Timestamptz>>("now()");
    let common = (
        alert_deliveries::leased_until.eq(None::<DateTime<Utc>>),
        alert_deliveries::last_error.eq(error),
    );
    match outcome {
        Outcome::Sent => diesel::update(mine)
            .set((
                common,
                alert_deliveries::status.eq(DeliveryStatus::Succeeded),
                alert_deliveries::completed_at.eq(now),
            ))
            .execute(conn)?,
        Outcome::Failed => diesel::update(mine)
            .set((
                common,
                alert_deliveries::status.eq(DeliveryStatus::Failed),
                alert_deliveries::completed_at.eq(now),
            ))
            .execute(conn)?,
        Outcome::RetryIn(wait) => diesel::update(mine)
            .set((
                common,
                alert_deliveries::next_attempt_at
                    .eq(sql::<Timestamptz>("now() + ").bind::<Interval, _>(interval(wait))),
            ))
            .execute(conn)?,
    };
    Ok(())
}

/// The newest alerts (before `before`, if given), with their deliveries.
pub fn list(
    conn: &mut PgConnection,
    kinds: Option<&[AlertKind]>,
    before: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<(Alert, Vec<Delivery>)>> {
    let mut query = alerts::table.into_boxed();
    if let Some(kinds) = kinds {
        let kinds: Vec<&str> = kinds.iter().map(AlertKind::as_str).collect();
        query = query.filter(alerts::kind.eq_any(kinds));
    }
    if let Some(before) = before {
        query = query.filter(
            sql::<Bool>(
                "(alerts.created_at, alerts.id) < (SELECT created_at, id FROM alerts WHERE id = ",
            )
            .bind::<Text, _>(before.to_string())
            .sql(")"),
        );
    }
    let rows: Vec<Alert> = query
        .order((alerts::created_at.desc(), alerts::id.desc()))
        .limit(limit)
        .select(Alert::as_select())
        .load(conn)?;
    let ids: Vec<&str> = rows.iter().map(|a| a.id.as_str()).collect();
    let deliveries: Vec<Delivery> = alert_deliveries::table
        .filter(alert_deliveries::alert_id.eq_any(&ids))
        .order(alert_deliveries::id)
        .select(Delivery::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|alert| {
            let own = deliveries
                .iter()
                .filter(|d| d.alert_id == alert.id)
                .cloned()
                .collect();
            (alert, own)
        })
        .collect())
}

/// Kinds as stored in a channel's list.
pub fn kinds_of(channel: &Channel) -> Option<Vec<String>> {
    channel
        .kinds
        .as_ref()
        .map(|kinds| kinds.iter().flatten().cloned().collect())
}

/// Whether any channel exists (alerts are raised only then).
pub fn any_channel(conn: &mut PgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        alert_channels::table.filter(alert_channels::enabled.eq(true)),
    ))
    .get_result(conn)
}

/// Retention: deletes up to `$2` of the oldest alerts raised more than `$1` ago (by the
/// database clock) that no channel still has to send (no pending delivery) and that are no
/// kept alert's digest (a digest goes in a later batch than its members), with their
/// deliveries. Rows another transaction holds are skipped.
/// Its one row is `counts`: [alerts, deliveries] deleted (see [`super::run_retention`]).
pub const RETIRE_BATCH: &str = "WITH due AS ( \
             SELECT a.id FROM alerts a \
             WHERE a.created_at < now() - $1 \
               AND NOT EXISTS (SELECT 1 FROM alert_deliveries d \
                               WHERE d.alert_id = a.id AND d.status = 'pending') \
               AND NOT EXISTS (SELECT 1 FROM alerts m WHERE m.digest_id = a.id) \
             ORDER BY a.created_at \
             LIMIT $2 \
             FOR UPDATE OF a SKIP LOCKED), \
         deliveries AS ( \
             DELETE FROM alert_deliveries \
             WHERE alert_id IN (SELECT id FROM due) AND status <> 'pending' RETURNING 1), \
         gone AS (DELETE FROM alerts WHERE id IN (SELECT id FROM due) RETURNING 1) \
         SELECT ARRAY[(SELECT count(*) FROM gone), (SELECT count(*) FROM deliveries)] AS counts";
