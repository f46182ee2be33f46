//! Generic notification forwarders (SmsForwarder and the like): `POST /forward/{device_id}`
//! with `from`, `title`, `content`/`org_content`, `timestamp` (ms) and `sign` as a form or JSON.
//!
//! Weaker than a signed listener: the sign (HMAC-SHA256 of "<timestamp>\n<secret>", the
//! "DingTalk" scheme) covers only the timestamp, never the message. So each (timestamp, sign) is
//! accepted once, within a short window, and only for the same body; the message is then read
//! like any notification (trusted packages, known wordings).

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::compat::require;
use crate::config::Protocol;
use crate::core::error::RuleError;
use crate::core::notifications::{
    AndroidMetadata, Credentials, Notification, check_android_metadata, check_notification_fields,
};
use crate::core::secrets::sha256;
use crate::domain::NotificationSource;
use crate::error::ApiError;
use crate::http::receive::{NotifyResult, receive};
use crate::http::{AppState, read_body};

/// What a forwarder posts (its template decides which fields; others are ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ForwardBody {
    /// The app that posted the notification (its package name), or an SMS sender.
    #[schema(example = "com.tencent.mm")]
    pub from: Option<String>,
    #[schema(example = "微信支付")]
    pub title: Option<String>,
    /// The text (templates differ: `content` or `org_content`, the raw text, preferred).
    #[schema(example = "微信支付收款10.02元(朋友到店)")]
    pub content: Option<String>,
    pub org_content: Option<String>,
    /// Milliseconds since the epoch, as a string or a number.
    #[schema(value_type = String, example = "1732560000123")]
    pub timestamp: Option<String>,
    /// URL-encoded base64 of HMAC-SHA256(device secret, "<timestamp>\n<device secret>").
    pub sign: Option<String>,
    /// Android's `Notification.category`, where the template can carry it; `msg` is a message,
    /// never a receipt.
    pub category: Option<String>,
    /// Android's `android.template` extra; a `…MessagingStyle` is a chat, never a receipt.
    pub template: Option<String>,
    /// The Android notification channel id.
    pub channel_id: Option<String>,
    /// `true` when Android files the notification as a conversation (never a receipt).
    #[schema(value_type = Option<String>, example = "false")]
    pub conversation: Option<String>,
    /// When the app posted the notification: milliseconds since the epoch, or RFC 3339.
    #[schema(value_type = Option<String>, example = "1732560000100")]
    pub posted_at: Option<String>,
}

/// Reads a forwarder's body: a form, or a JSON object (numbers accepted for the timestamp).
fn parse_body(body: &[u8], form: bool) -> Result<ForwardBody, RuleError> {
    if form {
        let mut posted = ForwardBody::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            let value = Some(value.into_owned());
            match key.as_ref() {
                "from" => posted.from = value,
                "title" => posted.title = value,
                "content" => posted.content = value,
                "org_content" => posted.org_content = value,
                "timestamp" => posted.timestamp = value,
                "sign" => posted.sign = value,
                "category" => posted.category = value,
                "template" => posted.template = value,
                "channel_id" => posted.channel_id = value,
                "conversation" => posted.conversation = value,
                "posted_at" => posted.posted_at = value,
                _ => {}
            }
        }
        return Ok(posted);
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| RuleError::InvalidRequest(format!("invalid JSON body: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| RuleError::InvalidRequest("the body must be a JSON object".into()))?;
    let field = |name: &str| match object.get(name) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    };
    Ok(ForwardBody {
        from: field("from"),
        title: field("title"),
        content: field("content"),
        org_content: field("org_content"),
        timestamp: field("timestamp"),
        sign: field("sign"),
        category: field("category"),
        template: field("template"),
        channel_id: field("channel_id"),
        conversation: field("conversation"),
        posted_at: field("posted_at"),
    })
}

fn is_form(req: &HttpRequest, body: &[u8]) -> bool {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/json") {
        return false;
    }
    content_type.starts_with("application/x-www-form-urlencoded")
        || !body.trim_ascii_start().starts_with(b"{")
}

/// The notification a forwarder's body reports. Forwarders send no message id: one is derived
/// from the message and its millisecond timestamp, so a retry of the same request is the same
/// notification; a report of the same message under another timestamp within the duplicate
/// window is the same payment (`duplicate`), never a second credit.
fn read_forward(body: &[u8], form: bool) -> Result<Notification, RuleError> {
    let posted = parse_body(body, form)?;
    let android = android_metadata(&posted)?;
    let text = posted.org_content.or(posted.content);
    let timestamp = posted.timestamp.unwrap_or_default();
    let digest = sha256(
        [
            posted.from.as_deref().unwrap_or_default(),
            posted.title.as_deref().unwrap_or_default(),
            text.as_deref().unwrap_or_default(),
            &timestamp,
        ]
        .join("\n")
        .as_bytes(),
    );
    let notification_id = format!("fwd_{}", &hex::encode(digest)[..32]);
    check_notification_fields(
        &notification_id,
        [
            ("from", posted.from.as_deref()),
            ("title", posted.title.as_deref()),
            ("content", text.as_deref()),
        ],
    )?;
    Ok(Notification {
        notification_id,
        channel: None,
        amount: None,
        package: posted.from.filter(|f| !f.trim().is_empty()),
        title: posted.title,
        text,
        reported_at: timestamp
            .parse::<i64>()
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis),
        listener_vouches: false,
        distinct_ids: false,
        android,
    })
}

/// The Android metadata a forwarder's template carried, checked like a listener's.
fn android_metadata(posted: &ForwardBody) -> Result<AndroidMetadata, RuleError> {
    let conversation = match posted.conversation.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("true") | Some("1") => Some(true),
        Some("false") | Some("0") => Some(false),
        Some(_) => {
            return Err(RuleError::InvalidRequest(
                "conversation must be true or false".into(),
            ));
        }
    };
    let posted_at = match posted.posted_at.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .or_else(|| {
                    DateTime::parse_from_rfc3339(text)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                })
                .ok_or_else(|| {
                    RuleError::InvalidRequest(
                        "posted_at must be milliseconds since the epoch or an RFC 3339 time".into(),
                    )
                })?,
        ),
    };
    let android = AndroidMetadata {
        category: posted.category.clone(),
        template: posted.template.clone(),
        channel_id: posted.channel_id.clone(),
        conversation,
        posted_at,
    };
    check_android_metadata(&android)?;
    Ok(android)
}

/// Receive a notification from a generic forwarder app (SmsForwarder and the like).
///
/// Configure the app's webhook with this URL (one per device), method POST, a form or JSON body
/// with `from=[from]`, `title=[title]`, `content=[org_content]`, `timestamp=[timestamp]`,
/// `sign=[sign]`, and the device's secret as the signing secret. Each (timestamp, sign) is
/// accepted once within `SOLOPAY_COMPAT_WINDOW_SECS`; every request is stored. Answers like
/// `POST /notify`.
#[utoipa::path(
    tag = "listener",
    params(("device_id" = String, Path, description = "The device (`dev_…`) whose secret signs")),
    request_body(content(
        (ForwardBody = "application/x-www-form-urlencoded"),
        (ForwardBody = "application/json"),
    )),
    responses(
        (status = 200, description = "What became of the payment", body = NotifyResult),
        (status = 400, description = "`invalid_request` (stored)"),
        (status = 401, description = "`unauthorized`: bad sign, old timestamp, or a (timestamp, sign) already used for another message (stored)"),
        (status = 404, description = "`not_found`: the forwarder protocol is switched off"),
        (status = 413, description = "`payload_too_large`"),
        (status = 422, description = "`unparseable_notification`: no single amount in the text (stored)"),
    )
)]
#[post("/forward/{device_id}")]
pub async fn forward(
    state: web::Data<AppState>,
    req: HttpRequest,
    device_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&state.settings, Protocol::Forwarder)?;
    let body = read_body(payload).await?;
    let form = is_form(&req, &body);
    // Credentials as received: a body that cannot be read still gets stored, then refused.
    let fields = parse_body(&body, form).unwrap_or_default();
    let credentials = Credentials::Forwarder {
        device_id: device_id.into_inner(),
        timestamp_ms: fields.timestamp,
        sign: fields.sign,
        window: state.settings.compat_window,
    };
    receive(
        &state,
        &req,
        NotificationSource::Forward,
        credentials,
        body,
        move |body| read_forward(body, form),
    )
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn form_and_json_bodies_read_the_same_and_ids_follow_the_timestamp() {
        let form = b"from=com.tencent.mm&title=%E5%BE%AE%E4%BF%A1%E6%94%AF%E4%BB%98&org_content=%E5%BE%AE%E4%BF%A1%E6%94%AF%E4%BB%98%E6%94%B6%E6%AC%BE1.00%E5%85%83&timestamp=1732560000123&sign=abc%2B";
        let json = r#"{"from": "com.tencent.mm", "title": "微信支付", "content": "微信支付收款1.00元", "timestamp": 1732560000123, "sign": "abc+", "extra": 1}"#.as_bytes();
        let a = read_forward(form, true).unwrap();
        let b = read_forward(json, false).unwrap();
        assert_eq!(a.notification_id, b.notification_id);
        assert_eq!(a.text.as_deref(), Some("微信支付收款1.00元"));
        assert_eq!(a.package.as_deref(), Some("com.tencent.mm"));
        assert_eq!(
            parse_body(form, true).unwrap().sign.as_deref(),
            Some("abc+")
        );
        assert_eq!(
            a.reported_at.map(|t| t.timestamp_millis()),
            Some(1732560000123)
        );
        assert!(!a.listener_vouches);

        let later = r#"{"from": "com.tencent.mm", "title": "微信支付", "content": "微信支付收款1.00元", "timestamp": 1732560060123}"#.as_bytes();
        assert_ne!(
            read_forward(later, false).unwrap().notification_id,
            b.notification_id
        );
    }

    proptest::proptest! {
        #[test]
        fn reading_any_forwarder_body_never_panics(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), form in proptest::bool::ANY,
        ) {
            let _ = parse_body(&body, form);
            let _ = read_forward(&body, form);
        }
    }
}
