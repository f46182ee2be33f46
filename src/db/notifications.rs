//! The `notifications` table: every notification request exactly as it arrived, stored before
//! anything else is done with it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Interval, Text};

use super::interval;
use super::prepared::KeepPrepared;
use super::schema::notifications;
use crate::domain::AuthResult;
use crate::domain::DeviceId;
use crate::domain::NotificationSource;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
pub struct RawNotification {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub source: String,
    pub device_id: Option<String>,
    pub auth_result: AuthResult,
    pub auth_headers: serde_json::Value,
    pub body: Vec<u8>,
    pub body_length: i32,
    pub body_sha256: Vec<u8>,
    pub remote_addr: Option<String>,
    pub payment_id: Option<String>,
    pub rejection: Option<String>,
    pub reading: Option<serde_json::Value>,
    pub same_payment_key: Option<Vec<u8>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = notifications)]
pub struct NewRawNotification<'a> {
    pub source: NotificationSource,
    pub device_id: Option<&'a str>,
    pub auth_result: AuthResult,
    pub auth_headers: &'a serde_json::Value,
    pub body: &'a [u8],
    pub body_length: i32,
    pub body_sha256: &'a [u8],
    pub remote_addr: Option<&'a str>,
    pub reading: Option<&'a serde_json::Value>,
    pub rejection: Option<&'a str>,
    pub same_payment_key: Option<&'a [u8]>,
}

/// Stores a notification; returns its row id and the moment it counts as received.
pub fn insert(
    conn: &mut PgConnection,
    new: &NewRawNotification<'_>,
) -> QueryResult<(i64, DateTime<Utc>)> {
    diesel::insert_into(notifications::table)
        .values(new)
        .returning((notifications::id, notifications::received_at))
        .prepared()
        .get_result(conn)
}

pub fn set_payment(conn: &mut PgConnection, id: i64, payment_id: &str) -> QueryResult<usize> {
    diesel::update(notifications::table.find(id))
        .set(notifications::payment_id.eq(payment_id))
        .returning(notifications::id)
        .prepared()
        .load::<i64>(conn)
        .map(|rows| rows.len())
}

/// Marks a notification refused with `reason` unless it already has a payment or a refusal;
/// true when this call marked it.
pub fn reject_if_unfinished(conn: &mut PgConnection, id: i64, reason: &str) -> QueryResult<bool> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::payment_id.is_null())
        .filter(notifications::rejection.is_null())
        .set(notifications::rejection.eq(reason))
        .execute(conn)
        .map(|rows| rows == 1)
}

/// Authenticated notifications older than `age` that produced neither a payment nor a refusal:
/// their request died before its matching transaction committed.
pub fn find_stranded(
    conn: &mut PgConnection,
    age: Duration,
    limit: i64,
) -> QueryResult<Vec<RawNotification>> {
    notifications::table
        .filter(notifications::auth_result.eq(AuthResult::Ok))
        .filter(notifications::payment_id.is_null())
        .filter(notifications::rejection.is_null())
        .filter(
            sql::<Bool>("notifications.received_at < now() - ").bind::<Interval, _>(interval(age)),
        )
        .order(notifications::received_at)
        .limit(limit)
        .select(RawNotification::as_select())
        .load(conn)
}

/// When the device's first still unprocessed copy of a notification arrived: a retry (the
/// same id and the same body) may be processed while an earlier copy, whose request died, waits
/// for the sweep. Matching is decided as of the earliest. Another body under the same id is not
/// a copy (a listener that reuses ids), and moves nothing.
pub fn first_unprocessed_arrival(
    conn: &mut PgConnection,
    device_id: DeviceId<'_>,
    notification_id: &str,
    body_sha256: &[u8],
) -> QueryResult<Option<DateTime<Utc>>> {
    notifications::table
        // A literal, not a bind: the plan kept for this statement can then use the partial
        // index of unprocessed notifications (`auth_result = 'ok' AND …`).
        .filter(sql::<Bool>("notifications.auth_result = 'ok'"))
        .filter(notifications::payment_id.is_null())
        .filter(notifications::rejection.is_null())
        .filter(notifications::device_id.eq(device_id.as_str()))
        .filter(notifications::body_sha256.eq(body_sha256))
        .filter(
            sql::<Bool>("notifications.reading->>'notification_id' = ")
                .bind::<Text, _>(notification_id),
        )
        .select(diesel::dsl::min(notifications::received_at))
        .prepared()
        .get_result(conn)
}

/// When the device's first authenticated report sharing `same_payment_key` arrived, within
/// `window` before `arrived_at` (any time when `None`): a copy of one payment is matched as of
/// the first, so that a copy arriving after a new order was given the amount never pays that
/// order, even when the first copy is still waiting for the sweep.
pub fn first_report_arrival(
    conn: &mut PgConnection,
    device_id: &str,
    same_payment_key: &[u8],
    arrived_at: DateTime<Utc>,
    window: Option<Duration>,
) -> QueryResult<Option<DateTime<Utc>>> {
    let mut query = notifications::table
        .filter(notifications::auth_result.eq(AuthResult::Ok))
        .filter(notifications::device_id.eq(device_id))
        .filter(notifications::same_payment_key.eq(same_payment_key))
        .filter(notifications::received_at.le(arrived_at))
        .into_boxed();
    if let Some(window) = window {
        query = query.filter(
            sql::<Bool>("notifications.received_at >= ")
                .bind::<diesel::sql_types::Timestamptz, _>(arrived_at)
                .sql(" - ")
                .bind::<Interval, _>(interval(window)),
        );
    }
    query
        .select(diesel::dsl::min(notifications::received_at))
        .prepared()
        .get_result(conn)
}

/// Retention: of the up to `$2` oldest finished raw notifications received more than `$1`
/// ago (by the database clock) and not yet compacted, deletes those no payment references
/// (refused requests, repeats of a notification id, bodies that could not be read) and compacts
/// each payment's own report (body, headers and reading cleared; the row, with the device,
/// `same_payment_key` and `received_at` the dedupe rules read, stays). A notification not yet
/// processed is never touched: the sweep finishes it first. Rows another transaction holds are
/// skipped; one statement, so the caller's transaction stays short.
/// Its one row is `counts`: [deleted, compacted] (see [`super::run_retention`]).
pub const RETIRE_BATCH: &str = "WITH due AS ( \
             SELECT n.id, \
                    (SELECT 1 FROM payments p WHERE p.notification_row = n.id LIMIT 1) \
                        IS NOT NULL AS referenced \
             FROM notifications n \
             WHERE n.compacted_at IS NULL AND n.received_at < now() - $1 \
               AND (n.auth_result <> 'ok' OR n.payment_id IS NOT NULL OR n.rejection IS NOT NULL) \
             ORDER BY n.received_at \
             LIMIT $2 \
             FOR UPDATE OF n SKIP LOCKED), \
         deleted AS ( \
             DELETE FROM notifications WHERE id IN (SELECT id FROM due WHERE NOT referenced) \
             RETURNING 1), \
         compacted AS ( \
             UPDATE notifications \
                SET body = ''::bytea, auth_headers = '{}'::jsonb, reading = NULL, \
                    compacted_at = now() \
              WHERE id IN (SELECT id FROM due WHERE referenced) \
             RETURNING 1) \
         SELECT ARRAY[(SELECT count(*) FROM deleted), (SELECT count(*) FROM compacted)] AS counts";
