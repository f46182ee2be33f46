//! `/admin/alert-channels` and `/admin/alerts`: how the owner is told when money may be
//! slipping (Telegram, WeCom, DingTalk, Feishu, Bark, e-mail, a signed webhook), a test message
//! on a channel, and the alerts raised with their deliveries.

use actix_web::{HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::admin::{explicit_null, into_page, page_size};
use crate::api::extract::OperatorAuth;
use crate::core::alerts::channels::ChannelSettings;
use crate::core::alerts::{ChannelChanges, create_channel, update_channel};
use crate::db::alerts::{self as alert_rows, Alert, Channel, Delivery};
use crate::domain::{AlertChannelKind, AlertKind, DeliveryStatus};
use crate::error::ApiError;
use crate::http::{AppState, check_text, parse_json};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    #[schema(example = "Owner's Telegram")]
    pub name: String,
    /// The service and its settings; `kind` picks which.
    pub settings: ChannelSettings,
    /// The alert kinds to send on this channel; all of them when left out.
    pub kinds: Option<Vec<AlertKind>>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelRequest {
    pub name: Option<String>,
    /// New settings, replacing the old ones whole (secrets included); the kind stays.
    pub settings: Option<ChannelSettings>,
    /// `null`: every kind again.
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<Vec<AlertKind>>)]
    pub kinds: Option<Option<Vec<AlertKind>>>,
    pub enabled: Option<bool>,
}

/// A channel as the operator sees it: its secrets hidden.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertChannel {
    #[schema(example = "alc_3f2a9c1d8e7b4a6f9c0d1e2f3a4b5c6d")]
    pub id: String,
    pub kind: AlertChannelKind,
    pub name: String,
    /// The settings, secrets shown as `<hidden>`.
    pub settings: serde_json::Value,
    /// The kinds sent; `null`: all of them.
    pub kinds: Option<Vec<String>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: AlertChannel,
    /// A generic webhook's signing secret (`whsec_…`), shown only here.
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertChannelList {
    pub data: Vec<AlertChannel>,
}

fn channel_view(row: &Channel) -> AlertChannel {
    let settings = crate::alerts::open_settings(row)
        .map(|settings| serde_json::to_value(settings.shown()).unwrap_or_default())
        .unwrap_or_else(|error| serde_json::json!({ "unreadable": error }));
    AlertChannel {
        id: row.id.clone(),
        kind: row.kind,
        name: row.name.clone(),
        settings,
        kinds: alert_rows::kinds_of(row),
        enabled: row.enabled,
        created_at: row.created_at,
    }
}

/// Add a channel that alerts reach the owner through.
#[utoipa::path(
    tag = "operator",
    request_body = CreateChannelRequest,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "The channel (a generic webhook's secret shown only here)", body = CreatedChannel),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[post("/alert-channels")]
pub async fn create_alert_channel(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = parse_json::<CreateChannelRequest>(payload).await?;
    check_text("name", &request.name, 128)?;
    let (row, settings) = state
        .db
        .run(move |conn| {
            create_channel(
                conn,
                operator.operator(),
                &request.name,
                request.settings,
                request.kinds,
                request.enabled,
            )
        })
        .await?;
    let webhook_secret = match settings {
        ChannelSettings::Webhook { secret, .. } => secret,
        _ => None,
    };
    Ok(HttpResponse::Created().json(CreatedChannel {
        channel: channel_view(&row),
        webhook_secret,
    }))
}

/// The channels alerts are sent on.
#[utoipa::path(
    tag = "operator",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every channel", body = AlertChannelList),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/alert-channels")]
pub async fn list_alert_channels(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
) -> Result<web::Json<AlertChannelList>, ApiError> {
    let rows = state
        .db
        .run(|conn| -> Result<_, ApiError> { Ok(alert_rows::list_channels(conn)?) })
        .await?;
    Ok(web::Json(AlertChannelList {
        data: rows.iter().map(channel_view).collect(),
    }))
}

/// Change a channel: its name, settings (replaced whole), kinds or whether it is enabled.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The channel id (`alc_…`)")),
    request_body = UpdateChannelRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The channel", body = AlertChannel),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[patch("/alert-channels/{id}")]
pub async fn update_alert_channel(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<AlertChannel>, ApiError> {
    let request = parse_json::<UpdateChannelRequest>(payload).await?;
    if let Some(name) = &request.name {
        check_text("name", name, 128)?;
    }
    let id = id.into_inner();
    let row = state
        .db
        .run(move |conn| {
            update_channel(
                conn,
                operator.operator(),
                &id,
                ChannelChanges {
                    name: request.name,
                    settings: request.settings,
                    kinds: request.kinds,
                    enabled: request.enabled,
                },
            )
        })
        .await?;
    Ok(web::Json(channel_view(&row)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestResult {
    /// Whether the service took the message (its own success answer).
    pub delivered: bool,
    /// Why not, as the service or the network said.
    pub error: Option<String>,
}

/// Send a test message on a channel now, and say whether the service took it.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The channel id (`alc_…`)")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "What the service answered", body = TestResult),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[post("/alert-channels/{id}/test")]
pub async fn test_alert_channel(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    id: web::Path<String>,
) -> Result<web::Json<TestResult>, ApiError> {
    let id = id.into_inner();
    let channel = state
        .db
        .run(move |conn| -> Result<_, ApiError> { Ok(alert_rows::find_channel(conn, &id)?) })
        .await?
        .ok_or_else(|| ApiError::not_found("alert channel"))?;
    let settings = crate::alerts::open_settings(&channel).map_err(ApiError::internal)?;
    let sender = crate::webhooks::sender::Sender::new(
        std::time::Duration::from_secs(10),
        state.settings.allow_private_webhooks,
    )
    .map_err(ApiError::internal)?;
    let alert = Alert {
        id: crate::core::secrets::new_id("alr"),
        kind: AlertKind::Digest,
        subject: channel.id.clone(),
        title: "Test message".into(),
        body: format!(
            "This is a test of alert channel {} ({}): the owner's alerts arrive here.",
            channel.name, channel.kind
        ),
        details: serde_json::json!({"test": true}),
        created_at: Utc::now(),
        digest_id: None,
    };
    let error = crate::alerts::send(&sender, &alert, &channel, &settings, None).await;
    Ok(web::Json(TestResult {
        delivered: error.is_none(),
        error,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only alerts of this kind.
    pub kind: Option<AlertKind>,
    /// Page size, 1–100 (default 50).
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub starting_after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertDelivery {
    pub channel_id: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    pub kind: AlertKind,
    pub subject: String,
    pub title: String,
    pub body: String,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// Told in this digest rather than on its own.
    pub digest_id: Option<String>,
    pub deliveries: Vec<AlertDelivery>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    pub data: Vec<AlertView>,
    pub has_more: bool,
}

fn alert_view((alert, deliveries): (Alert, Vec<Delivery>)) -> AlertView {
    AlertView {
        id: alert.id,
        kind: alert.kind,
        subject: alert.subject,
        title: alert.title,
        body: alert.body,
        details: alert.details,
        created_at: alert.created_at,
        digest_id: alert.digest_id,
        deliveries: deliveries
            .into_iter()
            .map(|d| AlertDelivery {
                channel_id: d.channel_id,
                status: d.status,
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at,
                last_error: d.last_error,
                completed_at: d.completed_at,
            })
            .collect(),
    }
}

/// The alerts raised, newest first, with their delivery on each channel.
#[utoipa::path(
    tag = "operator",
    params(AlertQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of alerts", body = AlertList),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/alerts")]
pub async fn list_alerts(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    query: web::Query<AlertQuery>,
) -> Result<web::Json<AlertList>, ApiError> {
    let query = query.into_inner();
    let limit = page_size(query.limit)?;
    let rows = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let kinds = query.kind.map(|kind| vec![kind]);
            Ok(alert_rows::list(
                conn,
                kinds.as_deref(),
                query.starting_after.as_deref(),
                limit + 1,
            )?)
        })
        .await?;
    let (rows, has_more) = into_page(rows, limit);
    Ok(web::Json(AlertList {
        data: rows.into_iter().map(alert_view).collect(),
        has_more,
    }))
}
