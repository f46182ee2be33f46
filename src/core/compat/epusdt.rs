//! epusdt's rules: which channel a `trade_type` names, and the JSON callback of a paid order,
//! signed with the merchant's token (its md5 key). For solopay, `amount` is the order's amount,
//! `actual_amount` what the payer sent (the payable amount, in yuan), `token` where to pay (the
//! collection code), `block_transaction_id` the payment that paid it.

use serde_json::value::RawValue;

use super::{PaidOrder, php_number};
use crate::core::signing::epusdt_sign;
use crate::domain::Channel;
use crate::money::Amount;

/// epusdt's order status: 1 waiting, 2 paid, 3 expired.
pub const STATUS_PAID: u8 = 2;

/// The channel a `trade_type` names: `wechat`/`wxpay` or `alipay`.
pub fn channel_of_trade_type(trade_type: &str) -> Option<Channel> {
    match trade_type.trim() {
        "wechat" | "wxpay" => Some(Channel::Wechat),
        "alipay" => Some(Channel::Alipay),
        _ => None,
    }
}

/// An amount as epusdt writes a JSON float: shortest, exact.
pub fn json_number(amount: Amount) -> Box<RawValue> {
    RawValue::from_string(php_number(amount)).unwrap_or_else(|_| zero())
}

#[allow(clippy::unreachable)] // "0" is a JSON number
fn zero() -> Box<RawValue> {
    RawValue::from_string("0".into()).unwrap_or_else(|_| unreachable!("0 is JSON"))
}

/// The callback body: `{trade_id, order_id, amount, actual_amount, token, block_transaction_id,
/// signature, status}`, signed over the same fields as the plugin reads them back (numbers in
/// their shortest form).
pub fn callback_body(paid: &PaidOrder<'_>) -> Vec<u8> {
    let order = paid.order;
    let amount = php_number(Amount::from_stored(order.amount));
    let actual = php_number(Amount::from_stored(order.payable_amount));
    let block = paid.payment_id.unwrap_or(order.id.as_str());
    let status = STATUS_PAID.to_string();
    let signature = epusdt_sign(
        [
            ("trade_id", order.id.as_str()),
            ("order_id", order.merchant_order_id.as_str()),
            ("amount", amount.as_str()),
            ("actual_amount", actual.as_str()),
            ("token", order.qr_code.as_str()),
            ("block_transaction_id", block),
            ("status", status.as_str()),
        ],
        paid.merchant.md5_key.expose(),
    );
    let text = |value: &str| serde_json::Value::String(value.to_string()).to_string();
    format!(
        "{{\"trade_id\":{},\"order_id\":{},\"amount\":{amount},\"actual_amount\":{actual},\
         \"token\":{},\"block_transaction_id\":{},\"signature\":{},\"status\":{status}}}",
        text(&order.id),
        text(&order.merchant_order_id),
        text(&order.qr_code),
        text(block),
        text(&signature),
    )
    .into_bytes()
}
