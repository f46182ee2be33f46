//! 易支付 V2's rules: signed content (the sorted `k=v&…` of non-blank fields), and the notify of a
//! paid order, signed with the platform's key at the moment it is sent (clients refuse a
//! `timestamp` more than 300 s old).

use super::epay::{epay_time, paid_fields};
use crate::core::rsa_signing::PlatformKey;
use crate::core::signing::{SignSpelling, sorted_fields_text};
use crate::db::merchants::Merchant;
use crate::db::orders::Order;

/// How far a V2 request's `timestamp` may be from the server clock, either way (the SDKs'
/// own window for answers).
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;

/// Adds `timestamp`, then `sign` (the platform's signature of the content) and `sign_type=RSA`.
pub fn sign_fields(
    mut fields: Vec<(&'static str, String)>,
    key: &PlatformKey,
    timestamp: i64,
) -> Result<Vec<(&'static str, String)>, String> {
    fields.push(("timestamp", timestamp.to_string()));
    let content = sorted_fields_text(
        fields.iter().map(|(k, v)| (*k, v.as_str())),
        SignSpelling::SkipBlank,
    );
    fields.push(("sign", key.sign(&content)?));
    fields.push(("sign_type", "RSA".to_string()));
    Ok(fields)
}

/// The notify of a paid order: 易支付's fields with `addtime` and `endtime`, signed.
pub fn notify_fields(
    order: &Order,
    merchant: &Merchant,
    key: &PlatformKey,
    timestamp: i64,
) -> Result<Vec<(&'static str, String)>, String> {
    let mut fields = paid_fields(order, merchant);
    fields.push(("addtime", epay_time(order.created_at)));
    fields.push(("endtime", order.paid_at.map(epay_time).unwrap_or_default()));
    sign_fields(fields, key, timestamp)
}
