//! The `devices` table: listener phones, their shared secret and when they were last heard from.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Interval, Nullable, Timestamptz};

use super::interval;
use super::prepared::KeepPrepared;
use super::schema::{devices, payees};
use super::sealed::Sealed;
use crate::domain::Channel;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = devices, check_for_backend(diesel::pg::Pg))]
pub struct Device {
    pub id: String,
    pub name: String,
    pub secret: Sealed,
    pub enabled: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub last_notification_at: Option<DateTime<Utc>>,
    pub app_version: Option<String>,
    pub battery: Option<i16>,
    pub created_at: DateTime<Utc>,
    pub allowed_packages: Option<Vec<Option<String>>>,
    pub trust_unlabelled: bool,
    /// What the listener last said about itself (all optional).
    pub notification_access: Option<bool>,
    pub queue_depth: Option<i32>,
    pub oldest_unsent_secs: Option<i32>,
    pub os_version: Option<String>,
    /// Since when the owner was told it is offline (until it is heard from again).
    pub offline_alerted_at: Option<DateTime<Utc>>,
    /// Since when the owner was told its listener went silent (until it reports again).
    pub silence_alerted_at: Option<DateTime<Utc>>,
}

impl Device {
    /// The packages the operator listed for this device, if any.
    pub fn listed_packages(&self) -> Option<Vec<String>> {
        self.allowed_packages
            .as_ref()
            .map(|list| list.iter().flatten().cloned().collect())
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = devices)]
pub struct NewDevice<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub secret: &'a Sealed,
}

pub fn insert(conn: &mut PgConnection, new: &NewDevice<'_>) -> QueryResult<Device> {
    diesel::insert_into(devices::table)
        .values(new)
        .returning(Device::as_returning())
        .get_result(conn)
}

/// The device and the database clock, read together so that signature windows use the
/// database's time.
pub fn find_with_clock(
    conn: &mut PgConnection,
    id: &str,
) -> QueryResult<(Option<Device>, DateTime<Utc>)> {
    // One statement for a known device (every real request): the clock comes with the row.
    let found = devices::table
        .find(id)
        .select((Device::as_select(), sql::<Timestamptz>("now()")))
        .limit(1)
        .prepared()
        .get_result::<(Device, DateTime<Utc>)>(conn)
        .optional()?;
    match found {
        Some((device, now)) => Ok((Some(device), now)),
        None => Ok((None, crate::db::clock(conn)?)),
    }
}

/// Every device and the database clock (for protocols that name no device).
pub fn all_with_clock(conn: &mut PgConnection) -> QueryResult<(Vec<Device>, DateTime<Utc>)> {
    let now: DateTime<Utc> = diesel::select(sql::<Timestamptz>("now()")).get_result(conn)?;
    let all = devices::table.select(Device::as_select()).load(conn)?;
    Ok((all, now))
}

pub fn exists(conn: &mut PgConnection, id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(devices::table.find(id))).get_result(conn)
}

/// Every device with whether it counts as online right now (by the database clock).
pub fn list_with_online(
    conn: &mut PgConnection,
    offline_after: Duration,
) -> QueryResult<Vec<(Device, bool)>> {
    devices::table
        .order((devices::created_at, devices::id))
        .select((
            Device::as_select(),
            sql::<Bool>("coalesce(devices.last_seen_at > now() - ")
                .bind::<Interval, _>(interval(offline_after))
                .sql(", false)"),
        ))
        .load(conn)
}

/// One device with whether it counts as online right now.
pub fn find_with_online(
    conn: &mut PgConnection,
    id: &str,
    offline_after: Duration,
) -> QueryResult<Option<(Device, bool)>> {
    devices::table
        .find(id)
        .select((
            Device::as_select(),
            sql::<Bool>("coalesce(devices.last_seen_at > now() - ")
                .bind::<Interval, _>(interval(offline_after))
                .sql(", false)"),
        ))
        .first(conn)
        .optional()
}

/// What a heartbeat may update; a detail it does not report keeps its earlier value.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = devices)]
pub struct HeartbeatDetails<'a> {
    pub app_version: Option<&'a str>,
    pub battery: Option<i16>,
    pub notification_access: Option<bool>,
    pub queue_depth: Option<i32>,
    pub oldest_unsent_secs: Option<i32>,
    pub os_version: Option<&'a str>,
}

/// The device row, locked for the heartbeat's transaction (what it was before the heartbeat).
pub fn lock(conn: &mut PgConnection, id: &str) -> QueryResult<Device> {
    devices::table
        .find(id)
        .select(Device::as_select())
        .for_no_key_update()
        .first(conn)
}

/// Marks a device heard from by a heartbeat, with what it reported; an open "offline" alert
/// mark is cleared.
pub fn record_heartbeat(
    conn: &mut PgConnection,
    id: &str,
    details: &HeartbeatDetails<'_>,
) -> QueryResult<Device> {
    let now = sql::<Nullable<Timestamptz>>("now()");
    diesel::update(devices::table.find(id))
        .set((
            devices::last_seen_at.eq(now.clone()),
            devices::last_heartbeat_at.eq(now),
            devices::offline_alerted_at.eq(None::<DateTime<Utc>>),
            details,
        ))
        .returning(Device::as_returning())
        .get_result(conn)
}

/// Clears a device's offline mark if it is still `since` (the mark a notification found on it,
/// [`super::notifications::insert_heard`]); true when this call cleared it, so that of several
/// notifications that found one mark, one tells the owner the device is back.
pub fn clear_offline_mark(
    conn: &mut PgConnection,
    id: &str,
    since: DateTime<Utc>,
) -> QueryResult<bool> {
    diesel::update(devices::table.find(id))
        .filter(devices::offline_alerted_at.eq(since))
        .set(devices::offline_alerted_at.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .map(|rows| rows == 1)
}

/// Marks the enabled devices with enabled payees that went offline (seen before, not within
/// `offline_after`) and were not told offline yet; returns them.
pub fn mark_offline(conn: &mut PgConnection, offline_after: Duration) -> QueryResult<Vec<Device>> {
    diesel::update(devices::table)
        .filter(devices::enabled.eq(true))
        .filter(devices::offline_alerted_at.is_null())
        .filter(
            sql::<Bool>("devices.last_seen_at < now() - ")
                .bind::<Interval, _>(interval(offline_after)),
        )
        .filter(sql::<Bool>(
            "EXISTS (SELECT 1 FROM payees p WHERE p.device_id = devices.id AND p.enabled)",
        ))
        .set(devices::offline_alerted_at.eq(sql::<Nullable<Timestamptz>>("now()")))
        .returning(Device::as_returning())
        .get_results(conn)
}

/// Marks the devices whose listener went silent: still sending heartbeats, known to report
/// notifications before (it has reported one), and with at least `expired` orders on its payees
/// that expired unpaid since its last notification; returns them with that count.
/// (Re-checked on the row as the update finds it: a notification that arrived while the update
/// waited for the row clears the device, and it is not marked.) The count reads the partial index
/// of expired orders by payee and expiry: only what expired since each device's last
/// notification, never the history before it.
pub fn mark_silent(
    conn: &mut PgConnection,
    offline_after: Duration,
    expired: i64,
) -> QueryResult<Vec<(Device, i64)>> {
    #[derive(QueryableByName)]
    struct Silent {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Int8)]
        expired: i64,
    }
    let silent: Vec<Silent> = diesel::sql_query(
        "WITH silent AS ( \
             SELECT d.id, d.last_notification_at, count(*) AS expired FROM devices d \
             JOIN payees p ON p.device_id = d.id \
             JOIN orders o ON o.payee_id = p.id \
             WHERE d.enabled AND d.silence_alerted_at IS NULL \
               AND d.last_notification_at IS NOT NULL \
               AND d.last_heartbeat_at > now() - $1 \
               AND o.status = 'expired' AND o.expires_at > d.last_notification_at \
             GROUP BY d.id HAVING count(*) >= $2) \
         UPDATE devices SET silence_alerted_at = now() FROM silent \
         WHERE devices.id = silent.id \
           AND devices.silence_alerted_at IS NULL \
           AND devices.last_notification_at = silent.last_notification_at \
         RETURNING devices.id, silent.expired",
    )
    .bind::<Interval, _>(interval(offline_after))
    .bind::<diesel::sql_types::Int8, _>(expired)
    .load(conn)?;
    let mut marked = Vec::with_capacity(silent.len());
    for one in silent {
        let device = devices::table
            .find(&one.id)
            .select(Device::as_select())
            .first(conn)?;
        marked.push((device, one.expired));
    }
    Ok(marked)
}

/// The payees a device listens for: the channel and id of each (one per channel).
pub fn payees_by_channel(conn: &mut PgConnection, id: &str) -> QueryResult<Vec<(Channel, String)>> {
    payees::table
        .filter(payees::device_id.eq(id))
        .select((payees::channel, payees::id))
        .load(conn)
}

/// What an operator may change on a device; `None` leaves a field as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = devices)]
pub struct DeviceChanges<'a> {
    pub name: Option<&'a str>,
    pub enabled: Option<bool>,
    /// `Some(None)` goes back to the default packages.
    pub allowed_packages: Option<Option<Vec<Option<String>>>>,
    pub trust_unlabelled: Option<bool>,
}

pub fn update(
    conn: &mut PgConnection,
    id: &str,
    changes: &DeviceChanges<'_>,
) -> QueryResult<Option<Device>> {
    // An empty change set is not an UPDATE diesel can write: read the row instead.
    if changes.name.is_none()
        && changes.enabled.is_none()
        && changes.allowed_packages.is_none()
        && changes.trust_unlabelled.is_none()
    {
        return devices::table
            .find(id)
            .select(Device::as_select())
            .first(conn)
            .optional();
    }
    diesel::update(devices::table.find(id))
        .set(changes)
        .returning(Device::as_returning())
        .get_result(conn)
        .optional()
}

/// Replaces the device's secret: requests signed with the old one are refused at once.
pub fn replace_secret(
    conn: &mut PgConnection,
    id: &str,
    secret: &Sealed,
) -> QueryResult<Option<Device>> {
    diesel::update(devices::table.find(id))
        .set(devices::secret.eq(secret))
        .returning(Device::as_returning())
        .get_result(conn)
        .optional()
}
