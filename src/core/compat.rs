//! The rules of the older protocols (V免签, 易支付) that do not touch HTTP: their channel codes,
//! their amounts, the signed fields of their callbacks, and the return URL a payer's browser is
//! sent to.

use chrono::{DateTime, Utc};

use crate::core::signing::{epay_sign, md5_hex};
use crate::db::merchants::Merchant;
use crate::db::orders::Order;
use crate::domain::{Channel, OrderProtocol};
use crate::money::{Amount, AmountError};

/// V免签's `type`: 1 WeChat, 2 Alipay.
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

/// 易支付's `type`: `wxpay`, `alipay`.
pub fn epay_type(channel: Channel) -> &'static str {
    match channel {
        Channel::Wechat => "wxpay",
        Channel::Alipay => "alipay",
    }
}

pub fn channel_of_epay_type(code: &str) -> Option<Channel> {
    match code.trim() {
        "wxpay" => Some(Channel::Wechat),
        "alipay" => Some(Channel::Alipay),
        _ => None,
    }
}

/// A price as V免签 clients write it: a Java `double` printed (`"1.0"`, `"0.1"`, `"12.34"`), or
/// a plain decimal. Read as written, never through a float.
pub fn parse_vmq_price(text: &str, max: Amount) -> Result<Amount, AmountError> {
    Amount::parse(text.trim(), max)
}

/// The protocol fields an order keeps (`orders.compat`).
fn compat_field<'a>(order: &'a Order, name: &str) -> &'a str {
    order
        .compat
        .as_ref()
        .and_then(|c| c.get(name))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
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

/// 易支付's notify fields for a paid order, signed with the merchant's key.
pub fn epay_notify_fields(order: &Order, merchant: &Merchant) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = vec![
        ("pid", merchant.pid.to_string()),
        ("trade_no", order.id.clone()),
        ("out_trade_no", order.merchant_order_id.clone()),
        ("type", epay_type(order.channel).to_string()),
        ("name", order.subject.clone().unwrap_or_default()),
        ("money", Amount::from_stored(order.amount).to_string()),
        ("trade_status", "TRADE_SUCCESS".to_string()),
    ];
    let param = compat_field(order, "param");
    if !param.is_empty() {
        fields.push(("param", param.to_string()));
    }
    let sign = epay_sign(
        fields.iter().map(|(k, v)| (*k, v.as_str())),
        merchant.md5_key.expose(),
    );
    fields.push(("sign", sign));
    fields.push(("sign_type", "MD5".to_string()));
    fields
}

/// `url` with `fields` appended as a query (`?` or `&`, values URL-encoded).
pub fn with_query(url: &str, fields: &[(&str, String)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// Where a paid order's payer goes back to: the return URL, with the callback fields for the old
/// protocols (their shops read them there).
pub fn return_location(order: &Order, merchant: &Merchant) -> Option<String> {
    let url = order.return_url.as_deref()?;
    Some(match order.protocol {
        OrderProtocol::Native => url.to_string(),
        OrderProtocol::Vmq => with_query(url, &vmq_callback_fields(order, merchant)),
        OrderProtocol::Epay => with_query(url, &epay_notify_fields(order, merchant)),
    })
}

/// V免签's order state: 0 unpaid, 1 paid, -1 expired (or closed).
pub fn vmq_state(order: &Order) -> i8 {
    use crate::domain::OrderStatus::*;
    match order.status {
        Pending => 0,
        Paid => 1,
        Expired | Closed => -1,
    }
}

/// Seconds since the epoch, or 0 when never.
pub fn unix_or_zero(at: Option<DateTime<Utc>>) -> i64 {
    at.map_or(0, |t| t.timestamp())
}

/// A time as 易支付 shows it: `YYYY-MM-DD HH:MM:SS` in China Standard Time.
pub fn epay_time(at: DateTime<Utc>) -> String {
    // China Standard Time is UTC+8 all year (no daylight saving).
    (at.naive_utc() + chrono::TimeDelta::hours(8))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
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

    #[test]
    fn queries_are_appended_with_the_right_separator_and_encoding() {
        let fields = [("a", "1 2".to_string()), ("b", "x&y".to_string())];
        assert_eq!(
            with_query("https://s.example/n", &fields),
            "https://s.example/n?a=1+2&b=x%26y"
        );
        assert_eq!(
            with_query("https://s.example/n?k=v", &fields),
            "https://s.example/n?k=v&a=1+2&b=x%26y"
        );
    }

    #[test]
    fn china_time_is_eight_hours_ahead() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(epay_time(at), "2026-11-26 04:00:00");
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_vmq_price_never_panics(text in "\\PC*") {
            let _ = parse_vmq_price(&text, Amount::storage_limit());
            let _ = channel_of_vmq_type(&text);
            let _ = channel_of_epay_type(&text);
        }
    }
}
