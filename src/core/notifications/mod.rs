//! Payment notifications from listener devices and forwarders: storing each one raw before
//! anything else, authenticating it ([`credentials`]), deciding whether it is a trustworthy
//! payment of one amount ([`assess`]), and recording and matching it to the one order it pays,
//! as of the moment it (or the first report of the same payment) arrived ([`matching`]).

mod assess;
mod credentials;
mod matching;

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use assess::{Trust, Verdict, Withheld, assess};
pub use credentials::{Credentials, check_credentials, check_signed, refusal};

use crate::core::orders::OrderRules;
use crate::core::reading::{channel_of_package, normalise, unstack};
use crate::core::secrets::sha256;
use crate::db::devices as device_rows;
use crate::db::notifications::{self as raw_rows, NewRawNotification};
use crate::db::payments::Payment;
use crate::db::transaction_with_retry;
use crate::db::{StorageError, StorageFailure};
use crate::domain::{AuthResult, Channel, PaymentResult};
use crate::error::ApiError;
use crate::money::{Amount, AmountInput};

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
    /// Whether two ids from this source are two payments: a listener's own notification ids
    /// are; the ids derived for forwarders and V免签 pushes (which send none that last across
    /// retries) are not, so their reports are told apart by content and time instead.
    #[serde(default = "distinct_by_default")]
    pub distinct_ids: bool,
    /// What the listener read from the Android notification besides its text.
    #[serde(default)]
    pub android: AndroidMetadata,
}

fn distinct_by_default() -> bool {
    true
}

/// Android notification metadata a listener can read and send along (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AndroidMetadata {
    /// `Notification.category`, e.g. `msg` for a message.
    #[schema(example = "status")]
    pub category: Option<String>,
    /// The notification's style (`android.template`), e.g. `android.app.Notification$MessagingStyle`.
    #[schema(example = "android.app.Notification$BigTextStyle")]
    pub template: Option<String>,
    /// The Android notification channel id the app posted it on.
    pub channel_id: Option<String>,
    /// Whether Android files it as a conversation (a shortcut-backed chat).
    pub conversation: Option<bool>,
    /// When the app posted it (`StatusBarNotification.getPostTime()`): two reports with the same
    /// post time and text are one notification, whatever their ids.
    pub posted_at: Option<DateTime<Utc>>,
}

impl AndroidMetadata {
    /// Why the metadata says this is a message (a chat), if it does.
    pub fn marked_as_message(&self) -> Option<String> {
        if self.category.as_deref().map(str::trim) == Some("msg") {
            return Some("category msg".into());
        }
        if let Some(template) = &self.template
            && template.trim().ends_with("MessagingStyle")
        {
            return Some(format!("template {}", template.trim()));
        }
        if self.conversation == Some(true) {
            return Some("a conversation".into());
        }
        None
    }

    /// Whether the listener read the notification's style and it is one of Android's styles for
    /// notices, not a chat: what a receipt that no system sender vouches for needs before it is
    /// credited. Any other style (a custom one, an unknown spelling) proves nothing.
    pub fn shows_no_chat(&self) -> bool {
        const NOTICE_STYLES: &[&str] = &[
            "android.app.Notification$BigTextStyle",
            "android.app.Notification$InboxStyle",
            "android.app.Notification$BigPictureStyle",
            "android.app.Notification$DecoratedCustomViewStyle",
        ];
        self.template
            .as_deref()
            .is_some_and(|t| NOTICE_STYLES.contains(&t.trim()))
            && self.marked_as_message().is_none()
    }

    fn fields(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("category", self.category.as_deref()),
            ("template", self.template.as_deref()),
            ("channel_id", self.channel_id.as_deref()),
        ]
    }
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
    /// The amount received, if the listener read it. Without it, solopay reads `title` and
    /// `text`; with both, the text must read as this same single amount (else `contradicted`).
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
    /// Android's `Notification.category`; `msg` marks a message, never a receipt.
    #[schema(example = "status")]
    pub category: Option<String>,
    /// Android's `android.template` extra; a `…MessagingStyle` marks a chat, never a receipt.
    #[schema(example = "android.app.Notification$BigTextStyle")]
    pub template: Option<String>,
    /// The Android notification channel id.
    pub channel_id: Option<String>,
    /// Whether Android files the notification as a conversation; `true` is never a receipt.
    pub conversation: Option<bool>,
    /// When the app posted the notification (`StatusBarNotification.getPostTime()`); two
    /// reports with the same post time, amount and text are one payment, whatever their ids.
    pub posted_at: Option<DateTime<Utc>>,
}

const MAX_TEXT_CHARS: usize = 4096;
const MAX_METADATA_CHARS: usize = 256;

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
    check_texts(fields, MAX_TEXT_CHARS)
}

fn check_texts(fields: [(&str, Option<&str>); 3], max_chars: usize) -> Result<(), ApiError> {
    for (name, value) in fields {
        let Some(value) = value else { continue };
        if value.chars().count() > max_chars {
            return Err(ApiError::InvalidRequest(format!(
                "{name} must be at most {max_chars} characters"
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

/// Checks the metadata fields a listener or forwarder sent.
pub fn check_android_metadata(android: &AndroidMetadata) -> Result<(), ApiError> {
    check_texts(android.fields(), MAX_METADATA_CHARS)
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
    let android = AndroidMetadata {
        category: parsed.category,
        template: parsed.template,
        channel_id: parsed.channel_id,
        conversation: parsed.conversation,
        posted_at: parsed.posted_at,
    };
    check_android_metadata(&android)?;
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
        distinct_ids: true,
        android,
    })
}

/// What two reports of one payment share, hashed: the channel, the listener's amount, the app,
/// the normalised title and text (a stacked copy's `[N条]sender: ` left out) and the post time
/// when the source gives one. `None` where the source's ids already tell payments apart and no
/// post time says otherwise.
pub fn same_payment_key(n: &Notification) -> Option<Vec<u8>> {
    let channel = n
        .channel
        .or_else(|| n.package.as_deref().and_then(channel_of_package))
        .map_or("", |c| c.as_str());
    let title = normalise(n.title.as_deref().unwrap_or_default());
    let text = normalise(n.text.as_deref().unwrap_or_default());
    let message = unstack(&title, &text).unwrap_or(&text);
    let parts = match (n.distinct_ids, n.android.posted_at) {
        (true, None) => return None,
        // One Android notification: its post time and text, however the listener fills the
        // optional fields (an amount, the package) when it sends it again.
        (_, Some(posted)) => vec![
            "posted".to_owned(),
            channel.to_owned(),
            posted.timestamp_millis().to_string(),
            title.clone(),
            message.to_owned(),
        ],
        (false, None) => vec![
            "content".to_owned(),
            channel.to_owned(),
            n.amount.map(|a| a.to_string()).unwrap_or_default(),
            n.package.as_deref().map(normalise).unwrap_or_default(),
            title.clone(),
            message.to_owned(),
        ],
    };
    Some(sha256(parts.join("\u{1f}").as_bytes()).to_vec())
}

/// How far apart two reports sharing a [`same_payment_key`] may arrive and still be one
/// payment: without a post time, the duplicate window (the text alone could be a second
/// payment later on); with one, any time (it is the same Android notification, re-sent).
pub fn same_payment_window(n: &Notification, rules: &OrderRules) -> Option<Duration> {
    match n.android.posted_at {
        Some(_) => None,
        None => Some(rules.duplicate_window),
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
    rules: &OrderRules,
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
    let key = reading.as_ref().ok().and_then(same_payment_key);
    let length = i32::try_from(body.len()).unwrap_or(i32::MAX);

    let (raw_id, received_at, device) =
        transaction_with_retry(conn, |conn| -> Result<_, ApiError> {
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
                        body.get(..REFUSED_BODY_BYTES).unwrap_or(body)
                    },
                    body_length: length,
                    body_sha256: &digest,
                    remote_addr,
                    reading: stored_reading.as_ref().filter(|_| ok),
                    rejection: rejection.as_deref().filter(|_| ok),
                    same_payment_key: key.as_deref().filter(|_| ok),
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
    let report = matching::Report {
        raw_id,
        received_at,
        notification: &notification,
        same_payment_key: key.as_deref(),
        body_sha256: &digest,
    };
    matching::record_payment(conn, rules, &device, &report)
}

/// The answer a recorded payment gets: what became of it, or `422 unparseable_notification`
/// when no amount could be established.
pub fn refuse_unreadable(payment: Payment) -> Result<Payment, ApiError> {
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
    rules: &OrderRules,
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
            let report = matching::Report {
                raw_id: raw.id,
                received_at: raw.received_at,
                notification: &notification,
                same_payment_key: raw.same_payment_key.as_deref(),
                body_sha256: &raw.body_sha256,
            };
            matching::record_payment(conn, rules, &device, &report)
        })();
        match outcome {
            Ok(_) => finished += 1,
            Err(e) if e.storage_error().is_some_and(StorageError::is_unavailable) => {
                return Err(e);
            }
            Err(error) => {
                tracing::warn!(notification = raw.id, %error, "cannot finish a stored notification");
                raw_rows::set_rejection(conn, raw.id, &format!("{}: {error}", error.code()))?;
            }
        }
    }
    Ok(finished)
}
