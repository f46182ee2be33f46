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
