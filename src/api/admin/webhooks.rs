//! `/admin/webhooks`: every webhook delivery, its attempts, and redelivery.

use actix_web::{get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::admin::{into_page, page_size};
use crate::api::extract::OperatorAuth;
use crate::db::webhooks::{self as delivery_rows, Attempt, Delivery, DeliveryFilter};
use crate::domain::{DeliveryStatus, EventType};
use crate::error::ApiError;
use crate::http::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    #[schema(example = "whd_1f2e3d4c5b6a79881726354453627180")]
    pub id: String,
    /// Also the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event_type: EventType,
    pub merchant_id: String,
    pub order_id: String,
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttempt {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    pub status_code: Option<i32>,
    /// The first 1 KiB of the answer.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryDetail {
    #[serde(flatten)]
    pub delivery: WebhookDelivery,
    pub attempt_log: Vec<WebhookAttempt>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryList {
    pub data: Vec<WebhookDelivery>,
    /// More deliveries follow: ask again with `starting_after` set to the last id.
    pub has_more: bool,
}

pub fn delivery(row: &Delivery, event_type: EventType) -> WebhookDelivery {
    WebhookDelivery {
        id: row.id.clone(),
        event_id: row.event_id.clone(),
        event_type,
        merchant_id: row.merchant_id.clone(),
        order_id: row.order_id.clone(),
        url: row.url.clone(),
        status: row.status,
        attempts: row.attempts,
        next_attempt_at: (row.status == DeliveryStatus::Pending).then_some(row.next_attempt_at),
        last_attempt_at: row.last_attempt_at,
        last_status_code: row.last_status_code,
        last_error: row.last_error.clone(),
        created_at: row.created_at,
        completed_at: row.completed_at,
    }
}

fn attempt(row: &Attempt) -> WebhookAttempt {
    WebhookAttempt {
        attempt: row.attempt,
        started_at: row.started_at,
        latency_ms: row.latency_ms,
        status_code: row.status_code,
        response_excerpt: row.response_excerpt.clone(),
        error: row.error.clone(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    pub order_id: Option<String>,
    pub merchant_id: Option<String>,
    /// Page size, 1–100 (default 50).
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub starting_after: Option<String>,
}

/// List webhook deliveries, newest first.
#[utoipa::path(
    tag = "operator",
    params(DeliveryQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = WebhookDeliveryList),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/webhooks")]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<WebhookDeliveryList>, ApiError> {
    let query = query.into_inner();
    let limit = page_size(query.limit)?;
    let filter = DeliveryFilter {
        status: query.status,
        order_id: query.order_id,
        merchant_id: query.merchant_id,
        starting_after: query.starting_after,
        limit: limit + 1,
    };
    let rows = state
        .db
        .run(move |conn| -> Result<_, ApiError> { Ok(delivery_rows::list(conn, &filter)?) })
        .await?;
    let (rows, has_more) = into_page(rows, limit);
    Ok(web::Json(WebhookDeliveryList {
        data: rows
            .iter()
            .map(|(row, kind)| delivery(row, *kind))
            .collect(),
        has_more,
    }))
}

/// A webhook delivery with every attempt made.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The delivery id (`whd_…`)")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The delivery and its attempts", body = WebhookDeliveryDetail),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/webhooks/{id}")]
pub async fn get_delivery(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    id: web::Path<String>,
) -> Result<web::Json<WebhookDeliveryDetail>, ApiError> {
    let id = id.into_inner();
    let (row, kind, attempts) = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let (row, kind) = delivery_rows::find(conn, &id)?
                .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
            let attempts = delivery_rows::attempts_of(conn, &id)?;
            Ok((row, kind, attempts))
        })
        .await?;
    Ok(web::Json(WebhookDeliveryDetail {
        delivery: delivery(&row, kind),
        attempt_log: attempts.iter().map(attempt).collect(),
    }))
}

/// Deliver again now, with a fresh retry schedule (a failed delivery, or a succeeded one the
/// merchant lost). The event keeps its id, so receivers can tell a repeat.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The delivery id (`whd_…`)")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The delivery, due now", body = WebhookDelivery),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`invalid_state`: an attempt is in progress"),
    )
)]
#[post("/webhooks/{id}/redeliver")]
pub async fn redeliver(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
) -> Result<web::Json<WebhookDelivery>, ApiError> {
    let id = id.into_inner();
    let (row, kind) = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let row = crate::webhooks::redeliver(conn, operator.operator(), &id)?;
            let (_, kind) = delivery_rows::find(conn, &id)?
                .ok_or_else(|| ApiError::not_found("webhook delivery"))?;
            Ok((row, kind))
        })
        .await?;
    Ok(web::Json(delivery(&row, kind)))
}
