//! Listener devices: creating one with its secret, and heartbeats.

use diesel::PgConnection;

use crate::core::notifications::{DeviceCredentials, check_credentials, refusal};
use crate::core::secrets::{new_device_secret, new_id};
use crate::db::devices::{self as device_rows, Device, NewDevice};
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

/// Authenticates a listener request (its exact body bytes) against the device's secret and the
/// database clock.
pub fn authenticate(
    conn: &mut PgConnection,
    credentials: &DeviceCredentials,
    body: &[u8],
) -> Result<Device, ApiError> {
    let Some(device_id) = credentials.device_id.as_deref() else {
        return Err(refusal(crate::domain::AuthResult::MissingCredentials));
    };
    let (device, now) = device_rows::find_with_clock(conn, device_id)?;
    match check_credentials(device.as_ref(), credentials, body, now) {
        crate::domain::AuthResult::Ok => {
            device.ok_or_else(|| ApiError::internal("authenticated a missing device"))
        }
        refused => Err(refusal(refused)),
    }
}

/// What a heartbeat reports about the phone.
#[derive(Debug, Default)]
pub struct Heartbeat {
    pub app_version: Option<String>,
    pub battery: Option<i16>,
}

/// Marks an authenticated device online, by the database clock, with what it reported.
pub fn record_heartbeat(
    conn: &mut PgConnection,
    device_id: &str,
    heartbeat: &Heartbeat,
) -> Result<Device, ApiError> {
    Ok(device_rows::record_heartbeat(
        conn,
        device_id,
        heartbeat.app_version.as_deref(),
        heartbeat.battery,
    )?)
}
