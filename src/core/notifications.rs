//! Payment notifications from listener devices and forwarders: storing each one raw before
//! anything else, authenticating it, deciding whether it is a trustworthy payment of one amount
//! ([`assess`]), and matching it to the one order it pays, as of the moment it arrived.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::notification_text::{self, Refusal, channel_of_package, official_packages};
use crate::core::orders::pay_locked;
use crate::core::secrets::{new_id, sha256};
use crate::core::signing::{
    forwarder_sign, timestamp_within_window, verify_device_signature, verify_forwarder_sign,
    verify_md5_sign,
};
use crate::db::devices::{self as device_rows, Device};
use crate::db::forwarder_signatures::{self as forwarder_rows, Use};
use crate::db::notifications::{self as raw_rows, NewRawNotification};
use crate::db::payments::{self as payment_rows, NewPayment, Payment};
use crate::db::{orders as order_rows, payees as payee_rows, transaction_with_retry};
use crate::domain::{AuthResult, Channel, PaymentResult};
use crate::error::ApiError;
use crate::money::{Amount, AmountInput};

/// How a request proves which device sent it, as received (any part may be missing).
#[derive(Debug, Clone, Serialize)]
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
    fn device_id(&self) -> Option<&str> {
        match self {
            Credentials::Signed { device_id, .. } => device_id.as_deref(),
            Credentials::Forwarder { device_id, .. } => Some(device_id),
            Credentials::Md5 { .. } => None,
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
pub fn refusal(result: AuthResult) -> ApiError {
    match result {
        AuthResult::StaleTimestamp => ApiError::Unauthorized(
            "the timestamp is too far from the server clock (replayed, or the phone's clock is off)"
                .into(),
        ),
        AuthResult::DeviceDisabled => ApiError::Forbidden("this device is disabled".into()),
        AuthResult::MissingCredentials => ApiError::Unauthorized(
            "the device, timestamp and signature are required".into(),
        ),
        AuthResult::Replayed => ApiError::Unauthorized(
            "this timestamp and sign were already used for another message".into(),
        ),
        AuthResult::Ok | AuthResult::UnknownDevice | AuthResult::BadSignature => {
            ApiError::Unauthorized("unknown device or invalid signature".into())
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
) -> Result<(Option<Device>, AuthResult), ApiError> {
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
                    match forwarder_rows::record_use(conn, &device.id, ms, &canonical, body_sha256)?
                    {
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

/// A notification as the service reads it, whichever way it came; stored with the raw request
/// (`reading`) and re-read from there by the sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub notification_id: String,
    /// As the listener claimed it; a forwarder's comes from the package.
    pub channel: Option<Channel>,
    /// As the listener read it, if it did.
    pub amount: Option<Amount>,
    pub package: Option<String>,
    pub title: Option<String>,
    pub text: Option<String>,
    /// When the phone saw it (as the phone says).
    pub reported_at: Option<DateTime<Utc>>,
    /// Whether the source vouches for a notification that names no package: a signed listener
    /// does (it reports what it read), a generic forwarder does not.
    pub listener_vouches: bool,
}

/// The body of `POST /notify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyBody {
    /// The listener's id for this notification, unique per device (1–128 characters). A repeat
    /// is answered like the first time and changes nothing.
    #[schema(example = "n-1732560000123-7")]
    pub notification_id: String,
    pub channel: Channel,
    /// The amount received, if the listener read it. Without it, solopay reads `title` and `text`.
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

const MAX_TEXT_CHARS: usize = 4096;

/// Checks the free-text parts every source shares.
pub fn check_notification_fields(
    notification_id: &str,
    fields: [(&str, Option<&str>); 3],
) -> Result<(), ApiError> {
    let id_len = notification_id.chars().count();
    if !(1..=128).contains(&id_len) || notification_id.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "notification_id must be 1 to 128 printable characters".into(),
        ));
    }
    for (name, value) in fields {
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
    Ok(())
}

/// Reads a `/notify` body.
pub fn read_notify_body(body: &[u8]) -> Result<Notification, ApiError> {
    let parsed: NotifyBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid notification body: {e}")))?;
    check_notification_fields(
        &parsed.notification_id,
        [
            ("package", parsed.package.as_deref()),
            ("title", parsed.title.as_deref()),
            ("text", parsed.text.as_deref()),
        ],
    )?;
    let amount = match &parsed.amount {
        // A payment really happened, whatever its size: only the shape is checked here.
        Some(amount) => Some(amount.parse(Amount::storage_limit())?),
        None => None,
    };
    Ok(Notification {
        notification_id: parsed.notification_id,
        channel: Some(parsed.channel),
        amount,
        package: parsed.package,
        title: parsed.title,
        text: parsed.text,
        reported_at: parsed.received_at,
        listener_vouches: true,
    })
}

/// What a device may report payments for.
#[derive(Debug, Clone)]
pub struct Trust {
    pub packages: Vec<String>,
    /// The operator trusts this device's notifications that name no package.
    pub unlabelled: bool,
}

impl Trust {
    /// The operator's list for the device, or else the official packages of the channels of
    /// its payees.
    pub fn of_device(conn: &mut PgConnection, device: &Device) -> Result<Trust, ApiError> {
        let unlabelled = device.trust_unlabelled;
        if let Some(packages) = device.listed_packages() {
            return Ok(Trust {
                packages,
                unlabelled,
            });
        }
        let mut packages = Vec::new();
        for channel in device_rows::payee_channels(conn, &device.id)? {
            packages.extend(official_packages(channel).iter().map(|p| p.to_string()));
        }
        Ok(Trust {
            packages,
            unlabelled,
        })
    }
}

/// What a notification is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A trustworthy payment of one amount: match it.
    Payment { channel: Channel, amount: Amount },
    /// Kept for the operator, never matched.
    Kept {
        result: PaymentResult,
        reason: String,
        channel: Option<Channel>,
        amount: Option<Amount>,
    },
}

fn kept(
    result: PaymentResult,
    reason: String,
    channel: Option<Channel>,
    amount: Option<Amount>,
) -> Verdict {
    Verdict::Kept {
        result,
        reason,
        channel,
        amount,
    }
}

/// Decides whether a notification is a trustworthy payment of one amount. Only packages the
/// device may report for count; the channel the listener claims must be the app's; where a text
/// is given it is read (table of known wordings) and must agree with an amount the listener
/// read; without an amount, the text must yield exactly one.
pub fn assess(notification: &Notification, trust: &Trust) -> Verdict {
    let n = notification;
    let claimed = n.channel;
    match &n.package {
        Some(package) if !trust.packages.iter().any(|p| p == package) => {
            return kept(
                PaymentResult::Untrusted,
                format!("notifications from {package} are not trusted for this device"),
                claimed,
                n.amount,
            );
        }
        None if !n.listener_vouches && !trust.unlabelled => {
            return kept(
                PaymentResult::Untrusted,
                "the notification does not say which app posted it".into(),
                claimed,
                n.amount,
            );
        }
        _ => {}
    }
    let of_package = n.package.as_deref().and_then(channel_of_package);
    let channel = match (claimed, of_package) {
        (Some(claimed), Some(app)) if claimed != app => {
            return kept(
                PaymentResult::Ambiguous,
                format!("the channel says {claimed} but the app is {app}'s"),
                Some(claimed),
                n.amount,
            );
        }
        (Some(channel), _) | (None, Some(channel)) => channel,
        (None, None) => {
            return kept(
                PaymentResult::Unparsed,
                "cannot tell which channel the payment came through".into(),
                None,
                n.amount,
            );
        }
    };

    let has_text = n.title.is_some() || n.text.is_some();
    // A package the operator allowed that is not a payment app is read with the channel's
    // wordings.
    let package = n
        .package
        .as_deref()
        .filter(|p| channel_of_package(p).is_some())
        .unwrap_or(official_packages(channel)[0]);
    let reading =
        has_text.then(|| notification_text::read(package, n.title.as_deref(), n.text.as_deref()));
    match (n.amount, reading) {
        (Some(amount), None) => Verdict::Payment { channel, amount },
        (Some(amount), Some(Ok(read))) if read.amount == amount => {
            Verdict::Payment { channel, amount }
        }
        (Some(amount), Some(Ok(read))) => kept(
            PaymentResult::Ambiguous,
            format!("the amount says {amount} but the text says {}", read.amount),
            Some(channel),
            Some(amount),
        ),
        // A text without any amount (a wording not known yet) does not contradict the listener.
        (Some(amount), Some(Err(Refusal::NoAmount))) => Verdict::Payment { channel, amount },
        (Some(amount), Some(Err(refused))) => kept(
            PaymentResult::Ambiguous,
            format!("the amount says {amount} but the text is not a payment of it: {refused}"),
            Some(channel),
            Some(amount),
        ),
        (None, None) => kept(
            PaymentResult::Unparsed,
            "neither an amount nor a text to read one from".into(),
            Some(channel),
            None,
        ),
        (None, Some(Ok(read))) => Verdict::Payment {
            channel,
            amount: read.amount,
        },
        (None, Some(Err(Refusal::Ambiguous(amounts)))) => kept(
            PaymentResult::Ambiguous,
            Refusal::Ambiguous(amounts).to_string(),
            Some(channel),
            None,
        ),
        (None, Some(Err(refused))) => kept(
            PaymentResult::Unparsed,
            refused.to_string(),
            Some(channel),
            None,
        ),
    }
}

/// Replaces U+0000 in every string of a JSON value with U+FFFD.
fn replace_nul(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        serde_json::Value::Array(items) => items.iter_mut().for_each(replace_nul),
        serde_json::Value::Object(map) => map.values_mut().for_each(replace_nul),
        _ => {}
    }
}

/// How much of a refused request's body is kept (with the length and digest of the whole).
const REFUSED_BODY_BYTES: usize = 1024;

/// Receives a notification request: stores it (with its reading, or why it could not be read)
/// whatever its credentials, then, if they check out and it could be read, records and matches
/// the payment it reports.
pub fn receive_notification(
    conn: &mut PgConnection,
    source: &str,
    credentials: &Credentials,
    body: &[u8],
    remote_addr: Option<&str>,
    read: impl Fn(&[u8]) -> Result<Notification, ApiError>,
) -> Result<Payment, ApiError> {
    let reading = read(body);
    let stored_reading = match &reading {
        Ok(notification) => Some(serde_json::to_value(notification).map_err(ApiError::internal)?),
        Err(_) => None,
    };
    let rejection = reading
        .as_ref()
        .err()
        .map(|refused| format!("{}: {refused}", refused.code()).replace('\0', "\u{FFFD}"));
    // Stored as received, except U+0000, which Postgres text cannot hold.
    let mut headers = serde_json::to_value(credentials).map_err(ApiError::internal)?;
    replace_nul(&mut headers);
    let digest = sha256(body);
    let length = i32::try_from(body.len()).unwrap_or(i32::MAX);

    let (raw_id, received_at, device) = transaction_with_retry(conn, |conn| {
        let (device, auth) = check_credentials(conn, credentials, body, &digest)?;
        let ok = auth == AuthResult::Ok;
        let device_id = device.as_ref().map(|d| d.id.as_str());
        let (raw_id, received_at) = raw_rows::insert(
            conn,
            &NewRawNotification {
                source,
                device_id: credentials.device_id().or(device_id),
                auth_result: auth,
                auth_headers: &headers,
                body: if ok {
                    body
                } else {
                    &body[..body.len().min(REFUSED_BODY_BYTES)]
                },
                body_length: length,
                body_sha256: &digest,
                remote_addr,
                reading: stored_reading.as_ref().filter(|_| ok),
                rejection: rejection.as_deref().filter(|_| ok),
            },
        )?;
        let device = match (auth, device) {
            (AuthResult::Ok, Some(device)) => {
                device_rows::record_notification(conn, &device.id)?;
                Ok(device)
            }
            (refused, _) => Err(refused),
        };
        Ok((raw_id, received_at, device))
    })?;
    let device = device.map_err(refusal)?;
    let notification = reading?;
    record_payment(conn, &device, raw_id, received_at, &notification)
}

/// Records a notification's payment and matches it, in one transaction. A trustworthy payment
/// pays the order of the device's payee for the channel that held this payable amount when the
/// notification arrived, if that order is still pending or expired; anything else is kept for
/// the operator. A notification id the device reported before returns the first payment.
fn record_payment(
    conn: &mut PgConnection,
    device: &Device,
    raw_id: i64,
    received_at: DateTime<Utc>,
    notification: &Notification,
) -> Result<Payment, ApiError> {
    let trust = Trust::of_device(conn, device)?;
    let verdict = assess(notification, &trust);
    let (result, reason, channel, amount) = match &verdict {
        Verdict::Payment { channel, amount } => (
            PaymentResult::Unmatched,
            None,
            Some(*channel),
            Some(*amount),
        ),
        Verdict::Kept {
            result,
            reason,
            channel,
            amount,
        } => (*result, Some(reason.as_str()), *channel, *amount),
    };
    transaction_with_retry(conn, |conn| {
        let payee = match channel {
            Some(channel) => payee_rows::find_by_device_and_channel(conn, &device.id, channel)?,
            None => None,
        };
        let payment_id = new_id("pay");
        let inserted = payment_rows::insert_if_new(
            conn,
            &NewPayment {
                id: &payment_id,
                device_id: &device.id,
                notification_id: &notification.notification_id,
                channel,
                amount: amount.map(|a| a.as_decimal()),
                package: notification.package.as_deref(),
                title: notification.title.as_deref(),
                text: notification.text.as_deref(),
                reported_at: notification.reported_at,
                payee_id: payee.as_ref().map(|p| p.id.as_str()),
                result,
                notification_row: raw_id,
                reason,
            },
        )?;
        let Some(payment) = inserted else {
            let first = payment_rows::find_by_notification_id(
                conn,
                &device.id,
                &notification.notification_id,
            )?;
            raw_rows::set_payment(conn, raw_id, &first.id)?;
            return Ok(first);
        };
        raw_rows::set_payment(conn, raw_id, &payment.id)?;
        let (Verdict::Payment { amount, .. }, Some(payee)) = (&verdict, payee) else {
            return Ok(payment);
        };
        let arrived_at =
            raw_rows::first_unprocessed_arrival(conn, &device.id, &notification.notification_id)?
                .map_or(received_at, |first| first.min(received_at));
        let payable = order_rows::lock_payable(conn, &payee.id, amount.as_decimal(), arrived_at)?;
        let Some((order, overdue)) = payable else {
            return Ok(payment);
        };
        let paid = pay_locked(conn, &order, overdue, Some(arrived_at))?;
        Ok(payment_rows::set_matched(conn, &payment.id, &paid.id)?)
    })
}

/// The answer a recorded payment gets: what became of it, or `422 unparseable_notification`
/// when no amount could be established.
pub fn answer(payment: Payment) -> Result<Payment, ApiError> {
    let unreadable = payment.result == PaymentResult::Unparsed
        || (payment.result == PaymentResult::Ambiguous && payment.amount.is_none());
    if unreadable {
        return Err(ApiError::UnparseableNotification(format!(
            "no single amount could be read ({}); the notification is kept for the operator \
             as payment {}",
            payment.reason.as_deref().unwrap_or("no reason recorded"),
            payment.id
        )));
    }
    Ok(payment)
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
        let outcome = (|| {
            let device_id = raw.device_id.as_deref().unwrap_or_default();
            let device = device_rows::find_with_clock(conn, device_id)?
                .0
                .ok_or_else(|| ApiError::internal("the device of a stored notification is gone"))?;
            let notification = match &raw.reading {
                Some(reading) => serde_json::from_value(reading.clone())
                    .map_err(|e| ApiError::internal(format!("unreadable stored reading: {e}")))?,
                None => read_notify_body(&raw.body)?,
            };
            record_payment(conn, &device, raw.id, raw.received_at, &notification)
        })();
        match outcome {
            Ok(_) => finished += 1,
            Err(e @ (ApiError::Unavailable(_) | ApiError::Aborted(_))) => return Err(e),
            Err(error) => {
                tracing::warn!(notification = raw.id, %error, "cannot finish a stored notification");
                raw_rows::set_rejection(conn, raw.id, &format!("{}: {error}", error.code()))?;
            }
        }
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wechat_trust() -> Trust {
        Trust {
            packages: official_packages(Channel::Wechat)
                .iter()
                .map(|p| p.to_string())
                .collect(),
            unlabelled: false,
        }
    }

    fn notification(
        amount: Option<&str>,
        package: Option<&str>,
        title: &str,
        text: &str,
    ) -> Notification {
        Notification {
            notification_id: "n".into(),
            channel: Some(Channel::Wechat),
            amount: amount.map(|a| Amount::parse(a, Amount::storage_limit()).unwrap()),
            package: package.map(String::from),
            title: Some(title.to_string()).filter(|t| !t.is_empty()),
            text: Some(text.to_string()).filter(|t| !t.is_empty()),
            reported_at: None,
            listener_vouches: true,
        }
    }

    fn payment(amount: &str) -> Verdict {
        Verdict::Payment {
            channel: Channel::Wechat,
            amount: Amount::parse(amount, Amount::storage_limit()).unwrap(),
        }
    }

    fn result_of(verdict: &Verdict) -> Option<PaymentResult> {
        match verdict {
            Verdict::Payment { .. } => None,
            Verdict::Kept { result, .. } => Some(*result),
        }
    }

    #[test]
    fn an_amount_alone_or_agreeing_with_the_text_is_a_payment() {
        let trust = wechat_trust();
        assert_eq!(
            assess(&notification(Some("10.02"), None, "", ""), &trust),
            payment("10.02")
        );
        let agreeing = notification(
            Some("10.02"),
            Some("com.tencent.mm"),
            "微信支付",
            "微信支付收款10.02元(朋友到店)",
        );
        assert_eq!(assess(&agreeing, &trust), payment("10.02"));
        // A wording not known yet does not contradict the listener.
        let unknown_wording = notification(
            Some("3.00"),
            Some("com.tencent.mm"),
            "微信支付",
            "新版本的收款提示",
        );
        assert_eq!(assess(&unknown_wording, &trust), payment("3.00"));
    }

    #[test]
    fn without_an_amount_the_text_must_yield_exactly_one() {
        let trust = wechat_trust();
        let read = notification(
            None,
            Some("com.tencent.mm"),
            "微信支付",
            "微信支付收款1,234.56元(朋友到店)",
        );
        assert_eq!(assess(&read, &trust), payment("1234.56"));
        // No package: read with the channel's app.
        let unlabelled = notification(None, None, "微信支付", "个人收款码到账¥0.03");
        assert_eq!(assess(&unlabelled, &trust), payment("0.03"));
        let nothing = notification(
            None,
            Some("com.tencent.mm"),
            "微信支付",
            "微信支付收款元(朋友到店)",
        );
        assert_eq!(
            result_of(&assess(&nothing, &trust)),
            Some(PaymentResult::Unparsed)
        );
        assert_eq!(
            result_of(&assess(&notification(None, None, "", ""), &trust)),
            Some(PaymentResult::Unparsed)
        );
    }

    #[test]
    fn disagreement_is_kept_for_the_operator() {
        let trust = wechat_trust();
        for (amount, text) in [
            (Some("10.00"), "微信支付收款10.02元(朋友到店)"),
            (Some("1430.00"), "上一笔播报：微信支付收款1430.00元"),
            (None, "微信支付收款3.00元，另有一笔收款4.00元"),
        ] {
            let verdict = assess(
                &notification(amount, Some("com.tencent.mm"), "微信支付", text),
                &trust,
            );
            assert!(
                matches!(
                    result_of(&verdict),
                    Some(PaymentResult::Ambiguous | PaymentResult::Unparsed)
                ),
                "{text}: {verdict:?}"
            );
        }
        let mut wrong_channel =
            notification(Some("1.00"), Some("com.eg.android.AlipayGphone"), "", "");
        wrong_channel.channel = Some(Channel::Wechat);
        let trust_both = Trust {
            packages: vec![
                "com.eg.android.AlipayGphone".into(),
                "com.tencent.mm".into(),
            ],
            unlabelled: false,
        };
        assert_eq!(
            result_of(&assess(&wrong_channel, &trust_both)),
            Some(PaymentResult::Ambiguous)
        );
    }

    #[test]
    fn only_trusted_apps_count() {
        let trust = wechat_trust();
        let sms = notification(
            Some("140.00"),
            Some("com.android.mms"),
            "10086",
            "你已成功收款140.00元",
        );
        assert_eq!(
            result_of(&assess(&sms, &trust)),
            Some(PaymentResult::Untrusted)
        );
        let alipay = notification(Some("1.00"), Some("com.eg.android.AlipayGphone"), "", "");
        assert_eq!(
            result_of(&assess(&alipay, &trust)),
            Some(PaymentResult::Untrusted)
        );

        // A forwarder that names no app: only when the operator trusts it.
        let mut unlabelled = notification(None, None, "微信支付", "微信支付收款2.00元");
        unlabelled.listener_vouches = false;
        assert_eq!(
            result_of(&assess(&unlabelled, &trust)),
            Some(PaymentResult::Untrusted)
        );
        let trusting = Trust {
            unlabelled: true,
            ..wechat_trust()
        };
        assert_eq!(assess(&unlabelled, &trusting), payment("2.00"));
    }

    proptest::proptest! {
        #[test]
        fn reading_any_notify_body_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(notification) = read_notify_body(&body) {
                let _ = assess(&notification, &wechat_trust());
            }
        }

        #[test]
        fn assessing_any_text_never_panics(title in "\\PC*", text in "\\PC*", package in "\\PC*") {
            let n = notification(None, Some(&package), &title, &text);
            let _ = assess(&n, &wechat_trust());
        }
    }
}
