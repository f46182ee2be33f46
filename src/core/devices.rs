//! Listener devices: creating one with its secret, and heartbeats.

use diesel::PgConnection;

use crate::core::notifications::{DeviceCredentials, authenticate};
use crate::core::secrets::{new_device_secret, new_id};
use crate::db::devices::{self as device_rows, Device, NewDevice};
use crate::db::transaction_with_retry;
use crate::error::ApiError;

pub fn create_device(conn: &mut PgConnection, name: &str) -> Result<Device, ApiError> {
    Ok(device_rows::insert(
        conn,
        &NewDevice {
            id: &new_id("dev"),
            name,
            secret: &new_device_secret(),
        },
    )?)
}

/// What a heartbeat reports about the phone.
#[derive(Debug, Default)]
pub struct Heartbeat {
    pub app_version: Option<String>,
    pub battery: Option<i16>,
}

/// Authenticates a heartbeat and marks the device online, by the database clock.
pub fn record_heartbeat(
    conn: &mut PgConnection,
    credentials: &DeviceCredentials,
    body: &[u8],
    heartbeat: &Heartbeat,
) -> Result<Device, ApiError> {
    transaction_with_retry(conn, |conn| {
        let device = authenticate(conn, credentials, body)?;
        Ok(device_rows::record_heartbeat(
            conn,
            &device.id,
            heartbeat.app_version.as_deref(),
            heartbeat.battery,
        )?)
    })
}
