//! 易支付: `/submit.php` (a payment page), `/mapi.php` (JSON) and `/api.php?act=order` (query),
//! for the "易支付" plugins of PHP shop systems. Merchants are named by their numeric `pid`;
//! requests are signed with the merchant's md5 key: every field but `sign`, `sign_type` and empty
//! ones, sorted by name, joined as `k=v&k=v` without URL-encoding, the key appended, MD5.
//!
//! In this protocol `money` is the order's amount; what the payer must send (`money` plus or
//! minus a few fen) is shown on solopay's payment page and returned as `real_money`.
//!
//! This module holds what the endpoints share (the merchant's number, the sign, the failure
//! words); [`submit`] creates orders (`/submit.php`, `/mapi.php`), [`query`] reads one
//! (`/api.php`).

pub mod query;
pub mod submit;

use crate::compat::Fields;
use crate::core::secrets::constant_time_eq;
use crate::core::signing::epay_sign;
use crate::error::ApiError;

/// 易支付's `pid`: a merchant's number.
fn merchant_number(pid: &str) -> Result<i64, ApiError> {
    pid.trim()
        .parse()
        .map_err(|_| ApiError::InvalidRequest("pid must be a merchant number".into()))
}

/// What a 易支付 sign covers, as sent: every field (those solopay reads and any other, such as
/// `clientip` and `device`), and the sign.
struct EpaySign {
    fields: Vec<(String, String)>,
    sign: String,
}

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

    /// Checks the sign against the merchant's md5 key.
    fn check(&self, key: &str) -> Result<(), ApiError> {
        let pairs = self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let expected = epay_sign(pairs, key);
        let given = self.sign.trim().to_ascii_lowercase();
        if constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("签名错误".into()))
        }
    }
}

/// A failure in 易支付's words where solopay has words for it.
fn failure_message(error: &ApiError) -> String {
    match error {
        ApiError::NoPayeeAvailable => "收款通道暂不可用，请稍后再试 (no listener online)".into(),
        ApiError::AmountsExhausted => "订单超出负荷，请稍后重试 (amounts exhausted)".into(),
        other => other.to_string(),
    }
}
