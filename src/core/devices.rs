//! Listener devices: creating one with its secret, and heartbeats.

use diesel::PgConnection;

use crate::core::notifications::{Credentials, check_credentials, refusal};
use crate::core::reconciliation::audit;
use crate::core::secrets::sha256;
use crate::core::secrets::{new_device_secret, new_id};
use crate::db::devices::{self as device_rows, Device, DeviceChanges, NewDevice};
use crate::db::sealed::Sealed;
use crate::db::transaction_with_retry;
use crate::domain::AuthResult;
use crate::error::ApiError;

pub fn create_device(
    conn: &mut PgConnection,
    operator: &str,
    name: &str,
) -> Result<Device, ApiError> {
    transaction_with_retry(conn, |conn| -> Result<_, ApiError> {
        let device = device_rows::insert(
            conn,
            &NewDevice {
                id: &new_id("dev"),
                name,
                secret: &Sealed::new(new_device_secret()),
            },
        )?;
        audit(
            conn,
            operator,
            "device.create",
            ("device", &device.id),
            None,
            serde_json::json!({ "name": name }),
        )?;
        Ok(device)
    })
}

/// Renames a device, enables or disables it, or changes what it is trusted to report.
pub fn update_device(
    conn: &mut PgConnection,
    operator: &str,
    id: &str,
    changes: &DeviceChanges<'_>,
) -> Result<Device, ApiError> {
    transaction_with_retry(conn, |conn| -> Result<_, ApiError> {
        let device =
            device_rows::update(conn, id, changes)?.ok_or_else(|| ApiError::not_found("device"))?;
        audit(
            conn,
            operator,
            "device.update",
            ("device", id),
            None,
            serde_json::json!({
                "name": changes.name,
                "enabled": changes.enabled,
                "allowed_packages": changes.allowed_packages,
                "trust_unlabelled": changes.trust_unlabelled,
            }),
        )?;
        Ok(device)
    })
}

/// A new secret for a device; requests signed with the old one are refused at once (the
/// listener app must be given the new one).
pub fn rotate_secret(
    conn: &mut PgConnection,
    operator: &str,
    id: &str,
) -> Result<Device, ApiError> {
    let secret = Sealed::new(new_device_secret());
    transaction_with_retry(conn, |conn| -> Result<_, ApiError> {
        let device = device_rows::replace_secret(conn, id, &secret)?
            .ok_or_else(|| ApiError::not_found("device"))?;
        audit(
            conn,
            operator,
            "device.rotate_secret",
            ("device", id),
            None,
            serde_json::json!({}),
        )?;
        Ok(device)
    })
}

/// Authenticates a listener's request that is not stored (a heartbeat): signed, or the V免签
/// app's md5 scheme.
pub fn authenticate(
    conn: &mut PgConnection,
    credentials: &Credentials,
    body: &[u8],
) -> Result<Device, ApiError> {
    match check_credentials(conn, credentials, body, &sha256(body))? {
        (Some(device), AuthResult::Ok) => Ok(device),
        (_, refused) => Err(refusal(refused)),
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
