//! The closed vocabularies of the payment domain (channels, order statuses, payment results,
//! event types), stored as text columns with CHECK constraints and typed here, and the
//! merchant's order number ([`MerchantOrderId`]), parsed once for every protocol.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};
use std::io::Write;
use utoipa::ToSchema;

/// Declares a text-backed enum: its wire/database names, `FromStr`, `Display` and diesel mapping.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow, Serialize, Deserialize, ToSchema)]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                out.write_all(self.as_str().as_bytes())?;
                Ok(IsNull::No)
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
                text.parse().map_err(Into::into)
            }
        }
    };
}

text_enum! {
    /// The payment app a payee's collection code belongs to.
    Channel {
        Wechat => "wechat",
        Alipay => "alipay",
    }
}

text_enum! {
    /// `pending` → `paid` | `expired` | `closed`; `expired` → `paid` (late, within the grace).
    OrderStatus {
        Pending => "pending",
        Paid => "paid",
        Expired => "expired",
        Closed => "closed",
    }
}

text_enum! {
    /// What became of a reported payment.
    PaymentResult {
        /// It paid an order.
        Matched => "matched",
        /// No order was waiting for this amount; kept for the operator.
        Unmatched => "unmatched",
        /// No single amount could be read from it; kept for the operator.
        Unparsed => "unparsed",
        /// From an app this device may not report payments for (an SMS saying "收款"); never
        /// matched.
        Untrusted => "untrusted",
        /// Its text mentions more than one payment amount (equal or not); kept for the
        /// operator with every amount read.
        Ambiguous => "ambiguous",
        /// The listener's amount or channel and the payment app's notification do not agree,
        /// or the text is not a recognised incoming payment; kept for the operator.
        Contradicted => "contradicted",
        /// The same payment reported again (a copy under another id, or a payment of a paid
        /// order's amount within the grace); kept for the operator, never a second credit.
        Duplicate => "duplicate",
    }
}

text_enum! {
    /// The events an order's state changes emit (and webhooks deliver).
    EventType {
        OrderPaid => "order.paid",
        OrderExpired => "order.expired",
        OrderClosed => "order.closed",
    }
}

text_enum! {
    /// How a raw notification's credentials checked out.
    AuthResult {
        Ok => "ok",
        MissingCredentials => "missing_credentials",
        UnknownDevice => "unknown_device",
        BadSignature => "bad_signature",
        StaleTimestamp => "stale_timestamp",
        DeviceDisabled => "device_disabled",
        /// A forwarder's (timestamp, sign) used before for another body.
        Replayed => "replayed",
    }
}

text_enum! {
    /// Where a webhook delivery stands.
    DeliveryStatus {
        /// Waiting for its first attempt or a retry.
        Pending => "pending",
        /// A 2xx answer was received.
        Succeeded => "succeeded",
        /// Every attempt of the schedule failed; the operator may redeliver it.
        Failed => "failed",
    }
}

text_enum! {
    /// The protocol an order was created through; its callbacks speak the same one.
    OrderProtocol {
        /// solopay's own API; Standard Webhooks for every event.
        Native => "native",
        /// V免签's merchant API; a V免签 callback when paid.
        Vmq => "vmq",
        /// 易支付's merchant API; a 易支付 notify when paid.
        Epay => "epay",
        /// 易支付 V2 (RSA signs); a notify signed with the platform key when paid.
        Epay2 => "epay2",
        /// epusdt's merchant API; a JSON callback when paid.
        Epusdt => "epusdt",
        /// dreamncn VPay's merchant API; a SHA-256 signed callback when paid.
        Vpay => "vpay",
    }
}

text_enum! {
    /// How a webhook delivery is sent.
    DeliveryKind {
        /// A signed Standard Webhooks POST.
        Standard => "standard",
        /// V免签's callback: GET with an md5 sign; success is the body `success`.
        Vmq => "vmq",
        /// 易支付's notify: GET with a sorted md5 sign; success is a body containing `success`.
        Epay => "epay",
        /// 易支付 V2's notify: GET signed with the platform's RSA key at each attempt; success is
        /// a body containing `success`.
        Epay2 => "epay2",
        /// epusdt's callback: a JSON POST with an md5 `signature`; success is the body `ok`.
        Epusdt => "epusdt",
        /// VPay's callback: GET with an upper-case SHA-256 sign; success is a JSON body whose
        /// `state` is the number 0.
        Vpay => "vpay",
    }
}

text_enum! {
    /// What an operator did, as the audit log names it.
    AuditAction {
        MerchantCreate => "merchant.create",
        MerchantUpdate => "merchant.update",
        MerchantRotateApiKey => "merchant.rotate_api_key",
        MerchantRotateWebhookSecret => "merchant.rotate_webhook_secret",
        DeviceCreate => "device.create",
        DeviceUpdate => "device.update",
        DeviceRotateSecret => "device.rotate_secret",
        PayeeCreate => "payee.create",
        PayeeUpdate => "payee.update",
        OrderMarkPaid => "order.mark_paid",
        PaymentAssign => "payment.assign",
        WebhookRedeliver => "webhook.redeliver",
        AlertChannelCreate => "alert_channel.create",
        AlertChannelUpdate => "alert_channel.update",
    }
}

text_enum! {
    /// The kind of object an audit entry is about.
    AuditTarget {
        Merchant => "merchant",
        Device => "device",
        Payee => "payee",
        Order => "order",
        Payment => "payment",
        WebhookDelivery => "webhook_delivery",
        AlertChannel => "alert_channel",
    }
}

impl AuditAction {
    /// What kind of object the action is done to.
    pub fn target(self) -> AuditTarget {
        match self {
            AuditAction::MerchantCreate
            | AuditAction::MerchantUpdate
            | AuditAction::MerchantRotateApiKey
            | AuditAction::MerchantRotateWebhookSecret => AuditTarget::Merchant,
            AuditAction::DeviceCreate
            | AuditAction::DeviceUpdate
            | AuditAction::DeviceRotateSecret => AuditTarget::Device,
            AuditAction::PayeeCreate | AuditAction::PayeeUpdate => AuditTarget::Payee,
            AuditAction::OrderMarkPaid => AuditTarget::Order,
            AuditAction::PaymentAssign => AuditTarget::Payment,
            AuditAction::WebhookRedeliver => AuditTarget::WebhookDelivery,
            AuditAction::AlertChannelCreate | AuditAction::AlertChannelUpdate => {
                AuditTarget::AlertChannel
            }
        }
    }
}

text_enum! {
    /// Which door a notification came in through.
    NotificationSource {
        /// A signed listener's `POST /notify`.
        Notify => "notify",
        /// A generic forwarder's `POST /forward/{device}`.
        Forward => "forward",
        /// The V免签 app's `appPush`.
        Vmq => "vmq",
    }
}

text_enum! {
    /// What an alert tells the owner.
    AlertKind {
        /// A device sent no heartbeat or notification within the offline window.
        DeviceOffline => "device.offline",
        /// An offline device was heard from again.
        DeviceOnline => "device.online",
        /// A device's heartbeats go on but its notifications stopped while orders on its payees
        /// expired unpaid: the listener may have lost notification access.
        ListenerSilent => "device.listener_silent",
        /// The listener says it has no notification access.
        NotificationAccessLost => "device.notification_access_lost",
        /// A notification from a payment app could not be read as a payment.
        NotificationUnreadable => "notification.unreadable",
        /// The listener's amount and the payment app's text disagree.
        NotificationContradicted => "notification.contradicted",
        /// A payment was kept for the operator (unmatched, ambiguous, duplicate, untrusted).
        PaymentKept => "payment.kept",
        /// Several of the three above within a short time, told in one message.
        Digest => "digest",
        /// A merchant webhook keeps failing.
        WebhookFailing => "webhook.failing",
        /// A merchant webhook failed after its last retry.
        WebhookFailed => "webhook.failed",
        /// A payee is running out of free amounts at a price.
        AmountsRunningOut => "amounts.running_out",
    }
}

text_enum! {
    /// How an alert reaches the owner.
    AlertChannelKind {
        Telegram => "telegram",
        Wecom => "wecom",
        Dingtalk => "dingtalk",
        Feishu => "feishu",
        Bark => "bark",
        Email => "email",
        Webhook => "webhook",
    }
}

/// Declares a borrowed id of one kind of object, for functions that take ids of two kinds (or
/// an id and a name) side by side, so that they cannot be passed in each other's place.
macro_rules! id_of {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name<'a>(pub &'a str);

        impl<'a> $name<'a> {
            pub fn as_str(&self) -> &'a str {
                self.0
            }
        }

        impl std::fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
    };
}

id_of!(
    /// A merchant's id (`mch_…`).
    MerchantId
);
id_of!(
    /// An order's id (`ord_…`).
    OrderId
);
id_of!(
    /// A payment's id (`pay_…`).
    PaymentId
);
id_of!(
    /// A listener device's id (`dev_…`).
    DeviceId
);
id_of!(
    /// The operator acting: the name of the token it signed in with, as the audit log records it.
    Operator
);

/// A merchant's own order number, unique per merchant: a retried request with the same number is
/// the same order. Each protocol keeps the alphabet its clients have always sent; once parsed, an
/// order number is one thing whatever the protocol it came through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MerchantOrderId(String);

impl MerchantOrderId {
    /// The most characters any protocol may send.
    pub const MAX_CHARS: usize = 64;

    /// Reads an order number as `protocol` sends it: 1 to 64 characters, each one that protocol
    /// allows:
    ///
    /// - native `POST /orders`, `merchant_order_id`: `A-Z a-z 0-9 . _ : -`;
    /// - 易支付, `out_trade_no`: `A-Z a-z 0-9 . _ | -` (its plugins put `|` in their numbers);
    /// - 易支付 V2, `out_trade_no`: as 易支付;
    /// - V免签 and VPay, `payId`, and epusdt, `order_id`: any character but a control character
    ///   (their plugins send whatever their shop numbers orders with, Chinese included).
    ///
    /// Looking an order up (`GET /orders?merchant_order_id=`, 易支付's `api.php`) takes any text:
    /// a number no protocol accepts finds nothing.
    pub fn parse(text: &str, protocol: OrderProtocol) -> Result<Self, InvalidMerchantOrderId> {
        let allowed = |c: char| match protocol {
            OrderProtocol::Native => c.is_ascii_alphanumeric() || "._:-".contains(c),
            OrderProtocol::Epay | OrderProtocol::Epay2 => {
                c.is_ascii_alphanumeric() || "._|-".contains(c)
            }
            OrderProtocol::Vmq => !c.is_control(),
            // Their callbacks are signed over `k=v&k=v` joined without encoding: a number with
            // `&` or `=` could be read back as other fields (see `compat::check_joined_value`).
            OrderProtocol::Epusdt | OrderProtocol::Vpay => !c.is_control() && !"&=".contains(c),
        };
        if (1..=Self::MAX_CHARS).contains(&text.chars().count()) && text.chars().all(allowed) {
            Ok(MerchantOrderId(text.to_string()))
        } else {
            Err(InvalidMerchantOrderId(protocol))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A text that is not an order number in this protocol; the message names the protocol's field
/// and alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidMerchantOrderId(pub OrderProtocol);

impl std::fmt::Display for InvalidMerchantOrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            OrderProtocol::Native => {
                "merchant_order_id must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"
            }
            OrderProtocol::Epay | OrderProtocol::Epay2 => {
                "out_trade_no must be 1 to 64 characters of A-Z a-z 0-9 . _ | -"
            }
            OrderProtocol::Vmq => "payId must be 1 to 64 printable characters",
            OrderProtocol::Vpay => "payId must be 1 to 64 printable characters, without & or =",
            OrderProtocol::Epusdt => {
                "order_id must be 1 to 64 printable characters, without & or ="
            }
        })
    }
}

impl std::error::Error for InvalidMerchantOrderId {}

#[cfg(test)]
mod tests {
    use super::{MerchantOrderId, OrderProtocol};

    fn accepts(protocol: OrderProtocol, text: &str) -> bool {
        MerchantOrderId::parse(text, protocol).is_ok()
    }

    #[test]
    fn each_protocol_accepts_the_order_numbers_its_clients_send() {
        use OrderProtocol::{Epay, Native, Vmq};
        let longest = "a".repeat(64);
        for protocol in [Native, Epay, Vmq] {
            assert!(accepts(protocol, "A-1001.x_9"), "{protocol}");
            assert!(accepts(protocol, &longest), "{protocol}");
            assert!(!accepts(protocol, ""), "{protocol}");
            assert!(!accepts(protocol, &format!("{longest}a")), "{protocol}");
            assert!(!accepts(protocol, "A\n1"), "{protocol}");
        }
        assert!(accepts(Native, "shop:A1") && !accepts(Native, "E-1|x"));
        assert!(accepts(Epay, "E-1|x") && !accepts(Epay, "shop:A1"));
        for vmq_only in ["订单 1", "A/1?#&", "shop:A1|x"] {
            assert!(accepts(Vmq, vmq_only) && !accepts(Native, vmq_only));
        }
        // Callbacks signed over joined `k=v&k=v` fields take no `&` or `=` in the number.
        for joined in [OrderProtocol::Vpay, OrderProtocol::Epusdt] {
            assert!(accepts(joined, "订单 1/#"), "{joined}");
            assert!(
                !accepts(joined, "1&x") && !accepts(joined, "1=x"),
                "{joined}"
            );
        }
        // Characters, not bytes: 64 Chinese characters are one V免签 payId.
        assert!(accepts(Vmq, &"单".repeat(64)) && !accepts(Vmq, &"单".repeat(65)));
    }

    #[test]
    fn the_refusal_names_the_field_the_protocol_sends() {
        for (protocol, field) in [
            (OrderProtocol::Native, "merchant_order_id "),
            (OrderProtocol::Epay, "out_trade_no "),
            (OrderProtocol::Vmq, "payId "),
        ] {
            let refusal = MerchantOrderId::parse("", protocol)
                .err()
                .map(|e| e.to_string());
            assert!(refusal.is_some_and(|m| m.starts_with(field)), "{protocol}");
        }
    }
}
