//! 易支付 V1: `/submit.php` (a payment page, or the cashier page when no `type` is sent),
//! `/mapi.php` (JSON) and `/api.php` (queries), for the "易支付" plugins of PHP shop systems.
//! Merchants are named by their numeric `pid`; requests are signed with the merchant's md5 key:
//! the fields but `sign` and `sign_type`, sorted by name, joined as `k=v&k=v` without
//! URL-encoding, the key appended, MD5. Plugins disagree on which fields they leave out of that
//! text (empty ones, PHP-falsy ones such as `"0"`, or none); a sign is accepted under whichever
//! of those spellings it verifies, over the fields as sent, and under no other.
//!
//! In this protocol `money` is the order's amount; what the payer must send (`money` plus or
//! minus a few fen) is shown on solopay's payment page and returned as `real_money`.
//!
//! This module holds what the endpoints share (the merchant's number, the sign, the failure
//! words); [`submit`] creates orders and checkouts (`/submit.php`, `/mapi.php`; 易支付 V2 reads
//! the same fields), [`query`] answers `/api.php`.

pub mod query;
pub mod submit;

use crate::compat::Fields;
use crate::core::signing::{SignSpelling, epay_sign_spelled, sign_matches};
use crate::error::ApiError;

/// 易支付's `pid`: a merchant's number.
pub(crate) fn merchant_number(pid: &str) -> Result<i64, ApiError> {
    pid.trim()
        .parse()
        .map_err(|_| ApiError::InvalidRequest("pid must be a merchant number".into()))
}

/// What a 易支付 sign covers, as sent: every field (those solopay reads and any other, such as
/// `clientip`, `device` and `sitename`), and the sign.
struct EpaySign {
    fields: Vec<(String, String)>,
    sign: String,
}

/// The spellings a V1 sign is tried under, most common first.
const V1_SPELLINGS: [SignSpelling; 3] = [
    SignSpelling::SkipEmpty,
    SignSpelling::SkipFalsy,
    SignSpelling::KeepEmpty,
];

impl EpaySign {
    fn read(fields: &Fields) -> EpaySign {
        EpaySign {
            fields: fields
                .pairs()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            sign: fields.text("sign").to_string(),
        }
    }

    /// Checks the sign against the merchant's md5 key; returns the spelling it verified under.
    fn check(&self, key: &str) -> Result<SignSpelling, ApiError> {
        V1_SPELLINGS
            .into_iter()
            .find(|spelling| {
                let pairs = self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                sign_matches(&epay_sign_spelled(pairs, key, *spelling), &self.sign)
            })
            .ok_or_else(|| ApiError::Unauthorized("签名错误".into()))
    }
}

/// A failure in 易支付's words where solopay has words for it.
pub(crate) fn failure_message(error: &ApiError) -> String {
    match error {
        ApiError::NoPayeeAvailable => "收款通道暂不可用，请稍后再试 (no listener online)".into(),
        ApiError::AmountsExhausted => "订单超出负荷，请稍后重试 (amounts exhausted)".into(),
        other => other.to_string(),
    }
}
