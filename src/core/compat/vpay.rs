//! dreamncn VPay's rules: the callback of a paid order (`payId, param, type, price,
//! reallyPrice`, prices as PHP prints a float, the upper-case SHA-256 sign) and its order states.

use super::{compat_field, php_number, vmq_type};
use crate::core::signing::vpay_sign;
use crate::db::merchants::Merchant;
use crate::db::orders::Order;
use crate::domain::OrderStatus;
use crate::money::Amount;

/// VPay's order state: -1 expired or closed, 0 waiting, 1 paid; 2 paid, the callback failed; 3
/// paid, the callback was answered.
pub fn vpay_state(order: &Order, callback_answered: Option<bool>) -> i8 {
    match (order.status, callback_answered) {
        (OrderStatus::Pending, _) => 0,
        (OrderStatus::Expired | OrderStatus::Closed, _) => -1,
        (OrderStatus::Paid, None) => 1,
        (OrderStatus::Paid, Some(false)) => 2,
        (OrderStatus::Paid, Some(true)) => 3,
    }
}

/// The callback's fields, signed with the merchant's key (VPay's communication key).
pub fn callback_fields(order: &Order, merchant: &Merchant) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = vec![
        ("payId", order.merchant_order_id.clone()),
        ("param", compat_field(order, "param").to_string()),
        ("type", vmq_type(order.channel).to_string()),
        ("price", php_number(Amount::from_stored(order.amount))),
        (
            "reallyPrice",
            php_number(Amount::from_stored(order.payable_amount)),
        ),
    ];
    let sign = vpay_sign(
        fields.iter().map(|(k, v)| (*k, v.as_str())),
        merchant.md5_key.expose(),
    );
    fields.push(("sign", sign));
    fields
}

/// The merchant's callback URL with VPay's placeholders filled in: `{payId}` (URL-encoded) and
/// `{orderId}`.
pub fn notify_url(url: &str, order: &Order) -> String {
    let pay_id: String =
        url::form_urlencoded::byte_serialize(order.merchant_order_id.as_bytes()).collect();
    url.replace("{payId}", &pay_id)
        .replace("{orderId}", &order.id)
}
