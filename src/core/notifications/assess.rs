//! Deciding what a notification is: a trustworthy payment of one amount on one channel, or
//! something kept for the operator with the result and reason that say why.

use diesel::PgConnection;

use super::Notification;
use crate::core::error::RuleError;
use crate::core::reading::{self, Refusal, channel_of_package, official_packages};
use crate::db::devices::{self as device_rows, Device};
use crate::domain::{Channel, PaymentResult};
use crate::money::Amount;

/// What a device may report payments for.
#[derive(Debug, Clone)]
pub struct Trust {
    pub packages: Vec<String>,
    /// The operator trusts this device's notifications that name no package.
    pub unlabelled: bool,
}

impl Trust {
    /// The operator's list for the device, or else the official packages of the channels of
    /// its payees.
    pub fn of_device(conn: &mut PgConnection, device: &Device) -> Result<Trust, RuleError> {
        let payees = match device.listed_packages() {
            Some(_) => Vec::new(),
            None => device_rows::payees_by_channel(conn, &device.id)?,
        };
        Ok(Trust::of_device_with(device, &payees))
    }

    /// [`Trust::of_device`], given the device's payees (`device_rows::payees_by_channel`).
    pub fn of_device_with(device: &Device, payees: &[(Channel, String)]) -> Trust {
        let unlabelled = device.trust_unlabelled;
        let packages = match device.listed_packages() {
            Some(packages) => packages,
            None => payees
                .iter()
                .flat_map(|(channel, _)| official_packages(*channel).iter())
                .map(|p| p.to_string())
                .collect(),
        };
        Trust {
            packages,
            unlabelled,
        }
    }
}

/// What a notification is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A trustworthy payment of one amount: match it.
    Payment { channel: Channel, amount: Amount },
    /// Withheld for the operator, never matched.
    Withheld(Withheld),
}

/// A notification kept for the operator: what it is, why, and what could be read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    pub result: PaymentResult,
    pub reason: String,
    pub channel: Option<Channel>,
    /// The amount the listener claimed, if it did.
    pub amount: Option<Amount>,
    /// Every payment amount the text mentions, when it mentions more than one.
    pub amounts_read: Vec<Amount>,
}

fn withhold(
    result: PaymentResult,
    reason: String,
    channel: Option<Channel>,
    amount: Option<Amount>,
) -> Verdict {
    Verdict::Withheld(Withheld {
        result,
        reason,
        channel,
        amount,
        amounts_read: Vec::new(),
    })
}

/// Decides whether a notification is a trustworthy payment of one amount.
///
/// Only packages the device may report for count; the channel the listener claims must be the
/// app's; a notification the app marked as a message or conversation is never a receipt. Where
/// a title or text is given it is read (the positive reader of [`reading`]): without an amount
/// from the listener it must read as exactly one; with one, it must read as that same single
/// amount (else `contradicted`). An amount without any text is the listener's word (the device
/// is trusted).
pub fn assess(notification: &Notification, trust: &Trust) -> Verdict {
    let n = notification;
    let claimed = n.channel;
    match &n.package {
        Some(package) if !trust.packages.iter().any(|p| p == package) => {
            return withhold(
                PaymentResult::Untrusted,
                format!("notifications from {package} are not trusted for this device"),
                claimed,
                n.amount,
            );
        }
        None if !n.listener_vouches && !trust.unlabelled => {
            return withhold(
                PaymentResult::Untrusted,
                "the notification does not say which app posted it".into(),
                claimed,
                n.amount,
            );
        }
        _ => {}
    }
    let of_package = n.package.as_deref().and_then(channel_of_package);
    let channel = match (claimed, of_package) {
        (Some(claimed), Some(app)) if claimed != app => {
            return withhold(
                PaymentResult::Contradicted,
                format!("the channel says {claimed} but the app is {app}'s"),
                Some(claimed),
                n.amount,
            );
        }
        (Some(channel), _) | (None, Some(channel)) => channel,
        (None, None) => {
            return withhold(
                PaymentResult::Unparsed,
                "cannot tell which channel the payment came through".into(),
                None,
                n.amount,
            );
        }
    };
    // A listener's amount for a notification that is not a receipt contradicts the app.
    let not_a_receipt = if n.amount.is_some() {
        PaymentResult::Contradicted
    } else {
        PaymentResult::Unparsed
    };
    if let Some(marked) = n.android.marked_as_message() {
        return withhold(
            not_a_receipt,
            format!("the app marked it as a message ({marked}): a chat is never a receipt"),
            Some(channel),
            n.amount,
        );
    }

    read_text(n, channel, not_a_receipt)
}

/// What `notification` would pay (channel and amount) were its device trusted for every app
/// and for notifications that name none: the most it can pay however its device's trust
/// changes before it is decided (trust only refuses). `None` when its text or marks alone
/// refuse it. Stored with a notification, so that what waits for the sweep can be told by what
/// it may pay (`would_pay`, `src/db/sql/matching.sql`).
pub fn could_pay(notification: &Notification) -> Option<(Channel, Amount)> {
    let everything = Trust {
        packages: notification.package.iter().cloned().collect(),
        unlabelled: true,
    };
    match assess(notification, &everything) {
        Verdict::Payment { channel, amount } => Some((channel, amount)),
        Verdict::Withheld(_) => None,
    }
}

/// The verdict on a notification's title and text (with the listener's amount, if any), once
/// its app, channel and marks are trusted.
fn read_text(n: &Notification, channel: Channel, not_a_receipt: PaymentResult) -> Verdict {
    let title = n.title.as_deref().filter(|t| !t.trim().is_empty());
    let text = n.text.as_deref().filter(|t| !t.trim().is_empty());
    if title.is_none() && text.is_none() {
        return match n.amount {
            Some(amount) => Verdict::Payment { channel, amount },
            None => withhold(
                PaymentResult::Unparsed,
                "neither an amount nor a text to read one from".into(),
                Some(channel),
                None,
            ),
        };
    }
    // No package, from a listener that vouches for what it read: the channel's app. A package
    // the operator allowed that is not a payment app is never read as a receipt: its texts are
    // whatever its senders type.
    let package = match n.package.as_deref() {
        Some(package) if channel_of_package(package).is_none() => {
            return withhold(
                not_a_receipt,
                format!(
                    "{package} is not a payment app: its texts are never read as receipts \
                     (send the amount without a text to report for it)"
                ),
                Some(channel),
                n.amount,
            );
        }
        Some(package) => package,
        None => official_packages(channel)
            .first()
            .copied()
            .unwrap_or_default(),
    };
    let read = reading::read(package, title, text);
    if let Ok(receipt) = &read
        && receipt.titled_by_itself
        && !n.android.shows_no_chat()
    {
        return withhold(
            not_a_receipt,
            format!(
                "the receipt of {} is in the title, which a chat partner can choose as a name: \
                 credited only when the listener sends the notification's template and it is \
                 one of Android's notice styles, not a chat",
                receipt.amount
            ),
            Some(channel),
            n.amount,
        );
    }
    match (n.amount, read) {
        (None, Ok(read)) => Verdict::Payment {
            channel,
            amount: read.amount,
        },
        (Some(amount), Ok(read)) if read.amount == amount => Verdict::Payment { channel, amount },
        (Some(amount), Ok(read)) => withhold(
            PaymentResult::Contradicted,
            format!("the amount says {amount} but the text says {}", read.amount),
            Some(channel),
            Some(amount),
        ),
        (claimed_amount, Err(Refusal::Ambiguous(amounts))) => Verdict::Withheld(Withheld {
            result: PaymentResult::Ambiguous,
            reason: Refusal::Ambiguous(amounts.clone()).to_string(),
            channel: Some(channel),
            amount: claimed_amount,
            amounts_read: amounts,
        }),
        (Some(amount), Err(refused)) => withhold(
            PaymentResult::Contradicted,
            format!(
                "the amount says {amount} but the text is not a recognised incoming payment: \
                 {refused}"
            ),
            Some(channel),
            Some(amount),
        ),
        (None, Err(refused)) => withhold(
            PaymentResult::Unparsed,
            refused.to_string(),
            Some(channel),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{AndroidMetadata, read_notify_body};
    use super::*;

    fn wechat_trust() -> Trust {
        Trust {
            packages: official_packages(Channel::Wechat)
                .iter()
                .map(|p| p.to_string())
                .collect(),
            unlabelled: false,
        }
    }

    fn notification(
        amount: Option<&str>,
        package: Option<&str>,
        title: &str,
        text: &str,
    ) -> Notification {
        Notification {
            notification_id: "n".into(),
            channel: Some(Channel::Wechat),
            amount: amount.map(|a| Amount::parse(a, Amount::storage_limit()).unwrap()),
            package: package.map(String::from),
            title: Some(title.to_string()).filter(|t| !t.is_empty()),
            text: Some(text.to_string()).filter(|t| !t.is_empty()),
            reported_at: None,
            listener_vouches: true,
            distinct_ids: true,
            android: AndroidMetadata::default(),
        }
    }

    fn payment(amount: &str) -> Verdict {
        Verdict::Payment {
            channel: Channel::Wechat,
            amount: Amount::parse(amount, Amount::storage_limit()).unwrap(),
        }
    }

    fn result_of(verdict: &Verdict) -> Option<PaymentResult> {
        match verdict {
            Verdict::Payment { .. } => None,
            Verdict::Withheld(withheld) => Some(withheld.result),
        }
    }

    #[test]
    fn what_a_notification_could_pay_is_the_most_any_trust_lets_it_pay() {
        let five = Some((
            Channel::Wechat,
            Amount::parse("5.00", Amount::storage_limit()).unwrap(),
        ));
        let receipt = "微信支付收款5.00元(朋友到店)";
        // A receipt pays whichever device's trust it meets later, unlabelled or not.
        let unlabelled = Notification {
            listener_vouches: false,
            ..notification(None, None, "微信支付", receipt)
        };
        assert!(matches!(
            assess(&unlabelled, &wechat_trust()),
            Verdict::Withheld(_)
        ));
        assert_eq!(could_pay(&unlabelled), five);
        // So does an amount alone, from any app the operator may trust.
        assert_eq!(
            could_pay(&notification(Some("5.00"), Some("com.android.mms"), "", "")),
            five
        );
        // A chat, another app's text, and two amounts pay nothing under any trust.
        for (package, title, text) in [
            ("com.tencent.mm", "张三", "你好，5.00元的那单我付过了"),
            ("com.android.mms", "95555", "你已成功收款5.00元"),
            (
                "com.tencent.mm",
                "微信支付",
                "微信支付收款5.00元，微信支付收款6.00元",
            ),
        ] {
            assert_eq!(
                could_pay(&notification(None, Some(package), title, text)),
                None
            );
        }
    }

    #[test]
    fn an_amount_alone_or_agreeing_with_the_text_is_a_payment() {
        let trust = wechat_trust();
        assert_eq!(
            assess(&notification(Some("10.02"), None, "", ""), &trust),
            payment("10.02")
        );
        let agreeing = notification(
            Some("10.02"),
            Some("com.tencent.mm"),
            "微信支付",
            "微信支付收款10.02元(朋友到店)",
        );
        assert_eq!(assess(&agreeing, &trust), payment("10.02"));
    }

    #[test]
    fn an_amount_with_a_text_that_is_not_that_receipt_is_contradicted() {
        let trust = wechat_trust();
        for (amount, title, text) in [
            ("3.00", "微信支付", "新版本的收款提示"),
            ("200.00", "微信支付", "你向某某转账200.00元"),
            ("25.00", "微信支付", "已支付¥25.00"),
            ("25.00", "微信支付", "退款到账25.00元"),
            ("10.00", "微信支付", "微信支付收款10.02元(朋友到店)"),
            ("1430.00", "微信支付", "上一笔播报：微信支付收款1430.00元"),
            ("5.00", "张三", "微信支付收款5.00元(朋友到店)"),
        ] {
            let verdict = assess(
                &notification(Some(amount), Some("com.tencent.mm"), title, text),
                &trust,
            );
            assert_eq!(
                result_of(&verdict),
                Some(PaymentResult::Contradicted),
                "{text}: {verdict:?}"
            );
        }
    }

    #[test]
    fn without_an_amount_the_text_must_yield_exactly_one() {
        let trust = wechat_trust();
        let read = notification(
            None,
            Some("com.tencent.mm"),
            "微信支付",
            "微信支付收款1,234.56元(朋友到店)",
        );
        assert_eq!(assess(&read, &trust), payment("1234.56"));
        let unlabelled = notification(None, None, "微信支付", "个人收款码到账¥0.03");
        assert_eq!(assess(&unlabelled, &trust), payment("0.03"));
        let nothing = notification(
            None,
            Some("com.tencent.mm"),
            "微信支付",
            "微信支付收款元(朋友到店)",
        );
        assert_eq!(
            result_of(&assess(&nothing, &trust)),
            Some(PaymentResult::Unparsed)
        );
        assert_eq!(
            result_of(&assess(&notification(None, None, "", ""), &trust)),
            Some(PaymentResult::Unparsed)
        );
        let two = assess(
            &notification(
                None,
                Some("com.tencent.mm"),
                "微信支付",
                "微信支付收款3.00元(朋友到店)微信支付收款3.00元(朋友到店)",
            ),
            &trust,
        );
        match two {
            Verdict::Withheld(withheld) => {
                assert_eq!(withheld.result, PaymentResult::Ambiguous);
                assert_eq!(withheld.amounts_read.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_or_conversation_is_never_a_receipt() {
        let trust = wechat_trust();
        let receipt = || {
            notification(
                None,
                Some("com.tencent.mm"),
                "微信支付",
                "微信支付收款5.00元(朋友到店)",
            )
        };
        assert_eq!(assess(&receipt(), &trust), payment("5.00"));
        for android in [
            AndroidMetadata {
                category: Some("msg".into()),
                ..AndroidMetadata::default()
            },
            AndroidMetadata {
                template: Some("android.app.Notification$MessagingStyle".into()),
                ..AndroidMetadata::default()
            },
            AndroidMetadata {
                conversation: Some(true),
                ..AndroidMetadata::default()
            },
        ] {
            let mut chat = receipt();
            chat.android = android.clone();
            assert_eq!(
                result_of(&assess(&chat, &trust)),
                Some(PaymentResult::Unparsed),
                "{android:?}"
            );
            chat.amount = Some(Amount::parse("5.00", Amount::storage_limit()).unwrap());
            assert_eq!(
                result_of(&assess(&chat, &trust)),
                Some(PaymentResult::Contradicted),
                "{android:?}"
            );
        }
        let mut other = receipt();
        other.android = AndroidMetadata {
            category: Some("status".into()),
            template: Some("android.app.Notification$BigTextStyle".into()),
            conversation: Some(false),
            ..AndroidMetadata::default()
        };
        assert_eq!(assess(&other, &trust), payment("5.00"));
    }

    #[test]
    fn a_receipt_in_the_title_needs_metadata_that_shows_no_chat() {
        let trust = Trust {
            packages: official_packages(Channel::Alipay)
                .iter()
                .map(|p| p.to_string())
                .collect(),
            unlabelled: false,
        };
        let mut titled = notification(
            None,
            Some("com.eg.android.AlipayGphone"),
            "你已成功收款5.00元",
            "已转入余额 100积分兑收钱音箱，去兑换>>",
        );
        titled.channel = Some(Channel::Alipay);
        assert_eq!(
            result_of(&assess(&titled, &trust)),
            Some(PaymentResult::Unparsed)
        );
        titled.android.template = Some("android.app.Notification$MessagingStyle".into());
        assert_eq!(
            result_of(&assess(&titled, &trust)),
            Some(PaymentResult::Unparsed)
        );
        titled.android.template = Some("android.app.Notification$BigTextStyle".into());
        assert_eq!(
            assess(&titled, &trust),
            Verdict::Payment {
                channel: Channel::Alipay,
                amount: Amount::parse("5.00", Amount::storage_limit()).unwrap(),
            }
        );
    }

    #[test]
    fn only_trusted_apps_and_their_channel_count() {
        let trust = wechat_trust();
        let sms = notification(
            Some("140.00"),
            Some("com.android.mms"),
            "10086",
            "你已成功收款140.00元",
        );
        assert_eq!(
            result_of(&assess(&sms, &trust)),
            Some(PaymentResult::Untrusted)
        );
        let mut unlabelled = notification(None, None, "微信支付", "微信支付收款2.00元");
        unlabelled.listener_vouches = false;
        assert_eq!(
            result_of(&assess(&unlabelled, &trust)),
            Some(PaymentResult::Untrusted)
        );
        let trusting = Trust {
            unlabelled: true,
            ..wechat_trust()
        };
        assert_eq!(assess(&unlabelled, &trusting), payment("2.00"));

        let mut wrong_channel =
            notification(Some("1.00"), Some("com.eg.android.AlipayGphone"), "", "");
        wrong_channel.channel = Some(Channel::Wechat);
        let trust_both = Trust {
            packages: vec![
                "com.eg.android.AlipayGphone".into(),
                "com.tencent.mm".into(),
            ],
            unlabelled: false,
        };
        assert_eq!(
            result_of(&assess(&wrong_channel, &trust_both)),
            Some(PaymentResult::Contradicted)
        );
    }

    #[test]
    fn an_allowed_app_that_is_not_a_payment_app_is_never_read() {
        let trust = Trust {
            packages: vec!["com.example.listener".into(), "com.android.mms".into()],
            unlabelled: false,
        };
        let sms = notification(
            None,
            Some("com.android.mms"),
            "微信支付",
            "微信支付收款5.00元(朋友到店)",
        );
        assert_eq!(
            result_of(&assess(&sms, &trust)),
            Some(PaymentResult::Unparsed)
        );
        let mut with_amount = sms;
        with_amount.amount = Some(Amount::parse("5.00", Amount::storage_limit()).unwrap());
        assert_eq!(
            result_of(&assess(&with_amount, &trust)),
            Some(PaymentResult::Contradicted)
        );
        // Its amount alone is the listener's word, as for any trusted app.
        let own = notification(Some("5.00"), Some("com.example.listener"), "", "");
        assert_eq!(assess(&own, &trust), payment("5.00"));
    }

    proptest::proptest! {
        #[test]
        fn reading_any_notify_body_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(notification) = read_notify_body(&body) {
                let _ = assess(&notification, &wechat_trust());
            }
        }

        #[test]
        fn assessing_any_text_never_panics(title in "\\PC*", text in "\\PC*", package in "\\PC*") {
            let n = notification(None, Some(&package), &title, &text);
            let _ = assess(&n, &wechat_trust());
        }
    }
}
