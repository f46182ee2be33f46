//! Who sent a notification request: a signed listener, a generic forwarder or the V免签 app,
//! checked against the device rows and the database clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use serde::{Deserialize, Serialize};

use crate::core::error::RuleError;
use crate::core::signing::{
    forwarder_sign, timestamp_within_window, verify_device_signature, verify_forwarder_sign,
    verify_md5_sign,
};
use crate::db::devices::{self as device_rows, Device};
use crate::db::forwarder_signatures::{self as forwarder_rows, Use};
use crate::domain::AuthResult;
use crate::domain::DeviceId;

/// How a request proves which device sent it, as received (any part may be missing); stored
/// with the raw notification (`auth_headers`) and read back from there by the sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Credentials {
    /// A listener: `X-Solopay-Device`, `X-Solopay-Timestamp`, `X-Solopay-Signature` over the body.
    Signed {
        device_id: Option<String>,
        timestamp: Option<String>,
        signature: Option<String>,
    },
    /// A generic forwarder: its device in the URL, a millisecond timestamp and a sign over the
    /// timestamp only, each accepted once within `window`.
    Forwarder {
        device_id: String,
        timestamp_ms: Option<String>,
        sign: Option<String>,
        #[serde(skip)]
        window: Duration,
    },
    /// The V免签 app: no device id; `sign` is md5(`message` + the device's secret), so the
    /// device is the one whose secret makes it match; `timestamp_ms` must be within `window`.
    Md5 {
        message: String,
        timestamp_ms: Option<String>,
        sign: Option<String>,
        #[serde(skip)]
        window: Duration,
    },
}

impl Credentials {
    pub fn device_id(&self) -> Option<&str> {
        match self {
            Credentials::Signed { device_id, .. } => device_id.as_deref(),
            Credentials::Forwarder { device_id, .. } => Some(device_id),
            Credentials::Md5 { .. } => None,
        }
    }

    /// When the phone signed the request, by its own clock (the timestamp its signature covers),
    /// if the request carries a readable one.
    pub fn signed_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Credentials::Signed { timestamp, .. } => timestamp
                .as_deref()?
                .parse::<i64>()
                .ok()
                .and_then(|secs| DateTime::from_timestamp(secs, 0)),
            Credentials::Forwarder { timestamp_ms, .. } | Credentials::Md5 { timestamp_ms, .. } => {
                timestamp_ms
                    .as_deref()?
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_millis)
            }
        }
    }
}

/// Checks a signed listener request against the device row and the database clock. The
/// signature is checked before the window, so only the real device learns about its clock.
pub fn check_signed(
    device: Option<&Device>,
    device_id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> AuthResult {
    let (Some(_), Some(timestamp), Some(signature)) = (device_id, timestamp, signature) else {
        return AuthResult::MissingCredentials;
    };
    let Some(device) = device else {
        return AuthResult::UnknownDevice;
    };
    if !verify_device_signature(device.secret.expose(), timestamp, body, signature) {
        return AuthResult::BadSignature;
    }
    if !timestamp_within_window(timestamp, now.timestamp()) {
        return AuthResult::StaleTimestamp;
    }
    if !device.enabled {
        return AuthResult::DeviceDisabled;
    }
    AuthResult::Ok
}

/// The answer a refused credential check gets.
pub fn refusal(result: AuthResult) -> RuleError {
    match result {
        AuthResult::StaleTimestamp => RuleError::Unauthorized(
            "the timestamp is too far from the server clock (replayed, or the phone's clock is off)"
                .into(),
        ),
        AuthResult::DeviceDisabled => RuleError::Forbidden("this device is disabled".into()),
        AuthResult::MissingCredentials => RuleError::Unauthorized(
            "the device, timestamp and signature are required".into(),
        ),
        AuthResult::Replayed => RuleError::Unauthorized(
            "this timestamp and sign were already used for another message".into(),
        ),
        AuthResult::Ok | AuthResult::UnknownDevice | AuthResult::BadSignature => {
            RuleError::Unauthorized("unknown device or invalid signature".into())
        }
    }
}

/// Whether a millisecond timestamp lies within `window` of `now`.
fn millis_within(timestamp_ms: &str, now: DateTime<Utc>, window: Duration) -> bool {
    timestamp_ms
        .parse::<i64>()
        .is_ok_and(|ms| u128::from(now.timestamp_millis().abs_diff(ms)) <= window.as_millis())
}

/// Checks a request's credentials; a forwarder's (timestamp, sign) is recorded as used. Returns
/// the device they name or prove, and the verdict.
pub fn check_credentials(
    conn: &mut PgConnection,
    credentials: &Credentials,
    body: &[u8],
    body_sha256: &[u8],
) -> Result<(Option<Device>, AuthResult), RuleError> {
    if let Credentials::Md5 {
        message,
        timestamp_ms,
        sign,
        window,
    } = credentials
    {
        let (Some(timestamp), Some(sign)) = (timestamp_ms, sign) else {
            return Ok((None, AuthResult::MissingCredentials));
        };
        let (devices, now) = device_rows::all_with_clock(conn)?;
        // Every secret is tried, each compared in constant time.
        let Some(device) = devices
            .into_iter()
            .find(|d| verify_md5_sign(message, d.secret.expose(), sign))
        else {
            return Ok((None, AuthResult::BadSignature));
        };
        let auth = if !millis_within(timestamp, now, *window) {
            AuthResult::StaleTimestamp
        } else if !device.enabled {
            AuthResult::DeviceDisabled
        } else {
            AuthResult::Ok
        };
        return Ok((Some(device), auth));
    }
    let Some(device_id) = credentials.device_id() else {
        return Ok((None, AuthResult::MissingCredentials));
    };
    let (device, now) = device_rows::find_with_clock(conn, device_id)?;
    let auth = match credentials {
        Credentials::Signed {
            device_id,
            timestamp,
            signature,
        } => check_signed(
            device.as_ref(),
            device_id.as_deref(),
            timestamp.as_deref(),
            signature.as_deref(),
            body,
            now,
        ),
        Credentials::Forwarder {
            timestamp_ms,
            sign,
            window,
            ..
        } => match (device.as_ref(), timestamp_ms, sign) {
            (_, None, _) | (_, _, None) => AuthResult::MissingCredentials,
            (None, _, _) => AuthResult::UnknownDevice,
            (Some(device), Some(timestamp), Some(sign)) => {
                if !verify_forwarder_sign(device.secret.expose(), timestamp, sign) {
                    AuthResult::BadSignature
                } else if !millis_within(timestamp, now, *window) {
                    AuthResult::StaleTimestamp
                } else if !device.enabled {
                    AuthResult::DeviceDisabled
                } else {
                    let ms = timestamp.parse::<i64>().unwrap_or_default();
                    // Recorded as the service writes it: the sign has several spellings that
                    // verify (encoded or not, `+` or space), and each must count as this one.
                    let canonical = forwarder_sign(device.secret.expose(), timestamp);
                    match forwarder_rows::record_use(
                        conn,
                        DeviceId(&device.id),
                        ms,
                        &canonical,
                        body_sha256,
                    )? {
                        Use::First | Use::SameBody => AuthResult::Ok,
                        Use::OtherBody => AuthResult::Replayed,
                    }
                }
            }
        },
        Credentials::Md5 { .. } => AuthResult::MissingCredentials,
    };
    Ok((device, auth))
}
