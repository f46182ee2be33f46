//! `/admin/merchants`: shops that may create orders.

use std::time::Duration;

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::OperatorAuth;
use crate::api::{AppState, check_text, check_url, parse_json};
use crate::core::merchants::{CreatedMerchant, create_merchant as create};
use crate::core::secrets::new_webhook_secret;
use crate::db::merchants::{self as merchant_rows, Merchant as MerchantRow};
use crate::error::{ApiError, Problem};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchantRequest {
    #[schema(example = "My shop")]
    pub name: String,
    /// Where webhooks go for orders that name no `notify_url`.
    #[schema(example = "https://shop.example/pay/hook")]
    pub notify_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Merchant {
    #[schema(example = "mch_0a1b2c3d4e5f60718293a4b5c6d7e8f9")]
    pub id: String,
    pub name: String,
    pub notify_url: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A new merchant with its secrets, shown only in this answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedMerchantResponse {
    #[serde(flatten)]
    pub merchant: Merchant,
    /// The secret API key (`Authorization: Bearer …`); stored only as a digest.
    #[schema(example = "sk_4f1c…")]
    pub api_key: String,
    /// The Standard Webhooks secret that signs this merchant's webhooks.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub webhook_secret: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MerchantList {
    pub data: Vec<Merchant>,
}

impl From<&MerchantRow> for Merchant {
    fn from(row: &MerchantRow) -> Self {
        Merchant {
            id: row.id.clone(),
            name: row.name.clone(),
            notify_url: row.notify_url.clone(),
            enabled: row.enabled,
            created_at: row.created_at,
        }
    }
}

/// Create a merchant. Its `api_key` and `webhook_secret` are shown only in this answer.
#[utoipa::path(
    tag = "operator",
    request_body = CreateMerchantRequest,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedMerchantResponse),
        (status = 400, description = "`invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/merchants")]
pub async fn create_merchant(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = parse_json::<CreateMerchantRequest>(payload).await?;
    check_text("name", &request.name, 128)?;
    if let Some(url) = &request.notify_url {
        check_url("notify_url", url)?;
    }
    let CreatedMerchant { merchant, api_key } = state
        .db
        .run(move |conn| create(conn, &request.name, request.notify_url.as_deref()))
        .await?;
    Ok(HttpResponse::Created().json(CreatedMerchantResponse {
        merchant: Merchant::from(&merchant),
        api_key,
        webhook_secret: merchant.webhook_secret,
    }))
}

/// List merchants (without their secrets).
#[utoipa::path(
    tag = "operator",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every merchant", body = MerchantList),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/merchants")]
pub async fn list_merchants(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
) -> Result<web::Json<MerchantList>, ApiError> {
    let rows = state.db.run(|conn| Ok(merchant_rows::list(conn)?)).await?;
    Ok(web::Json(MerchantList {
        data: rows.iter().map(Merchant::from).collect(),
    }))
}

/// How long the previous webhook secret keeps signing after a rotation.
const SECRET_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// A merchant's new webhook secret, shown only in this answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedWebhookSecret {
    pub id: String,
    pub webhook_secret: String,
    /// Until then the previous secret signs too, as a second `v1,` signature.
    pub previous_webhook_secret_expires_at: Option<DateTime<Utc>>,
}

/// Rotate a merchant's webhook secret. For 24 hours webhooks carry two signatures, one with
/// each secret, so the merchant can switch without losing a webhook.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The merchant id (`mch_…`)")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The new secret", body = RotatedWebhookSecret),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/merchants/{id}/rotate-webhook-secret")]
pub async fn rotate_webhook_secret(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    id: web::Path<String>,
) -> Result<web::Json<RotatedWebhookSecret>, ApiError> {
    let id = id.into_inner();
    let merchant = state
        .db
        .run(move |conn| {
            merchant_rows::rotate_webhook_secret(conn, &id, &new_webhook_secret(), SECRET_OVERLAP)?
                .ok_or_else(|| ApiError::not_found("merchant"))
        })
        .await?;
    Ok(web::Json(RotatedWebhookSecret {
        id: merchant.id,
        webhook_secret: merchant.webhook_secret,
        previous_webhook_secret_expires_at: merchant.previous_webhook_secret_expires_at,
    }))
}
