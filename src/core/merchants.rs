//! Merchants: creating one with its secrets, authenticating its API key, finding the merchant an
//! old protocol names, and the operator's changes (each recorded in the audit log).

use std::time::Duration;

use diesel::PgConnection;

use crate::core::error::RuleError;
use crate::core::reconciliation::audit;
use crate::core::secrets::{new_api_key, new_id, new_md5_key, new_webhook_secret, sha256};
use crate::db::merchants::{self as merchant_rows, MerchantChanges, NewMerchant};
pub use crate::db::merchants::{Creator, Merchant};
use crate::db::orders::Order;
use crate::db::sealed::Sealed;
use crate::db::transaction_with_retry;
use crate::domain::{AuditAction, Operator};

/// How long the previous webhook secret keeps signing after a rotation.
pub const WEBHOOK_SECRET_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// A new merchant and the API key, which exists in clear only in this answer.
pub struct CreatedMerchant {
    pub merchant: Merchant,
    pub api_key: String,
}

pub fn create_merchant(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    name: &str,
    notify_url: Option<&str>,
) -> Result<CreatedMerchant, RuleError> {
    let api_key = new_api_key();
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let merchant = merchant_rows::insert(
            conn,
            &NewMerchant {
                id: &new_id("mch"),
                name,
                api_key_hash: &sha256(api_key.as_bytes()),
                webhook_secret: &Sealed::new(new_webhook_secret()),
                notify_url,
                md5_key: &Sealed::new(new_md5_key()),
            },
        )?;
        audit(
            conn,
            operator,
            AuditAction::MerchantCreate,
            &merchant.id,
            None,
            serde_json::json!({ "name": name, "notify_url": notify_url }),
        )?;
        Ok(CreatedMerchant {
            merchant,
            api_key: api_key.clone(),
        })
    })
}

/// The digest of an API key as presented: keys are stored as SHA-256 digests, so merchant
/// authentication compares digests, never the key.
pub fn api_key_digest(api_key: &str) -> Vec<u8> {
    sha256(api_key.as_bytes())
}

/// The enabled merchant `creator` names, or the refusal every merchant door gives.
pub fn authenticate(conn: &mut PgConnection, creator: Creator<'_>) -> Result<Merchant, RuleError> {
    merchant_rows::find_enabled_creator(conn, creator)?.ok_or_else(|| refusal(creator))
}

/// Why `creator` may not act as a merchant (no enabled merchant is it).
pub fn refusal(creator: Creator<'_>) -> RuleError {
    RuleError::Unauthorized(match creator {
        Creator::ApiKeyHash(_) => "invalid API key".into(),
        Creator::Merchant(_) => "the merchant is disabled".into(),
    })
}

/// The merchant V免签's merchant endpoints act for: the enabled one `SOLOPAY_VMQ_MERCHANT` names.
pub fn vmq_merchant(conn: &mut PgConnection, id: Option<&str>) -> Result<Merchant, RuleError> {
    let id = id.ok_or_else(|| {
        RuleError::InvalidRequest(
            "V免签's merchant endpoints are not configured: set SOLOPAY_VMQ_MERCHANT".into(),
        )
    })?;
    merchant_rows::find(conn, id)?
        .filter(|m| m.enabled)
        .ok_or_else(|| {
            RuleError::InvalidRequest("SOLOPAY_VMQ_MERCHANT names no enabled merchant".into())
        })
}

/// The enabled merchant with this number (易支付's `pid`).
pub fn merchant_by_pid(conn: &mut PgConnection, pid: i64) -> Result<Merchant, RuleError> {
    merchant_rows::find_by_pid(conn, pid)?
        .filter(|m| m.enabled)
        .ok_or_else(|| RuleError::InvalidRequest("no such merchant".into()))
}

/// A 易支付 V2 request's signer: the enabled merchant `pid` names, once its RSA public key
/// verifies `sign` over one of `contents` (the spellings of the signed text), `sign_type` is
/// `RSA` and `timestamp` (unix seconds) is within `window` of the database clock. Returns the
/// merchant and the database clock.
pub fn epay_v2_merchant(
    conn: &mut PgConnection,
    pid: i64,
    signed: &EpayV2Signature<'_>,
    window: Duration,
) -> Result<(Merchant, chrono::DateTime<chrono::Utc>), RuleError> {
    let merchant = merchant_by_pid(conn, pid)?;
    let refused = |why: &str| RuleError::Unauthorized(why.to_string());
    let key = merchant
        .epay_v2_public_key
        .as_deref()
        .ok_or_else(|| refused("商户 RSA 公钥未配置 (the merchant has no 易支付 V2 public key)"))?;
    let key =
        crate::core::rsa_signing::MerchantPublicKey::parse(key).map_err(RuleError::internal)?;
    if !signed.sign_type.eq_ignore_ascii_case("RSA") {
        return Err(refused("sign_type must be RSA"));
    }
    if !signed
        .contents
        .iter()
        .any(|content| key.verifies(content, signed.sign))
    {
        return Err(refused("签名验证失败 (bad sign)"));
    }
    let now = crate::db::clock(conn)?;
    let fresh = signed
        .timestamp
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| now.timestamp().abs_diff(t) <= window.as_secs());
    if !fresh {
        return Err(refused(
            "timestamp 校验失败 (more than 300 s from the server clock)",
        ));
    }
    Ok((merchant, now))
}

/// What a 易支付 V2 request's signature covers and says.
pub struct EpayV2Signature<'a> {
    /// The signed text, in each spelling a client may have used.
    pub contents: Vec<String>,
    pub sign: &'a str,
    pub sign_type: &'a str,
    pub timestamp: &'a str,
}

/// Every enabled merchant (epusdt's requests name none: the one whose key verifies the
/// signature is the sender).
pub fn enabled_merchants(conn: &mut PgConnection) -> Result<Vec<Merchant>, RuleError> {
    Ok(merchant_rows::list(conn)?
        .into_iter()
        .filter(|m| m.enabled)
        .collect())
}

/// The merchant an order belongs to (enabled or not).
pub fn order_merchant(conn: &mut PgConnection, order: &Order) -> Result<Merchant, RuleError> {
    merchant_rows::find(conn, &order.merchant_id)?
        .ok_or_else(|| RuleError::internal("the order's merchant is gone"))
}

/// Renames, enables or disables a merchant, or changes its default webhook URL, its 易支付 V2
/// public key or its default epusdt channel. A disabled merchant's API key is refused.
pub fn update_merchant(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    id: &str,
    changes: &MerchantChanges<'_>,
) -> Result<Merchant, RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let merchant = merchant_rows::update(conn, id, changes)?
            .ok_or_else(|| RuleError::not_found("merchant"))?;
        audit(
            conn,
            operator,
            AuditAction::MerchantUpdate,
            id,
            None,
            serde_json::json!({
                "name": changes.name,
                "enabled": changes.enabled,
                "notify_url": changes.notify_url,
                "epay_v2_public_key": changes.epay_v2_public_key,
                "epusdt_channel": changes.epusdt_channel,
            }),
        )?;
        Ok(merchant)
    })
}

/// A new API key; the old one stops working at once.
pub fn rotate_api_key(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    id: &str,
) -> Result<CreatedMerchant, RuleError> {
    let api_key = new_api_key();
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let merchant = merchant_rows::replace_api_key(conn, id, &sha256(api_key.as_bytes()))?
            .ok_or_else(|| RuleError::not_found("merchant"))?;
        audit(
            conn,
            operator,
            AuditAction::MerchantRotateApiKey,
            id,
            None,
            serde_json::json!({}),
        )?;
        Ok(CreatedMerchant {
            merchant,
            api_key: api_key.clone(),
        })
    })
}

/// A new webhook secret; the old one keeps signing alongside for [`WEBHOOK_SECRET_OVERLAP`].
pub fn rotate_webhook_secret(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    id: &str,
) -> Result<Merchant, RuleError> {
    let secret = Sealed::new(new_webhook_secret());
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let merchant =
            merchant_rows::rotate_webhook_secret(conn, id, &secret, WEBHOOK_SECRET_OVERLAP)?
                .ok_or_else(|| RuleError::not_found("merchant"))?;
        audit(
            conn,
            operator,
            AuditAction::MerchantRotateWebhookSecret,
            id,
            None,
            serde_json::json!({}),
        )?;
        Ok(merchant)
    })
}
