//! A notification as the service reads it, whichever way it came (a signed listener, a
//! forwarder, a V免签 push), with the Android metadata a listener can send along, and the checks
//! every source's free-text fields pass.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::error::RuleError;
use crate::domain::Channel;
use crate::money::Amount;

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

const MAX_TEXT_CHARS: usize = 4096;
const MAX_METADATA_CHARS: usize = 256;

/// Checks the free-text parts every source shares.
pub fn check_notification_fields(
    notification_id: &str,
    fields: [(&str, Option<&str>); 3],
) -> Result<(), RuleError> {
    let id_len = notification_id.chars().count();
    if !(1..=128).contains(&id_len) || notification_id.chars().any(char::is_control) {
        return Err(RuleError::InvalidRequest(
            "notification_id must be 1 to 128 printable characters".into(),
        ));
    }
    check_texts(fields, MAX_TEXT_CHARS)
}

fn check_texts(fields: [(&str, Option<&str>); 3], max_chars: usize) -> Result<(), RuleError> {
    for (name, value) in fields {
        let Some(value) = value else { continue };
        if value.chars().count() > max_chars {
            return Err(RuleError::InvalidRequest(format!(
                "{name} must be at most {max_chars} characters"
            )));
        }
        // Postgres text cannot hold U+0000.
        if value.contains('\0') {
            return Err(RuleError::InvalidRequest(format!(
                "{name} must not contain NUL characters"
            )));
        }
    }
    Ok(())
}

/// Checks the metadata fields a listener or forwarder sent.
pub fn check_android_metadata(android: &AndroidMetadata) -> Result<(), RuleError> {
    check_texts(android.fields(), MAX_METADATA_CHARS)
}
