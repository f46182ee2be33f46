//! V免签's rules: `type` 1 WeChat, 2 Alipay; prices as Java prints a double; the callback's md5
//! sign of its fields glued together; the order state.

use super::compat_field;
use crate::core::signing::md5_hex;
use crate::db::merchants::Merchant;
use crate::db::orders::Order;
use crate::domain::{Channel, OrderStatus};
use crate::money::{Amount, AmountError};

/// V免签's `type`: 1 WeChat, 2 Alipay (VPay's too).
pub fn vmq_type(channel: Channel) -> u8 {
    match channel {
        Channel::Wechat => 1,
        Channel::Alipay => 2,
    }
}

pub fn channel_of_vmq_type(code: &str) -> Option<Channel> {
    match code.trim() {
        "1" => Some(Channel::Wechat),
        "2" => Some(Channel::Alipay),
        _ => None,
    }
}

/// A price as V免签 clients write it: a Java `double` printed (`"1.0"`, `"0.1"`, `"12.34"`), or
/// a plain decimal. Read as written, never through a float.
pub fn parse_vmq_price(text: &str, max: Amount) -> Result<Amount, AmountError> {
    Amount::parse(text.trim(), max)
}

/// V免签's callback fields for a paid order: `payId, param, type, price, reallyPrice, sign`,
/// with `sign = md5(payId + param + type + price + reallyPrice + key)`.
pub fn vmq_callback_fields(order: &Order, merchant: &Merchant) -> Vec<(&'static str, String)> {
    let pay_id = order.merchant_order_id.clone();
    let param = compat_field(order, "param").to_string();
    let kind = vmq_type(order.channel).to_string();
    let price = Amount::from_stored(order.amount).to_string();
    let really = Amount::from_stored(order.payable_amount).to_string();
    let sign = md5_hex(&format!(
        "{pay_id}{param}{kind}{price}{really}{}",
        merchant.md5_key.expose()
    ));
    vec![
        ("payId", pay_id),
        ("param", param),
        ("type", kind),
        ("price", price),
        ("reallyPrice", really),
        ("sign", sign),
    ]
}

/// V免签's order state: 0 unpaid, 1 paid, -1 expired (or closed).
pub fn vmq_state(order: &Order) -> i8 {
    match order.status {
        OrderStatus::Pending => 0,
        OrderStatus::Paid => 1,
        OrderStatus::Expired | OrderStatus::Closed => -1,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn java_doubles_are_read_as_written() {
        let max = Amount::storage_limit();
        for (text, amount) in [
            ("1.0", "1.00"),
            ("0.1", "0.10"),
            ("12.34", "12.34"),
            ("100", "100.00"),
        ] {
            assert_eq!(parse_vmq_price(text, max).unwrap().to_string(), amount);
        }
        for bad in ["1.0E7", "0.30000000000000004", "-1.0", "NaN"] {
            assert!(parse_vmq_price(bad, max).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_vmq_price_never_panics(text in "\\PC*") {
            let _ = parse_vmq_price(&text, Amount::storage_limit());
            let _ = channel_of_vmq_type(&text);
            let _ = crate::core::compat::channel_of_epay_type(&text);
        }
    }
}
