//! The rules of the older protocols that do not touch HTTP: their channel codes, their amounts,
//! the signed fields of their callbacks, and the return URL a payer's browser is sent to. One
//! file per protocol ([`vmq`], [`epay`], [`epay2`], [`epusdt`], [`vpay`]); this module holds what
//! they share and picks the callback of a delivery's kind.

pub mod epay;
pub mod epay2;
pub mod epusdt;
pub mod vmq;
pub mod vpay;

use chrono::{DateTime, Utc};

pub use epay::{channel_of_epay_type, epay_notify_fields, epay_time, epay_type};
pub use vmq::{channel_of_vmq_type, parse_vmq_price, vmq_callback_fields, vmq_state, vmq_type};

use crate::core::rsa_signing::PlatformKey;
use crate::db::merchants::Merchant;
use crate::db::orders::Order;
use crate::domain::{DeliveryKind, OrderProtocol};
use crate::money::Amount;

/// The protocol fields an order keeps (`orders.compat`).
pub fn compat_field<'a>(order: &'a Order, name: &str) -> &'a str {
    order
        .compat
        .as_ref()
        .and_then(|c| c.get(name))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// An amount as PHP prints a float and Go formats one shortest (`10`, `10.5`, `10.01`): the
/// spelling epusdt and VPay sign and send.
pub fn php_number(amount: Amount) -> String {
    amount.as_decimal().normalize().to_string()
}

/// `url` with `fields` appended as a query (`?` or `&`, values URL-encoded).
pub fn with_query(url: &str, fields: &[(&str, String)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// A paid order, as its callback describes it.
pub struct PaidOrder<'a> {
    pub order: &'a Order,
    pub merchant: &'a Merchant,
    /// The payment that paid it (none when the operator marked it paid).
    pub payment_id: Option<&'a str>,
}

/// What an old protocol's callback sends to the merchant's URL.
#[derive(Debug)]
pub enum Callback {
    /// A GET with these fields appended as the query.
    Query(Vec<(&'static str, String)>),
    /// A POST of this JSON body.
    Json(Vec<u8>),
}

/// The callback of a delivery of `kind` for a paid order, made at `timestamp` (unix seconds;
/// 易支付 V2 signs it, with the platform's key).
pub fn callback(
    kind: DeliveryKind,
    paid: &PaidOrder<'_>,
    platform_key: Option<&PlatformKey>,
    timestamp: i64,
) -> Result<Callback, String> {
    let (order, merchant) = (paid.order, paid.merchant);
    Ok(match kind {
        DeliveryKind::Standard => return Err("a standard delivery is no callback".into()),
        DeliveryKind::Vmq => Callback::Query(vmq_callback_fields(order, merchant)),
        DeliveryKind::Epay => Callback::Query(epay_notify_fields(order, merchant)),
        DeliveryKind::Epay2 => {
            let key = platform_key.ok_or("the platform's 易支付 V2 key is missing")?;
            Callback::Query(epay2::notify_fields(order, merchant, key, timestamp)?)
        }
        DeliveryKind::Epusdt => Callback::Json(epusdt::callback_body(paid)),
        DeliveryKind::Vpay => Callback::Query(vpay::callback_fields(order, merchant)),
    })
}

/// Where a paid order's payer goes back to: the return URL, with the callback fields for the old
/// protocols that send them there (their shops read them). 易支付 V2's are signed with the
/// platform key at `now`.
pub fn return_location(
    order: &Order,
    merchant: &Merchant,
    platform_key: Option<&PlatformKey>,
    now: i64,
) -> Option<String> {
    let url = order.return_url.as_deref()?;
    Some(match order.protocol {
        OrderProtocol::Native | OrderProtocol::Epusdt | OrderProtocol::Vpay => url.to_string(),
        OrderProtocol::Vmq => with_query(url, &vmq_callback_fields(order, merchant)),
        OrderProtocol::Epay => with_query(url, &epay_notify_fields(order, merchant)),
        OrderProtocol::Epay2 => {
            match platform_key.map(|key| epay2::notify_fields(order, merchant, key, now)) {
                Some(Ok(fields)) => with_query(url, &fields),
                _ => url.to_string(),
            }
        }
    })
}

/// Seconds since the epoch, or 0 when never.
pub fn unix_or_zero(at: Option<DateTime<Utc>>) -> i64 {
    at.map_or(0, |t| t.timestamp())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
    fn amounts_print_as_php_prints_a_float() {
        let max = Amount::storage_limit();
        for (text, php) in [
            ("10.00", "10"),
            ("10.50", "10.5"),
            ("10.01", "10.01"),
            ("0.10", "0.1"),
        ] {
            assert_eq!(php_number(Amount::parse(text, max).unwrap()), php);
        }
    }
}
