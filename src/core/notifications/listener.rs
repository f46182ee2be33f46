//! The body of `POST /notify`, the signed listener's own format: read when the request arrives
//! and again by the sweep from what was stored.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::model::{
    AndroidMetadata, Notification, check_android_metadata, check_notification_fields,
};
use crate::core::error::RuleError;
use crate::domain::Channel;
use crate::money::{Amount, AmountInput};

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

/// Reads a `/notify` body.
pub fn read_notify_body(body: &[u8]) -> Result<Notification, RuleError> {
    let parsed: NotifyBody = serde_json::from_slice(body)
        .map_err(|e| RuleError::InvalidRequest(format!("invalid notification body: {e}")))?;
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
