//! The listener device endpoints: heartbeats and payment notifications, signed with the device
//! secret over the exact body bytes.

use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::device_credentials;
use crate::core::devices::{Heartbeat, authenticate, record_heartbeat};
use crate::core::notifications::{NotifyBody, read_notify_body};
use crate::domain::NotificationSource;
use crate::error::ApiError;
use crate::http::receive::{NotifyResult, receive};
use crate::http::{AppState, read_body};

/// The body of `POST /heartbeat` (`{}` or empty is fine). What the listener knows about itself
/// is all optional; a listener that sends it gets earlier alerts.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    #[schema(example = "1.4.2")]
    pub app_version: Option<String>,
    /// Battery level in percent.
    #[schema(minimum = 0, maximum = 100, example = 80)]
    pub battery: Option<u8>,
    /// Whether Android grants the listener notification access; `false` alerts the owner.
    pub notification_access: Option<bool>,
    /// Notifications the listener holds but could not deliver yet.
    #[schema(minimum = 0, example = 0)]
    pub queue_depth: Option<u32>,
    /// How long the oldest of them has waited, in seconds.
    #[schema(minimum = 0, example = 0)]
    pub oldest_unsent_secs: Option<u32>,
    /// The phone's OS version.
    #[schema(example = "Android 14")]
    pub os_version: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    pub device_id: String,
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Report that the listener is alive; the device counts as online for
/// `SOLOPAY_DEVICE_OFFLINE_AFTER_SECS` (90 s) afterwards.
#[utoipa::path(
    tag = "listener",
    request_body(content = HeartbeatRequest, description = "`{}` or app details"),
    security(("device_signature" = [])),
    responses(
        (status = 200, description = "Recorded", body = HeartbeatResponse),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`: missing or bad signature, or timestamp outside the window"),
        (status = 403, description = "`forbidden`: the device is disabled"),
        (status = 413, description = "`payload_too_large`"),
    )
)]
#[post("/heartbeat")]
pub async fn heartbeat(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<HeartbeatResponse>, ApiError> {
    let body = read_body(payload).await?;
    let credentials = device_credentials(&req);
    // Authenticated before the body is read: a stranger learns nothing from a bad body.
    let device = {
        let body = body.clone();
        state
            .db
            .run(move |conn| authenticate(conn, &credentials, &body))
            .await?
    };
    let request: HeartbeatRequest = if body.iter().all(u8::is_ascii_whitespace) {
        HeartbeatRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid heartbeat body: {e}")))?
    };
    if let Some(version) = &request.app_version {
        crate::http::check_text("app_version", version, 64)?;
    }
    if request.battery.is_some_and(|b| b > 100) {
        return Err(ApiError::InvalidRequest(
            "battery must be from 0 to 100".into(),
        ));
    }
    if let Some(version) = &request.os_version {
        crate::http::check_text("os_version", version, 64)?;
    }
    let count = |field: &str, value: Option<u32>| {
        value
            .map(|value| {
                i32::try_from(value).map_err(|_| {
                    ApiError::InvalidRequest(format!("{field} must be at most {}", i32::MAX))
                })
            })
            .transpose()
    };
    let heartbeat = Heartbeat {
        app_version: request.app_version,
        battery: request.battery.map(i16::from),
        notification_access: request.notification_access,
        queue_depth: count("queue_depth", request.queue_depth)?,
        oldest_unsent_secs: count("oldest_unsent_secs", request.oldest_unsent_secs)?,
        os_version: request.os_version,
    };
    let device = state
        .db
        .run(move |conn| record_heartbeat(conn, &device.id, &heartbeat))
        .await?;
    Ok(web::Json(HeartbeatResponse {
        device_id: device.id,
        online: true,
        last_seen_at: device.last_seen_at,
    }))
}

/// Report a payment the listener saw.
///
/// The request is stored as received before anything else, whatever its outcome. A text credits
/// only when the whole notification is a known receipt wording of the payment app, from one of
/// its system senders; without `amount`, the amount is read from `title` and `text`, and with
/// it, the text must read as that same single amount. What cannot be credited is kept for the
/// operator: `untrusted` (an app this device may not report for), `unparsed` (no single amount,
/// or not a receipt: answered `422`), `ambiguous` (more than one payment amount),
/// `contradicted` (the amount or channel and the app's text disagree, or the text is not a
/// recognised incoming payment, or the app marked it as a message). A payment pays the order of
/// this device's payee for the channel that held its amount when it arrived, if that order is
/// still `pending` (or `expired`, then `paid_late`); when the order holding it is already paid,
/// the payment is a `duplicate` of the one that paid it; otherwise it is kept `unmatched`. A
/// repeated `notification_id` is answered like the first time and changes nothing; two ids with
/// the same `posted_at`, amount and text are one payment (the second a `duplicate`).
#[utoipa::path(
    tag = "listener",
    request_body = NotifyBody,
    security(("device_signature" = [])),
    responses(
        (status = 200, description = "What became of the payment", body = NotifyResult),
        (status = 400, description = "`invalid_request` or `invalid_amount` (stored, not matched)"),
        (status = 401, description = "`unauthorized` (stored, not matched)"),
        (status = 403, description = "`forbidden`: the device is disabled (stored, not matched)"),
        (status = 413, description = "`payload_too_large`"),
        (status = 422, description = "`unparseable_notification`: no amount (stored)"),
    )
)]
#[post("/notify")]
pub async fn notify(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload).await?;
    let credentials = device_credentials(&req);
    receive(
        &state,
        &req,
        NotificationSource::Notify,
        credentials,
        body,
        read_notify_body,
    )
    .await
}
