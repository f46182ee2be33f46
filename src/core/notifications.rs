//! Payment notifications from listener devices: storing each one raw before anything else,
//! authenticating it, reading the reported payment, and matching it to the one order it pays,
//! as of the moment it arrived.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::orders::pay_locked;
use crate::core::secrets::{new_id, sha256};
use crate::core::signing::{timestamp_within_window, verify_device_signature};
use crate::db::devices::{self as device_rows, Device};
use crate::db::notifications::{self as raw_rows, NewRawNotification};
use crate::db::payments::{self as payment_rows, NewPayment, Payment};
use crate::db::{orders as order_rows, payees as payee_rows, transaction_with_retry};
use crate::domain::{AuthResult, Channel, PaymentResult};
use crate::error::ApiError;
use crate::money::{Amount, AmountInput};

/// The three headers a listener signs its requests with, as received (any may be missing).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceCredentials {
    pub device_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
}

/// Checks a request's credentials against the device row and the database clock.
/// The signature is checked before the window, so only the real device learns about its clock.
pub fn check_credentials(
    device: Option<&Device>,
    credentials: &DeviceCredentials,
    body: &[u8],
    now: DateTime<Utc>,
) -> AuthResult {
    let (Some(_), Some(timestamp), Some(signature)) = (
        &credentials.device_id,
        &credentials.timestamp,
        &credentials.signature,
    ) else {
        return AuthResult::MissingCredentials;
    };
    let Some(device) = device else {
        return AuthResult::UnknownDevice;
    };
    if !verify_device_signature(&device.secret, timestamp, body, signature) {
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
pub fn refusal(result: AuthResult) -> ApiError {
    match result {
        AuthResult::StaleTimestamp => ApiError::Unauthorized(format!(
            "X-Solopay-Timestamp is more than {} s away from the server clock",
            crate::core::signing::SIGNATURE_WINDOW_SECS
        )),
        AuthResult::DeviceDisabled => ApiError::Forbidden("this device is disabled".into()),
        AuthResult::MissingCredentials => ApiError::Unauthorized(
            "X-Solopay-Device, X-Solopay-Timestamp and X-Solopay-Signature are required".into(),
        ),
        AuthResult::Ok | AuthResult::UnknownDevice | AuthResult::BadSignature => {
            ApiError::Unauthorized("unknown device or invalid signature".into())
        }
    }
}

/// How much of a refused request's body is kept (with the length and digest of the whole).
const REFUSED_BODY_BYTES: usize = 1024;

/// A notification request as stored, before anything else is done with it.
#[derive(Debug)]
struct Stored {
    raw_id: i64,
    received_at: DateTime<Utc>,
    /// The authenticated device, or why the request was refused.
    device: Result<Device, AuthResult>,
}

/// Authenticates a notification request and stores it, whatever the outcome, in one
/// transaction; an authenticated request also marks its device as seen.
fn store_raw(
    conn: &mut PgConnection,
    source: &str,
    credentials: &DeviceCredentials,
    body: &[u8],
    remote_addr: Option<&str>,
) -> Result<Stored, ApiError> {
    let headers = serde_json::to_value(credentials).map_err(ApiError::internal)?;
    let digest = sha256(body);
    let length = i32::try_from(body.len()).unwrap_or(i32::MAX);
    transaction_with_retry(conn, |conn| {
        let (device, auth) = match credentials.device_id.as_deref() {
            Some(id) => {
                let (device, now) = device_rows::find_with_clock(conn, id)?;
                let auth = check_credentials(device.as_ref(), credentials, body, now);
                (device, auth)
            }
            None => (None, AuthResult::MissingCredentials),
        };
        let kept = if auth == AuthResult::Ok {
            body
        } else {
            &body[..body.len().min(REFUSED_BODY_BYTES)]
        };
        let (raw_id, received_at) = raw_rows::insert(
            conn,
            &NewRawNotification {
                source,
                device_id: credentials.device_id.as_deref(),
                auth_result: auth,
                auth_headers: &headers,
                body: kept,
                body_length: length,
                body_sha256: &digest,
                remote_addr,
            },
        )?;
        let device = match (auth, device) {
            (AuthResult::Ok, Some(device)) => {
                device_rows::record_notification(conn, &device.id)?;
                Ok(device)
            }
            (refused, _) => Err(refused),
        };
        Ok(Stored {
            raw_id,
            received_at,
            device,
        })
    })
}

/// Receives a notification request: stores it raw, refuses it if its credentials do not check
/// out, otherwise reads and matches the payment it reports.
pub fn receive_notification(
    conn: &mut PgConnection,
    source: &str,
    credentials: &DeviceCredentials,
    body: &[u8],
    remote_addr: Option<&str>,
) -> Result<Payment, ApiError> {
    let stored = store_raw(conn, source, credentials, body, remote_addr)?;
    let device = stored.device.map_err(refusal)?;
    process_stored(conn, &device.id, stored.raw_id, stored.received_at, body)
}

/// The body of `POST /notify`, as stored and re-read by the sweep.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyBody {
    /// The listener's id for this notification, unique per device (1–128 characters). A repeat
    /// is answered like the first time and changes nothing.
    #[schema(example = "n-1732560000123-7")]
    pub notification_id: String,
    pub channel: Channel,
    /// The amount received. Required until raw-text reading is available.
    #[schema(value_type = Option<AmountInput>)]
    pub amount: Option<AmountInput>,
    /// When the phone saw the notification.
    pub received_at: Option<DateTime<Utc>>,
    /// The Android package that posted the notification, e.g. `com.tencent.mm`.
    #[schema(example = "com.tencent.mm")]
    pub package: Option<String>,
    #[schema(example = "微信支付")]
    pub title: Option<String>,
    #[schema(example = "微信支付收款10.02元(朋友到店)")]
    pub text: Option<String>,
}

/// A payment a device reported, validated.
#[derive(Debug, Clone)]
pub struct ReportedPayment {
    pub notification_id: String,
    pub channel: Channel,
    pub amount: Amount,
    pub received_at: Option<DateTime<Utc>>,
    pub package: Option<String>,
    pub title: Option<String>,
    pub text: Option<String>,
}

const MAX_TEXT_CHARS: usize = 4096;

/// Reads a stored notification body into the payment it reports.
pub fn read_body(body: &[u8]) -> Result<ReportedPayment, ApiError> {
    let parsed: NotifyBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid notification body: {e}")))?;
    let id_len = parsed.notification_id.chars().count();
    if !(1..=128).contains(&id_len) || parsed.notification_id.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "notification_id must be 1 to 128 printable characters".into(),
        ));
    }
    for (name, value) in [
        ("package", &parsed.package),
        ("title", &parsed.title),
        ("text", &parsed.text),
    ] {
        let Some(value) = value else { continue };
        if value.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::InvalidRequest(format!(
                "{name} must be at most {MAX_TEXT_CHARS} characters"
            )));
        }
        // Postgres text cannot hold U+0000.
        if value.contains('\0') {
            return Err(ApiError::InvalidRequest(format!(
                "{name} must not contain NUL characters"
            )));
        }
    }
    let amount = match &parsed.amount {
        // A payment really happened, whatever its size: only the shape is checked here.
        Some(amount) => amount.parse(Amount::storage_limit())?,
        None => {
            return Err(ApiError::UnparseableNotification(
                "amount is required: reading it from title/text is not available yet".into(),
            ));
        }
    };
    Ok(ReportedPayment {
        notification_id: parsed.notification_id,
        channel: parsed.channel,
        amount,
        received_at: parsed.received_at,
        package: parsed.package,
        title: parsed.title,
        text: parsed.text,
    })
}

/// Records a reported payment and matches it, in one transaction: it pays the order of the
/// device's payee for the channel that held this payable amount when the notification arrived,
/// if that order is still pending or expired; otherwise it is kept unmatched for the operator.
/// A notification id the device reported before returns the first payment, unchanged.
fn record_payment(
    conn: &mut PgConnection,
    device_id: &str,
    raw_id: i64,
    received_at: DateTime<Utc>,
    reported: &ReportedPayment,
) -> Result<Payment, ApiError> {
    transaction_with_retry(conn, |conn| {
        let payee = payee_rows::find_by_device_and_channel(conn, device_id, reported.channel)?;
        let payment_id = new_id("pay");
        let inserted = payment_rows::insert_if_new(
            conn,
            &NewPayment {
                id: &payment_id,
                device_id,
                notification_id: &reported.notification_id,
                channel: reported.channel,
                amount: Some(reported.amount.as_decimal()),
                package: reported.package.as_deref(),
                title: reported.title.as_deref(),
                text: reported.text.as_deref(),
                reported_at: reported.received_at,
                payee_id: payee.as_ref().map(|p| p.id.as_str()),
                result: PaymentResult::Unmatched,
                notification_row: raw_id,
            },
        )?;
        let Some(payment) = inserted else {
            let first =
                payment_rows::find_by_notification_id(conn, device_id, &reported.notification_id)?;
            raw_rows::set_payment(conn, raw_id, &first.id)?;
            return Ok(first);
        };
        raw_rows::set_payment(conn, raw_id, &payment.id)?;
        let Some(payee) = payee else {
            return Ok(payment);
        };
        let payable =
            order_rows::lock_payable(conn, &payee.id, reported.amount.as_decimal(), received_at)?;
        let Some((order, overdue)) = payable else {
            return Ok(payment);
        };
        let paid = pay_locked(conn, &order, overdue)?;
        Ok(payment_rows::set_matched(conn, &payment.id, &paid.id)?)
    })
}

/// Turns a stored, authenticated notification into a payment, or records why its body was
/// refused. Used by the request itself and by the sweep for requests that died half-way.
fn process_stored(
    conn: &mut PgConnection,
    device_id: &str,
    raw_id: i64,
    received_at: DateTime<Utc>,
    body: &[u8],
) -> Result<Payment, ApiError> {
    match read_body(body) {
        Ok(reported) => record_payment(conn, device_id, raw_id, received_at, &reported),
        Err(refused) => {
            raw_rows::set_rejection(conn, raw_id, &format!("{}: {refused}", refused.code()))?;
            Err(refused)
        }
    }
}

/// Finishes authenticated notifications whose request died between storing and matching
/// (older than `age`, so that live requests finish their own), matching each as of its arrival.
/// Two instances finishing the same one is harmless: the payment's unique notification id makes
/// the second a replay. A notification that cannot be processed is marked with the error, so
/// that it goes to the operator instead of stalling the ones behind it. Returns how many were
/// finished; stops early only when the database is unavailable.
pub fn finish_stranded(
    conn: &mut PgConnection,
    age: Duration,
    limit: i64,
) -> Result<usize, ApiError> {
    let mut finished = 0;
    for raw in raw_rows::find_stranded(conn, age, limit)? {
        let Some(device_id) = raw.device_id.as_deref() else {
            continue;
        };
        match process_stored(conn, device_id, raw.id, raw.received_at, &raw.body) {
            Err(e @ (ApiError::Unavailable(_) | ApiError::Aborted(_))) => return Err(e),
            Err(ApiError::Internal(error)) => {
                tracing::error!(notification = raw.id, %error, "cannot finish a stored notification");
                raw_rows::set_rejection(conn, raw.id, &format!("internal_error: {error}"))?;
            }
            // A refused body has been recorded as such.
            Ok(_) | Err(_) => finished += 1,
        }
    }
    Ok(finished)
}
