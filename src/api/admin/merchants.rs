//! `/admin/merchants`: shops that may create orders.

use actix_web::{HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::OperatorAuth;
use crate::core::error::RuleError;
use crate::core::merchants::{
    CreatedMerchant, create_merchant as create, rotate_api_key as rotate_key,
    rotate_webhook_secret as rotate_secret, update_merchant as update,
};
use crate::core::platform_keys::epay_v2_key;
use crate::core::rsa_signing::MerchantPublicKey;
use crate::db::merchants::{self as merchant_rows, Merchant as MerchantRow, MerchantChanges};
use crate::domain::Channel;
use crate::error::ApiError;
use crate::http::{AppState, check_text, check_url, parse_json};

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
    /// The merchant's number in the old protocols (易支付's `pid`, VPay's `appid`).
    #[schema(example = 1001)]
    pub pid: i64,
    /// 易支付 V2: the merchant's RSA public key (base64 of its DER SubjectPublicKeyInfo), which
    /// verifies its requests; `null` until set.
    pub epay_v2_public_key: Option<String>,
    /// epusdt: the channel of an order that names none (`trade_type`); `null` until set.
    pub epusdt_channel: Option<Channel>,
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
    /// The key of the old protocols' md5 signatures (易支付's merchant key, V免签's `key`).
    #[schema(example = "5d41402abc4b2a76b9719d911017c592")]
    pub md5_key: String,
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
            pid: row.pid,
            epay_v2_public_key: row.epay_v2_public_key.clone(),
            epusdt_channel: row.epusdt_channel,
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
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[post("/merchants")]
pub async fn create_merchant(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = parse_json::<CreateMerchantRequest>(payload).await?;
    check_text("name", &request.name, 128)?;
    if let Some(url) = &request.notify_url {
        check_url("notify_url", url)?;
    }
    let CreatedMerchant { merchant, api_key } = state
        .db
        .run(move |conn| -> Result<_, RuleError> {
            create(
                conn,
                operator.operator(),
                &request.name,
                request.notify_url.as_deref(),
            )
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedMerchantResponse {
        merchant: Merchant::from(&merchant),
        api_key,
        webhook_secret: merchant.webhook_secret.expose().to_string(),
        md5_key: merchant.md5_key.expose().to_string(),
    }))
}

/// List merchants (without their secrets).
#[utoipa::path(
    tag = "operator",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every merchant", body = MerchantList),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/merchants")]
pub async fn list_merchants(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
) -> Result<web::Json<MerchantList>, ApiError> {
    let rows = state
        .db
        .run(|conn| Ok::<_, ApiError>(merchant_rows::list(conn)?))
        .await?;
    Ok(web::Json(MerchantList {
        data: rows.iter().map(Merchant::from).collect(),
    }))
}

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
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[post("/merchants/{id}/rotate-webhook-secret")]
pub async fn rotate_webhook_secret(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
) -> Result<web::Json<RotatedWebhookSecret>, ApiError> {
    let id = id.into_inner();
    let merchant = state
        .db
        .run(move |conn| rotate_secret(conn, operator.operator(), &id))
        .await?;
    Ok(web::Json(RotatedWebhookSecret {
        id: merchant.id,
        webhook_secret: merchant.webhook_secret.expose().to_string(),
        previous_webhook_secret_expires_at: merchant.previous_webhook_secret_expires_at,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMerchantRequest {
    pub name: Option<String>,
    /// A disabled merchant's API key is refused (`401`).
    pub enabled: Option<bool>,
    /// The default webhook URL; `null` removes it.
    #[serde(default, deserialize_with = "crate::api::admin::explicit_null")]
    #[schema(value_type = Option<String>, nullable)]
    pub notify_url: Option<Option<String>>,
    /// 易支付 V2: the merchant's RSA public key (2048 bits or more), as a PEM block or the bare
    /// base64 of its DER; `null` removes it (its V2 requests are then refused).
    #[serde(default, deserialize_with = "crate::api::admin::explicit_null")]
    #[schema(value_type = Option<String>, nullable)]
    pub epay_v2_public_key: Option<Option<String>>,
    /// epusdt: the channel of an order whose request names none; `null` removes it.
    #[serde(default, deserialize_with = "crate::api::admin::explicit_null")]
    #[schema(value_type = Option<Channel>, nullable)]
    pub epusdt_channel: Option<Option<Channel>>,
}

/// Rename a merchant, enable or disable it, change its default webhook URL, its 易支付 V2 public
/// key or its default epusdt channel.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The merchant id (`mch_…`)")),
    request_body = UpdateMerchantRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The merchant", body = Merchant),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[patch("/merchants/{id}")]
pub async fn update_merchant(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<Merchant>, ApiError> {
    let request = parse_json::<UpdateMerchantRequest>(payload).await?;
    if let Some(name) = &request.name {
        check_text("name", name, 128)?;
    }
    if let Some(Some(url)) = &request.notify_url {
        check_url("notify_url", url)?;
    }
    // Stored in one spelling, whichever the operator pasted.
    let public_key = match &request.epay_v2_public_key {
        Some(Some(text)) => Some(Some(
            MerchantPublicKey::parse(text)
                .and_then(|key| key.to_base64())
                .map_err(|reason| {
                    ApiError::InvalidRequest(format!("epay_v2_public_key: {reason}"))
                })?,
        )),
        Some(None) => Some(None),
        None => None,
    };
    let id = id.into_inner();
    let merchant = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let changes = MerchantChanges {
                name: request.name.as_deref(),
                enabled: request.enabled,
                notify_url: request.notify_url.as_ref().map(Option::as_deref),
                epay_v2_public_key: public_key.as_ref().map(Option::as_deref),
                epusdt_channel: request.epusdt_channel,
            };
            Ok(update(conn, operator.operator(), &id, &changes)?)
        })
        .await?;
    Ok(web::Json(Merchant::from(&merchant)))
}

/// A merchant's new API key, shown only in this answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedApiKey {
    pub id: String,
    /// The old key is refused from now on.
    pub api_key: String,
}

/// Give a merchant a new API key (the old one stops working at once).
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The merchant id (`mch_…`)")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The new key", body = RotatedApiKey),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[post("/merchants/{id}/rotate-api-key")]
pub async fn rotate_api_key(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
) -> Result<web::Json<RotatedApiKey>, ApiError> {
    let id = id.into_inner();
    let CreatedMerchant { merchant, api_key } = state
        .db
        .run(move |conn| rotate_key(conn, operator.operator(), &id))
        .await?;
    Ok(web::Json(RotatedApiKey {
        id: merchant.id,
        api_key,
    }))
}

/// The platform's 易支付 V2 public key, which merchants enter in their plugins (平台公钥).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlatformPublicKey {
    /// Base64 of the DER SubjectPublicKeyInfo (what 彩虹易支付's SDK configuration takes).
    pub public_key: String,
    /// The same key as a PEM block.
    pub public_key_pem: String,
}

/// The platform's 易支付 V2 public key (the key pair is generated at first use; its private
/// half is stored sealed and never shown).
#[utoipa::path(
    tag = "operator",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The platform public key", body = PlatformPublicKey),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/epay-v2/platform-key")]
pub async fn platform_key(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
) -> Result<web::Json<PlatformPublicKey>, ApiError> {
    let key = state
        .db
        .run(|conn| Ok::<_, ApiError>(epay_v2_key(conn)?))
        .await?;
    Ok(web::Json(PlatformPublicKey {
        public_key_pem: key.public_pem(),
        public_key: key.public_base64.clone(),
    }))
}
