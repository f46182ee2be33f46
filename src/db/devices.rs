//! The `devices` table: listener phones, their shared secret and when they were last heard from.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Interval, Nullable, Timestamptz};

use super::interval;
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
    let now: DateTime<Utc> = diesel::select(sql::<Timestamptz>("now()")).get_result(conn)?;
    let device = devices::table
        .find(id)
        .select(Device::as_select())
        .first(conn)
        .optional()?;
    Ok((device, now))
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
#[derive(AsChangeset)]
#[diesel(table_name = devices)]
struct HeartbeatDetails<'a> {
    app_version: Option<&'a str>,
    battery: Option<i16>,
}

pub fn record_heartbeat(
    conn: &mut PgConnection,
    id: &str,
    app_version: Option<&str>,
    battery: Option<i16>,
) -> QueryResult<Device> {
    let now = sql::<Nullable<Timestamptz>>("now()");
    diesel::update(devices::table.find(id))
        .set((
            devices::last_seen_at.eq(now.clone()),
            devices::last_heartbeat_at.eq(now),
            HeartbeatDetails {
                app_version,
                battery,
            },
        ))
        .returning(Device::as_returning())
        .get_result(conn)
}

pub fn record_notification(conn: &mut PgConnection, id: &str) -> QueryResult<usize> {
    let now = sql::<Nullable<Timestamptz>>("now()");
    diesel::update(devices::table.find(id))
        .set((
            devices::last_seen_at.eq(now.clone()),
            devices::last_notification_at.eq(now),
        ))
        .execute(conn)
}

/// The channels of the payees a device listens for.
pub fn payee_channels(conn: &mut PgConnection, id: &str) -> QueryResult<Vec<Channel>> {
    payees::table
        .filter(payees::device_id.eq(id))
        .select(payees::channel)
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
