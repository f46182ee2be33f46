//! Listener devices: creating one with its secret, heartbeats, and whether any is listening.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::PgConnection;

use crate::core::alerts;
use crate::core::error::RuleError;
use crate::core::notifications::{Credentials, check_credentials, refusal};
use crate::core::reconciliation::audit;
use crate::core::secrets::sha256;
use crate::core::secrets::{new_device_secret, new_id};
use crate::db::devices::{self as device_rows, Device, DeviceChanges, NewDevice};
use crate::db::payments as payment_rows;
use crate::db::sealed::Sealed;
use crate::db::transaction_with_retry;
use crate::domain::{AuditAction, Operator};
use crate::domain::{AuthResult, PaymentResult};

pub fn create_device(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    name: &str,
) -> Result<Device, RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
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
            AuditAction::DeviceCreate,
            &device.id,
            None,
            serde_json::json!({ "name": name }),
        )?;
        Ok(device)
    })
}

/// Renames a device, enables or disables it, or changes what it is trusted to report.
pub fn update_device(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    id: &str,
    changes: &DeviceChanges<'_>,
) -> Result<Device, RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let device = device_rows::update(conn, id, changes)?
            .ok_or_else(|| RuleError::not_found("device"))?;
        audit(
            conn,
            operator,
            AuditAction::DeviceUpdate,
            id,
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
    operator: Operator<'_>,
    id: &str,
) -> Result<Device, RuleError> {
    let secret = Sealed::new(new_device_secret());
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let device = device_rows::replace_secret(conn, id, &secret)?
            .ok_or_else(|| RuleError::not_found("device"))?;
        audit(
            conn,
            operator,
            AuditAction::DeviceRotateSecret,
            id,
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
) -> Result<Device, RuleError> {
    match check_credentials(conn, credentials, body, &sha256(body))? {
        (Some(device), AuthResult::Ok) => Ok(device),
        (_, refused) => Err(refusal(refused)),
    }
}

/// What a heartbeat reports about the phone and its listener (all optional: a listener that
/// knows more gets earlier alerts).
#[derive(Debug, Default)]
pub struct Heartbeat {
    pub app_version: Option<String>,
    pub battery: Option<i16>,
    /// Whether Android grants the listener notification access.
    pub notification_access: Option<bool>,
    /// Notifications the listener holds but has not delivered yet.
    pub queue_depth: Option<i32>,
    /// How long the oldest of them has waited.
    pub oldest_unsent_secs: Option<i32>,
    pub os_version: Option<String>,
}

/// Marks an authenticated device online, by the database clock, with what it reported; tells
/// the owner when it comes back from offline or says it lost notification access. One
/// transaction.
pub fn record_heartbeat(
    conn: &mut PgConnection,
    device_id: &str,
    heartbeat: &Heartbeat,
) -> Result<Device, RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let was = device_rows::lock(conn, device_id)?;
        let device = device_rows::record_heartbeat(
            conn,
            device_id,
            &device_rows::HeartbeatDetails {
                app_version: heartbeat.app_version.as_deref(),
                battery: heartbeat.battery,
                notification_access: heartbeat.notification_access,
                queue_depth: heartbeat.queue_depth,
                oldest_unsent_secs: heartbeat.oldest_unsent_secs,
                os_version: heartbeat.os_version.as_deref(),
            },
        )?;
        if let Some(since) = was.offline_alerted_at {
            alerts::device_back(conn, &was, since)?;
        }
        alerts::notification_access_reported(conn, &was, heartbeat.notification_access)?;
        Ok(device)
    })
}

/// Whether the enabled listener devices are listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerStatus {
    /// At least one is online.
    Online,
    /// None is online, and at least one was seen once.
    Offline,
    /// None was ever seen.
    NeverSeen,
}

/// How the listeners stand (V免签's `getState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerState {
    /// The latest heartbeat of any enabled device.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// When the latest payment that paid an order was received.
    pub last_payment_at: Option<DateTime<Utc>>,
    pub status: ListenerStatus,
}

impl ListenerState {
    /// The state of `devices` (each with whether it is online now); disabled ones do not count.
    pub fn of<'a>(
        devices: impl IntoIterator<Item = (&'a Device, bool)>,
        last_payment_at: Option<DateTime<Utc>>,
    ) -> Self {
        let listening: Vec<_> = devices.into_iter().filter(|(d, _)| d.enabled).collect();
        let status = if listening.iter().any(|(_, online)| *online) {
            ListenerStatus::Online
        } else if listening.iter().any(|(d, _)| d.last_seen_at.is_some()) {
            ListenerStatus::Offline
        } else {
            ListenerStatus::NeverSeen
        };
        ListenerState {
            last_heartbeat_at: listening
                .iter()
                .filter_map(|(d, _)| d.last_heartbeat_at)
                .max(),
            last_payment_at,
            status,
        }
    }
}

/// How the listeners stand now; a device is online when seen within `offline_after`.
pub fn listener_state(
    conn: &mut PgConnection,
    offline_after: Duration,
) -> Result<ListenerState, RuleError> {
    let devices = device_rows::list_with_online(conn, offline_after)?;
    let last_payment_at = payment_rows::latest_received(conn, PaymentResult::Matched)?;
    Ok(ListenerState::of(
        devices.iter().map(|(device, online)| (device, *online)),
        last_payment_at,
    ))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::{ListenerState, ListenerStatus};
    use crate::db::devices::Device;
    use crate::db::sealed::Sealed;

    fn device(enabled: bool, last_heartbeat_at: Option<DateTime<Utc>>) -> Device {
        Device {
            id: "dev_1".into(),
            name: "phone".into(),
            secret: Sealed::new("secret"),
            enabled,
            last_seen_at: last_heartbeat_at,
            last_heartbeat_at,
            last_notification_at: None,
            app_version: None,
            battery: None,
            created_at: Utc::now(),
            allowed_packages: None,
            trust_unlabelled: false,
            notification_access: None,
            queue_depth: None,
            oldest_unsent_secs: None,
            os_version: None,
            offline_alerted_at: None,
            silence_alerted_at: None,
        }
    }

    #[test]
    fn listeners_are_online_offline_or_never_seen_counting_enabled_devices_only() {
        let now = Utc::now();
        let earlier = now - TimeDelta::minutes(5);
        let never = [device(true, None)];
        assert_eq!(
            ListenerState::of(never.iter().map(|d| (d, false)), None),
            ListenerState {
                last_heartbeat_at: None,
                last_payment_at: None,
                status: ListenerStatus::NeverSeen,
            }
        );
        let seen = [device(true, Some(earlier)), device(true, Some(now))];
        let offline = ListenerState::of(seen.iter().map(|d| (d, false)), Some(earlier));
        assert_eq!(offline.status, ListenerStatus::Offline);
        assert_eq!(offline.last_heartbeat_at, Some(now));
        assert_eq!(offline.last_payment_at, Some(earlier));
        let online = ListenerState::of(seen.iter().map(|d| (d, d.last_seen_at == Some(now))), None);
        assert_eq!(online.status, ListenerStatus::Online);
        // A disabled device neither listens nor counts as seen.
        let disabled = [device(false, Some(now))];
        let state = ListenerState::of(disabled.iter().map(|d| (d, true)), None);
        assert_eq!(
            (state.status, state.last_heartbeat_at),
            (ListenerStatus::NeverSeen, None)
        );
    }
}
