//! Merchants: creating one with its secrets, and authenticating its API key.

use diesel::PgConnection;

use crate::core::secrets::{new_api_key, new_id, new_webhook_secret, sha256};
use crate::db::merchants::{self as merchant_rows, Merchant, NewMerchant};
use crate::error::ApiError;

/// A new merchant and the API key, which exists in clear only in this answer.
pub struct CreatedMerchant {
    pub merchant: Merchant,
    pub api_key: String,
}

pub fn create_merchant(
    conn: &mut PgConnection,
    name: &str,
    notify_url: Option<&str>,
) -> Result<CreatedMerchant, ApiError> {
    let api_key = new_api_key();
    let merchant = merchant_rows::insert(
        conn,
        &NewMerchant {
            id: &new_id("mch"),
            name,
            api_key_hash: &sha256(api_key.as_bytes()),
            webhook_secret: &new_webhook_secret(),
            notify_url,
        },
    )?;
    Ok(CreatedMerchant { merchant, api_key })
}

/// The enabled merchant whose API key this is. Keys are stored as SHA-256 digests, so the lookup
/// compares digests, never the key.
pub fn authenticate(conn: &mut PgConnection, api_key: &str) -> Result<Merchant, ApiError> {
    merchant_rows::find_enabled_by_api_key_hash(conn, &sha256(api_key.as_bytes()))?
        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))
}
