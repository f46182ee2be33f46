//! Payment notifications from listener devices and forwarders: storing each one raw before
//! anything else, authenticating it ([`credentials`]), deciding whether it is a trustworthy
//! payment of one amount ([`assess`]), and recording and matching it to the one order it pays,
//! as of the moment it (or the first report of the same payment) arrived ([`matching`]). What a
//! notification is lives in [`model`], the signed listener's body in [`listener`].

mod assess;
mod credentials;
mod listener;
mod matching;
mod model;

use std::time::Duration;

use diesel::PgConnection;

pub use assess::{Trust, Verdict, Withheld, assess};
pub use credentials::{Credentials, check_credentials, check_signed, refusal};
pub use listener::{NotifyBody, read_notify_body};
pub use matching::{same_payment_key, same_payment_window, stored_payment_window};
pub use model::{AndroidMetadata, Notification, check_android_metadata, check_notification_fields};

use crate::core::error::RuleError;
use crate::core::orders::OrderRules;
use crate::core::secrets::new_id;
use crate::core::secrets::sha256;
use crate::db::devices as device_rows;
use crate::db::notifications::{
    self as raw_rows, Commit, NewRawNotification, RawNotification, StoredHeard,
};
use crate::db::payments::{self as payment_rows, NewPayment, Payment};
use crate::db::{StorageError, StorageFailure};
use crate::db::{retry_aborted, transaction_with_retry};
use crate::domain::{AuthResult, NotificationSource, PaymentResult};

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
    rules: &OrderRules,
    source: NotificationSource,
    credentials: &Credentials,
    body: &[u8],
    remote_addr: Option<&str>,
    read: impl Fn(&[u8]) -> Result<Notification, RuleError>,
) -> Result<Payment, RuleError> {
    let reading = read(body);
    let stored_reading = match &reading {
        Ok(notification) => Some(stored_reading_of(notification)?),
        Err(_) => None,
    };
    let rejection = reading
        .as_ref()
        .err()
        .map(|refused| format!("{}: {refused}", refused.code()).replace('\0', "\u{FFFD}"));
    // Stored as received, except U+0000, which Postgres text cannot hold.
    let mut headers = serde_json::to_value(credentials).map_err(RuleError::internal)?;
    replace_nul(&mut headers);
    let digest = sha256(body);
    let key = reading.as_ref().ok().and_then(same_payment_key);
    let length = i32::try_from(body.len()).unwrap_or(i32::MAX);

    // Checked by reading the device, then stored in one statement, with the device marked heard
    // from when it checked out: no transaction around them. A forwarder's sign is recorded as
    // used when it is checked, so a crash before the store leaves it used with nothing stored:
    // a retry of the same body still passes, one with another body under that sign is refused
    // as a replay and kept (the operator sees it), never credited.
    let (device, auth) = retry_aborted(|| check_credentials(conn, credentials, body, &digest))?;
    let ok = auth == AuthResult::Ok;
    let new = NewRawNotification {
        source,
        device_id: credentials
            .device_id()
            .or(device.as_ref().map(|d| d.id.as_str())),
        auth_result: auth,
        auth_headers: &headers,
        body: if ok {
            body
        } else {
            body.get(..REFUSED_BODY_BYTES).unwrap_or(body)
        },
        body_length: length,
        body_sha256: &digest,
        remote_addr,
        reading: stored_reading.as_ref().filter(|_| ok),
        rejection: rejection.as_deref().filter(|_| ok),
        same_payment_key: key.as_deref().filter(|_| ok),
    };
    // A notification that will be matched is stored without waiting for the disk: the
    // matching's commit, flushed, comes before any answer and puts it on disk too (the one wait
    // for the disk a request has, where it had two; `Commit::Unflushed`). One that ends here
    // (refused, unreadable) waits for its own.
    let commit = if reading.is_ok() {
        Commit::Unflushed
    } else {
        Commit::Flushed
    };
    let stored = match (&device, ok) {
        (Some(device), true) => retry_aborted(|| {
            raw_rows::insert_heard(conn, &new, &device.id, commit).map_err(RuleError::from)
        })?,
        _ => {
            let (id, received_at) =
                retry_aborted(|| raw_rows::insert(conn, &new).map_err(RuleError::from))?;
            StoredHeard {
                id,
                received_at,
                offline_since: None,
                payees: Vec::new(),
            }
        }
    };
    let device = match (auth, device) {
        (AuthResult::Ok, Some(device)) => device,
        // Stored flushed: only an authenticated one is stored unflushed.
        (refused, _) => return Err(refusal(refused)),
    };
    if let Some(since) = stored.offline_since {
        // Of the notifications (and heartbeats) that found the device told offline, the one
        // that clears the mark tells the owner it is back. When that fails, or the service stops
        // first, the mark stays for the next one to tell; the payment is matched all the same.
        let told = transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
            if device_rows::clear_offline_mark(conn, &device.id, since)? {
                crate::core::alerts::device_back(conn, &device, since)?;
            }
            Ok(())
        });
        if let Err(error) = told {
            tracing::warn!(device = %device.id, %error, "cannot tell that a device is back yet");
        }
    }
    let notification = reading?;
    let report = matching::Report {
        raw_id: stored.id,
        received_at: stored.received_at,
        signed_at: credentials.signed_at(),
        notification: &notification,
        same_payment_key: key.as_deref(),
        body_sha256: &digest,
    };
    let recorded = matching::record_payment(conn, rules, &device, &stored.payees, &report);
    if recorded.is_err()
        && commit == Commit::Unflushed
        && let Err(error) =
            retry_aborted(|| raw_rows::flush(conn, stored.id).map_err(RuleError::from))
    {
        // Not known to be on disk: answered as a failure of the storage (5xx), which its sender
        // retries, whatever the matching's own error was (a 4xx is not retried).
        tracing::warn!(notification = stored.id, %error, "cannot flush a stored notification");
        return Err(error);
    }
    recorded
}

/// The reading stored with a notification: the notification as read, and what it would pay
/// (`would_pay`: its channel and amount, or `null` when it can pay nothing,
/// [`assess::could_pay`]), which the matching of other reports reads while this one waits to
/// be decided. The key is the service's own: a listener's body is read into fixed fields and
/// cannot set it.
fn stored_reading_of(notification: &Notification) -> Result<serde_json::Value, RuleError> {
    let mut stored = serde_json::to_value(notification).map_err(RuleError::internal)?;
    let would_pay = assess::could_pay(notification)
        .map(|(channel, amount)| serde_json::json!({"channel": channel, "amount": amount}));
    if let serde_json::Value::Object(fields) = &mut stored {
        fields.insert(
            "would_pay".into(),
            would_pay.unwrap_or(serde_json::Value::Null),
        );
    }
    Ok(stored)
}

/// The answer a recorded payment gets: what became of it, or `422 unparseable_notification`
/// when no amount could be established.
pub fn refuse_unreadable(payment: Payment) -> Result<Payment, RuleError> {
    let unreadable = payment.result == PaymentResult::Unparsed
        || (payment.result == PaymentResult::Ambiguous && payment.amount.is_none());
    if unreadable {
        return Err(RuleError::UnparseableNotification(format!(
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
/// the second a replay. A notification that cannot be processed is kept for the operator (see
/// [`keep_unfinished`]) instead of stalling the ones behind it; one that met a storage failure is
/// tried again next pass, and kept for the operator once it has waited for
/// [`FAILING_FOR_AT_MOST`] (never marked refused while keeping it fails too: a full disk). Returns
/// how many were finished; stops early only when the database is unavailable.
pub fn finish_stranded(
    conn: &mut PgConnection,
    rules: &OrderRules,
    age: Duration,
    limit: i64,
) -> Result<usize, RuleError> {
    let mut finished = 0;
    for raw in raw_rows::find_stranded(conn, age, limit)? {
        let outcome = (|| {
            let device_id = raw.device_id.as_deref().unwrap_or_default();
            let device = device_rows::find_with_clock(conn, device_id)?
                .0
                .ok_or_else(|| {
                    RuleError::internal("the device of a stored notification is gone")
                })?;
            let notification = stored_notification(&raw)?;
            // As stored by `receive_notification`; without it the phone's clock cannot be set
            // against the server's, and only the check by the phone's clock alone applies.
            let signed_at = match serde_json::from_value::<Credentials>(raw.auth_headers.clone()) {
                Ok(credentials) => credentials.signed_at(),
                Err(error) => {
                    tracing::warn!(notification = raw.id, %error, "unreadable stored credentials");
                    None
                }
            };
            let report = matching::Report {
                raw_id: raw.id,
                received_at: raw.received_at,
                signed_at,
                notification: &notification,
                same_payment_key: raw.same_payment_key.as_deref(),
                body_sha256: &raw.body_sha256,
            };
            let payees = device_rows::payees_by_channel(conn, &device.id)?;
            matching::record_payment(conn, rules, &device, &payees, &report)
        })();
        match outcome {
            Ok(_) => finished += 1,
            Err(e) if e.storage_error().is_some_and(StorageError::is_unavailable) => {
                return Err(e);
            }
            // A storage failure that may pass (a full disk): tried again next pass, until the
            // notification has waited for an hour. Then it is kept for the operator if that can
            // be stored (a failure of its own, not of the storage), or else tried again.
            Err(error) if matches!(error.storage_error(), Some(StorageError::Other(_))) => {
                if !waited_too_long(conn, &raw)? {
                    tracing::warn!(notification = raw.id, %error, "cannot finish a stored notification yet");
                    continue;
                }
                match keep_unfinished(conn, &raw, &error) {
                    Ok(()) => {
                        tracing::warn!(notification = raw.id, %error, "kept a stored notification that kept failing for the operator");
                    }
                    Err(failed)
                        if failed
                            .storage_error()
                            .is_some_and(StorageError::is_unavailable) =>
                    {
                        return Err(failed);
                    }
                    Err(failed) => {
                        tracing::warn!(notification = raw.id, %error, %failed, "cannot finish or keep a stored notification yet");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(notification = raw.id, %error, "cannot finish a stored notification");
                if let Err(failed) = keep_unfinished(conn, &raw, &error) {
                    if failed
                        .storage_error()
                        .is_some_and(StorageError::is_unavailable)
                    {
                        return Err(failed);
                    }
                    // Not kept: at least marked, so that it does not come back every pass.
                    tracing::warn!(notification = raw.id, %failed, "cannot keep a stored notification");
                    raw_rows::reject_if_unfinished(
                        conn,
                        raw.id,
                        &format!("{}: {error}", error.code()),
                    )?;
                }
            }
        }
    }
    Ok(finished)
}

/// The notification a stored row holds: its reading, or its body read again (a row stored
/// before readings were kept).
fn stored_notification(raw: &RawNotification) -> Result<Notification, RuleError> {
    match &raw.reading {
        Some(reading) => serde_json::from_value(reading.clone())
            .map_err(|e| RuleError::internal(format!("unreadable stored reading: {e}"))),
        None => read_notify_body(&raw.body),
    }
}

/// How long a stored notification whose finishing meets a storage failure is tried again
/// before it is kept for the operator instead (its payment is then assigned by hand).
const FAILING_FOR_AT_MOST: chrono::Duration = chrono::Duration::hours(1);

/// Whether `raw` arrived more than [`FAILING_FOR_AT_MOST`] ago, by the database clock.
fn waited_too_long(conn: &mut PgConnection, raw: &RawNotification) -> Result<bool, RuleError> {
    let now = crate::db::clock(conn)?;
    Ok(raw.received_at < now - FAILING_FOR_AT_MOST)
}

/// A stored notification the sweep cannot finish (for a reason that will not pass: its body, or
/// a failure that lasted [`FAILING_FOR_AT_MOST`]) still reaches the operator: it is marked with the error and kept as an
/// `unparsed` payment of its device (the error as its reason, the body as its text), listed and
/// assignable like any, and the owner is told. Never a credit.
fn keep_unfinished(
    conn: &mut PgConnection,
    raw: &RawNotification,
    error: &RuleError,
) -> Result<(), RuleError> {
    /// As much of the body as a kept payment shows.
    const TEXT_CHARS: usize = 2000;
    let reason = format!("{}: {error}", error.code());
    let text: String = String::from_utf8_lossy(&raw.body)
        .replace('\0', "\u{FFFD}")
        .chars()
        .take(TEXT_CHARS)
        .collect();
    // Under the notification's own id where it can be read: a copy of it (a retry stored
    // meanwhile, or sent later) then finds this payment and pays nothing, as a repeat of any id
    // does. Under the row's otherwise.
    let notification_id = stored_notification(raw)
        .map_or_else(|_| format!("stored-{}", raw.id), |n| n.notification_id);
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        // Unless a live request or another instance finished it meanwhile.
        if !raw_rows::reject_if_unfinished(conn, raw.id, &reason)? {
            return Ok(());
        }
        let device_id = raw.device_id.as_deref().unwrap_or_default();
        let Some(device) = device_rows::find_with_clock(conn, device_id)?.0 else {
            return Ok(());
        };
        let kept = payment_rows::insert_if_new(
            conn,
            &NewPayment {
                id: &new_id("pay"),
                device_id: &device.id,
                notification_id: &notification_id,
                channel: None,
                amount: None,
                package: None,
                title: None,
                text: Some(&text),
                reported_at: None,
                payee_id: None,
                result: PaymentResult::Unparsed,
                notification_row: raw.id,
                reason: Some(&reason),
                amounts_read: None,
                order_id: None,
                duplicate_of: None,
            },
            None,
        )?;
        if let Some(payment) = kept {
            crate::core::alerts::payment_recorded(conn, &device, &payment)?;
        }
        Ok(())
    })
}
