//! 易支付's rules: its `type` names, its notify fields and their sorted md5 sign, its times.

use chrono::{DateTime, Utc};

use super::compat_field;
use crate::core::signing::{epay_sign, joinable};
use crate::db::merchants::Merchant;
use crate::db::orders::Order;
use crate::domain::Channel;
use crate::money::Amount;

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

/// Why a 易支付 `type` is refused, naming what is served (`qqpay`, `bank`, `jdpay` and the
/// like need a merchant contract a personal collection code does not have).
pub fn unsupported_type(code: &str) -> String {
    format!(
        "不支持的支付方式 {code:?}：本站只支持 alipay（支付宝）和 wxpay（微信支付） \
         (type {code:?} is not served: alipay or wxpay)"
    )
}

/// The fields of a paid order's notify that 易支付 V1 and V2 share, unsigned: `pid, trade_no,
/// out_trade_no, type, name, money, trade_status[, param]`. Empty fields are left out: some
/// plugins (v2board) verify over every field received, empty ones included, while the sign
/// skips them. The name (any order's subject) and the param of an order made before `&` and `=`
/// were refused in it are [`joinable`].
pub(crate) fn paid_fields(order: &Order, merchant: &Merchant) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = vec![
        ("pid", merchant.pid.to_string()),
        ("trade_no", order.id.clone()),
        ("out_trade_no", order.merchant_order_id.clone()),
        ("type", epay_type(order.channel).to_string()),
        (
            "name",
            joinable(order.subject.as_deref().unwrap_or_default()),
        ),
        ("money", Amount::from_stored(order.amount).to_string()),
        ("trade_status", "TRADE_SUCCESS".to_string()),
        ("param", joinable(compat_field(order, "param"))),
    ];
    fields.retain(|(_, value)| !value.is_empty());
    fields
}

/// 易支付's notify fields for a paid order, signed with the merchant's md5 key.
pub fn epay_notify_fields(order: &Order, merchant: &Merchant) -> Vec<(&'static str, String)> {
    let mut fields = paid_fields(order, merchant);
    let sign = epay_sign(
        fields.iter().map(|(k, v)| (*k, v.as_str())),
        merchant.md5_key.expose(),
    );
    fields.push(("sign", sign));
    fields.push(("sign_type", "MD5".to_string()));
    fields
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
    fn china_time_is_eight_hours_ahead() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(epay_time(at), "2026-11-26 04:00:00");
    }

    #[test]
    fn a_refused_type_names_what_is_served() {
        let message = unsupported_type("qqpay");
        assert!(
            message.contains("qqpay") && message.contains("alipay") && message.contains("wxpay")
        );
    }
}
