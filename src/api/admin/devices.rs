//! `/admin/devices`: the listener phones.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::OperatorAuth;
use crate::api::{AppState, check_text, parse_json};
use crate::core::devices::create_device as create;
use crate::db::devices::{self as device_rows, Device as DeviceRow};
use crate::error::{ApiError, Problem};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceRequest {
    #[schema(example = "Xiaomi at the counter")]
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Device {
    #[schema(example = "dev_5e6f708192a3b4c5d6e7f8091a2b3c4d")]
    pub id: String,
    pub name: String,
    pub enabled: bool,
    /// Heard from (heartbeat or notification) within `SOLOPAY_DEVICE_OFFLINE_AFTER_SECS`.
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub last_notification_at: Option<DateTime<Utc>>,
    pub app_version: Option<String>,
    pub battery: Option<i16>,
    pub created_at: DateTime<Utc>,
}

/// A new device with its secret, shown only in this answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedDeviceResponse {
    #[serde(flatten)]
    pub device: Device,
    /// The HMAC key the listener app signs its requests with.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015")]
    pub secret: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    pub data: Vec<Device>,
}

fn device(row: &DeviceRow, online: bool) -> Device {
    Device {
        id: row.id.clone(),
        name: row.name.clone(),
        enabled: row.enabled,
        online,
        last_seen_at: row.last_seen_at,
        last_heartbeat_at: row.last_heartbeat_at,
        last_notification_at: row.last_notification_at,
        app_version: row.app_version.clone(),
        battery: row.battery,
        created_at: row.created_at,
    }
}

/// Create a listener device. Its `secret` is shown only in this answer.
#[utoipa::path(
    tag = "operator",
    request_body = CreateDeviceRequest,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedDeviceResponse),
        (status = 400, description = "`invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/devices")]
pub async fn create_device(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = parse_json::<CreateDeviceRequest>(payload).await?;
    check_text("name", &request.name, 128)?;
    let row = state
        .db
        .run(move |conn| create(conn, &request.name))
        .await?;
    Ok(HttpResponse::Created().json(CreatedDeviceResponse {
        device: device(&row, false),
        secret: row.secret,
    }))
}

/// List devices with their online state.
#[utoipa::path(
    tag = "operator",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every device", body = DeviceList),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/devices")]
pub async fn list_devices(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
) -> Result<web::Json<DeviceList>, ApiError> {
    let offline_after = state.settings.device_offline_after;
    let rows = state
        .db
        .run(move |conn| Ok(device_rows::list_with_online(conn, offline_after)?))
        .await?;
    Ok(web::Json(DeviceList {
        data: rows
            .iter()
            .map(|(row, online)| device(row, *online))
            .collect(),
    }))
}
