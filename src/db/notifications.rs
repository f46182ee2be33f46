//! The `notifications` table: every notification request exactly as it arrived, stored before
//! anything else is done with it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int8, Interval, Nullable, Text, Timestamptz};

use super::interval;
use super::prepared::KeepPrepared;
use super::schema::notifications;
use crate::domain::AuthResult;
use crate::domain::Channel;
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

/// What storing an authenticated notification found on its device (see [`insert_heard`]).
#[derive(Debug)]
pub struct StoredHeard {
    /// The stored row's id, and the moment it counts as received.
    pub id: i64,
    pub received_at: DateTime<Utc>,
    /// Since when the device was told offline, if it was (the mark is left for the caller to
    /// clear, see `devices::clear_offline_mark`).
    pub offline_since: Option<DateTime<Utc>>,
    /// Its payees, as `devices::payees_by_channel` gives them (empty: no such device).
    pub payees: Vec<(Channel, String)>,
}

/// Stores an authenticated notification of `device_id` and marks the device heard from (its
/// "silent" mark cleared), in one statement. Returns the device's offline mark as it stands
/// under the row's lock (the statement leaves it as it is; whoever clears it tells the owner,
/// `devices::clear_offline_mark`) and its payees.
///
/// With `Commit::Unflushed`, outside a transaction, the statement commits without waiting for
/// the disk (see [`Commit`]), and the caller owes a flushed commit after it.
pub fn insert_heard(
    conn: &mut PgConnection,
    new: &NewRawNotification<'_>,
    device_id: &str,
    commit: Commit,
) -> QueryResult<StoredHeard> {
    type Row = (
        i64,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<Vec<Channel>>,
        Option<Vec<String>>,
    );
    let insert = diesel::insert_into(notifications::table)
        .values(new)
        .returning((notifications::id, notifications::received_at));
    // Inside a transaction the setting would hold for the whole of it.
    let commit = if super::in_transaction(conn) {
        Commit::Flushed
    } else {
        commit
    };
    let (id, received_at, offline_since, channels, payee_ids): Row = MarkingItsDevice {
        insert,
        device_id,
        commit,
    }
    .prepared()
    .get_result(conn)?;
    Ok(StoredHeard {
        id,
        received_at,
        offline_since,
        payees: channels
            .unwrap_or_default()
            .into_iter()
            .zip(payee_ids.unwrap_or_default())
            .collect(),
    })
}

/// A notification's insert (returning `id, received_at`) with its device's update:
/// `WITH stored AS (<insert>), heard AS (UPDATE devices … RETURNING …) SELECT … FROM stored LEFT
/// JOIN heard ON true`. No self-join on the device (reading an old value through one re-locked
/// the row when a concurrent update had moved it, and two notifications of one phone were seen
/// to deadlock that way).
struct MarkingItsDevice<'a, Q> {
    insert: Q,
    device_id: &'a str,
    commit: Commit,
}

/// How a statement stored outside a transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Waits until its commit is on disk (the server's `synchronous_commit`).
    Flushed,
    /// Returns before its commit is on disk (`synchronous_commit` off for this statement alone),
    /// for a row whose request goes on to a flushed commit before it is answered. Postgres
    /// writes its log in order, so that commit puts this row on disk too; a crash before it
    /// loses the row together with everything the request did, before any answer, as if the
    /// request had never arrived (its sender sends it again). A request that ends without one
    /// calls [`flush`].
    Unflushed,
}

impl<Q> diesel::query_builder::QueryId for MarkingItsDevice<'_, Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>>
    diesel::query_builder::QueryFragment<diesel::pg::Pg> for MarkingItsDevice<'_, Q>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("WITH stored AS (");
        self.insert.walk_ast(out.reborrow())?;
        out.push_sql(
            "), heard AS (UPDATE devices SET last_seen_at = now(), last_notification_at = now(), \
             silence_alerted_at = NULL WHERE devices.id = ",
        );
        out.push_bind_param::<Text, _>(&self.device_id)?;
        out.push_sql(
            " RETURNING devices.offline_alerted_at, \
             ARRAY(SELECT p.channel FROM payees p WHERE p.device_id = devices.id ORDER BY p.id) \
             AS channels, \
             ARRAY(SELECT p.id FROM payees p WHERE p.device_id = devices.id ORDER BY p.id) \
             AS payee_ids) \
             SELECT stored.id, stored.received_at, heard.offline_alerted_at, heard.channels, \
             heard.payee_ids FROM stored LEFT JOIN heard ON true",
        );
        if self.commit == Commit::Unflushed {
            out.push_sql(" CROSS JOIN set_config('synchronous_commit', 'off', true) AS unflushed");
        }
        Ok(())
    }
}

impl<Q> diesel::query_builder::Query for MarkingItsDevice<'_, Q> {
    type SqlType = (
        Int8,
        Timestamptz,
        Nullable<Timestamptz>,
        Nullable<Array<Text>>,
        Nullable<Array<Text>>,
    );
}

impl<Q, Conn> RunQueryDsl<Conn> for MarkingItsDevice<'_, Q> {}

/// Puts notification `id`, stored with [`Commit::Unflushed`], on disk before its request is
/// answered without a flushed commit of its own: a flushed commit that writes, here a new
/// version of the row with nothing changed (a commit that writes nothing is never flushed).
pub fn flush(conn: &mut PgConnection, id: i64) -> QueryResult<usize> {
    diesel::update(notifications::table.find(id))
        .set(notifications::body_length.eq(notifications::body_length))
        .execute(conn)
}

/// What was read from the stored notification `id` (`None` once retention compacted it, or for
/// a row stored before readings were kept).
pub fn reading_of(conn: &mut PgConnection, id: i64) -> QueryResult<Option<serde_json::Value>> {
    notifications::table
        .find(id)
        .select(notifications::reading)
        .first(conn)
        .optional()
        .map(Option::flatten)
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
