//! `/admin/devices`: the listener phones.

use actix_web::{HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::OperatorAuth;
use crate::core::devices::{create_device as create, rotate_secret, update_device as update};
use crate::core::notifications::Trust;
use crate::db::devices::{self as device_rows, Device as DeviceRow, DeviceChanges};
use crate::error::ApiError;
use crate::http::{AppState, check_text, parse_json};

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
    /// The packages the operator allowed; `null` means the defaults (the official apps of the
    /// channels of its payees).
    pub allowed_packages: Option<Vec<String>>,
    /// The packages whose notifications count as payments from this device, as of now.
    pub trusted_packages: Vec<String>,
    /// Whether a forwarder's notification that names no app is trusted.
    pub trust_unlabelled: bool,
    /// What the listener last said about itself in a heartbeat, when it says it: whether it has
    /// notification access, how many notifications it holds undelivered and for how long, the
    /// phone's OS.
    pub notification_access: Option<bool>,
    pub queue_depth: Option<i32>,
    pub oldest_unsent_secs: Option<i32>,
    pub os_version: Option<String>,
    /// Since when the owner was told the device is offline, until it is heard from again.
    pub offline_alerted_at: Option<DateTime<Utc>>,
    /// Since when the owner was told its listener went silent, until it reports again.
    pub silence_alerted_at: Option<DateTime<Utc>>,
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

fn device(row: &DeviceRow, online: bool, trust: Trust) -> Device {
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
        allowed_packages: row.listed_packages(),
        trusted_packages: trust.packages,
        trust_unlabelled: trust.unlabelled,
        notification_access: row.notification_access,
        queue_depth: row.queue_depth,
        oldest_unsent_secs: row.oldest_unsent_secs,
        os_version: row.os_version.clone(),
        offline_alerted_at: row.offline_alerted_at,
        silence_alerted_at: row.silence_alerted_at,
    }
}

/// Create a listener device. Its `secret` is shown only in this answer.
#[utoipa::path(
    tag = "operator",
    request_body = CreateDeviceRequest,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedDeviceResponse),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[post("/devices")]
pub async fn create_device(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = parse_json::<CreateDeviceRequest>(payload).await?;
    check_text("name", &request.name, 128)?;
    let (row, trust) = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let row = create(conn, operator.operator(), &request.name)?;
            let trust = Trust::of_device(conn, &row)?;
            Ok((row, trust))
        })
        .await?;
    let secret = row.secret.expose().to_string();
    Ok(HttpResponse::Created().json(CreatedDeviceResponse {
        device: device(&row, false, trust),
        secret,
    }))
}

/// List devices with their online state.
#[utoipa::path(
    tag = "operator",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every device", body = DeviceList),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/devices")]
pub async fn list_devices(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
) -> Result<web::Json<DeviceList>, ApiError> {
    let offline_after = state.settings.device_offline_after;
    let data = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            device_rows::list_with_online(conn, offline_after)?
                .into_iter()
                .map(|(row, online)| {
                    let trust = Trust::of_device(conn, &row)?;
                    Ok(device(&row, online, trust))
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .await?;
    Ok(web::Json(DeviceList { data }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeviceRequest {
    pub name: Option<String>,
    /// A disabled device's requests are refused (`403`) and its payees are not used.
    pub enabled: Option<bool>,
    /// The Android packages whose notifications this device may report as payments; `null`
    /// restores the defaults (the official apps of the channels of its payees).
    #[serde(default, deserialize_with = "crate::api::admin::explicit_null")]
    #[schema(value_type = Option<Vec<String>>, nullable, example = json!(["com.tencent.mm"]))]
    pub allowed_packages: Option<Option<Vec<String>>>,
    /// Trust a forwarder's notifications that do not say which app posted them.
    pub trust_unlabelled: Option<bool>,
}

/// Change a device: its name, whether it is enabled, and what it is trusted to report.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The device id (`dev_…`)")),
    request_body = UpdateDeviceRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The device", body = Device),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[patch("/devices/{id}")]
pub async fn update_device(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<Device>, ApiError> {
    let request = parse_json::<UpdateDeviceRequest>(payload).await?;
    if let Some(name) = &request.name {
        check_text("name", name, 128)?;
    }
    if let Some(Some(packages)) = &request.allowed_packages {
        if packages.len() > 50 {
            return Err(ApiError::InvalidRequest(
                "at most 50 allowed_packages".into(),
            ));
        }
        for package in packages {
            check_text("allowed_packages[]", package, 255)?;
        }
    }
    let id = id.into_inner();
    let offline_after = state.settings.device_offline_after;
    let updated = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let changes = DeviceChanges {
                name: request.name.as_deref(),
                enabled: request.enabled,
                allowed_packages: request
                    .allowed_packages
                    .map(|list| list.map(|packages| packages.into_iter().map(Some).collect())),
                trust_unlabelled: request.trust_unlabelled,
            };
            update(conn, operator.operator(), &id, &changes)?;
            let (row, online) = device_rows::find_with_online(conn, &id, offline_after)?
                .ok_or_else(|| ApiError::not_found("device"))?;
            let trust = Trust::of_device(conn, &row)?;
            Ok(device(&row, online, trust))
        })
        .await?;
    Ok(web::Json(updated))
}

/// A device's new secret, shown only in this answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedDeviceSecret {
    pub id: String,
    /// Give it to the listener app: requests signed with the old secret are refused from now on.
    pub secret: String,
}

/// Give a device a new secret (the old one stops working at once).
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The device id (`dev_…`)")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The new secret", body = RotatedDeviceSecret),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[post("/devices/{id}/rotate-secret")]
pub async fn rotate_device_secret(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
) -> Result<web::Json<RotatedDeviceSecret>, ApiError> {
    let id = id.into_inner();
    let device = state
        .db
        .run(move |conn| rotate_secret(conn, operator.operator(), &id))
        .await?;
    Ok(web::Json(RotatedDeviceSecret {
        id: device.id,
        secret: device.secret.expose().to_string(),
    }))
}
