//! Reading payment notifications: from the Android package, title and text that a listener
//! forwards, this module decides which channel paid and exactly one amount, or why the
//! notification must not be credited.
//!
//! It owns the table of known wordings (one row per app wording: packages, channel, who may post
//! it, and a pattern with the payment keyword immediately followed by the amount), the markers that
//! turn an amount into something else (a broadcast of an earlier payment, a running total), and the
//! strict spelling of amounts inside notification texts. Nothing here touches storage.
//!
//! The reading is deliberately narrow. An amount counts only when it sits right after a payment
//! keyword of a known wording from an official package; digits anywhere else (nicknames, points,
//! fees, totals) are never taken, and any doubt is a [`Refusal`] for the operator to decide.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use crate::domain::Channel;
use crate::money::Amount;

/// The channel and amount a payment notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub channel: Channel,
    pub amount: Amount,
}

/// Why a notification is not read as a payment. Every refusal is stored for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only the payment apps themselves post payments; an SMS or chat app saying
    /// "你已成功收款" is not one.
    #[error("notifications from package {0:?} are never payments")]
    UnknownPackage(String),
    /// The title (or the sender named at the start of the text) is not the payment service:
    /// a chat or group message that merely looks like a payment.
    #[error("sender {0:?} is not the payment service")]
    UnknownSender(String),
    /// A broadcast restating an earlier payment (`上一笔播报：…`).
    #[error("the notification restates an earlier payment")]
    PreviousPayment,
    /// The text after a payment keyword looks like an amount but is not a valid one
    /// (`1,23.00`, `0.00`, three decimals, too large).
    #[error("{0:?} after a payment keyword is not a valid amount")]
    InvalidAmount(String),
    /// Two or more different amounts follow payment keywords.
    #[error("different amounts in one notification: {}", list(.0))]
    Ambiguous(Vec<Amount>),
    /// The only amounts are running totals (`今日累计收款…`), not a payment.
    #[error("the notification reports a running total, not a payment")]
    Total,
    /// No known wording with an amount right after its payment keyword.
    #[error("no amount after a payment keyword")]
    NoAmount,
}

fn list(amounts: &[Amount]) -> String {
    amounts
        .iter()
        .map(Amount::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

const WECHAT_PACKAGES: &[&str] = &["com.tencent.mm", "com.tencent.wework"];
const ALIPAY_PACKAGES: &[&str] = &[
    "com.eg.android.AlipayGphone",
    "com.eg.android.AlipayGphoneHW",
];

/// The packages whose notifications can report a payment on `channel`.
pub fn official_packages(channel: Channel) -> &'static [&'static str] {
    match channel {
        Channel::Wechat => WECHAT_PACKAGES,
        Channel::Alipay => ALIPAY_PACKAGES,
    }
}

/// The channel an official payment package belongs to; `None` for any other package.
pub fn channel_of_package(package: &str) -> Option<Channel> {
    Channel::ALL
        .iter()
        .copied()
        .find(|channel| official_packages(*channel).contains(&package))
}

/// The amount as it follows a payment keyword: optional spaces, an optional currency sign,
/// optional spaces, digits (separators only between digits, so that a malformed grouping is seen
/// whole and refused instead of read up to its first comma), then optionally `元`/`块`.
macro_rules! amount {
    () => {
        "[ \t\u{3000}\u{a0}]*(?:[¥￥][ \t\u{3000}\u{a0}]*)?(?P<amount>[0-9](?:[0-9]|[,.][0-9])*)(?:[ \t\u{3000}\u{a0}]*(?P<unit>[元块]))?"
    };
}

/// The capture groups every pattern names; the reader takes the amount from these.
const AMOUNT_GROUP: &str = "amount";
const UNIT_GROUP: &str = "unit";

/// Titles WeChat posts payments under (`微信` from WeChat 8.0.50).
const WECHAT_SENDERS: &[&str] = &["微信支付", "微信收款助手", "微信收款商业版", "微信"];
/// WeChat Work's payment titles, and `收款通知`, the label it puts before the text.
const WEWORK_SENDERS: &[&str] = &["对外收款", "企业微信", "收款通知"];

/// One wording of a payment notification, as an app version posts it.
struct Wording {
    packages: &'static [&'static str],
    channel: Channel,
    /// Who may post it: the title, and the sender a stacked text starts with (`[4条]微信支付: `),
    /// must be one of these. `None` where the title itself varies and may carry the amount.
    senders: Option<&'static [&'static str]>,
    /// The payment keyword immediately followed by [`amount!`]; matched against the title and
    /// against the text after its sender prefix.
    pattern: &'static str,
    /// A text seen in the wild that this row reads; checked by the tests.
    #[cfg_attr(not(test), allow(dead_code))]
    example: &'static str,
}

/// The known wordings. A new app version's wording is one more row here (and a sample line in
/// `tests/data/notification-samples.tsv`).
const WORDINGS: &[Wording] = &[
    Wording {
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        senders: Some(WECHAT_SENDERS),
        pattern: concat!("微信支付收款", amount!()),
        example: "微信支付收款0.01元(朋友到店)",
    },
    Wording {
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        senders: Some(WECHAT_SENDERS),
        pattern: concat!("个人收款码到账", amount!()),
        example: "个人收款码到账¥0.03",
    },
    Wording {
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        senders: Some(WECHAT_SENDERS),
        pattern: concat!("二维码赞赏到账", amount!()),
        example: "二维码赞赏到账1.00元",
    },
    Wording {
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        senders: Some(WECHAT_SENDERS),
        pattern: concat!("收款到账", amount!()),
        example: "[店员消息]收款到账5.00元",
    },
    Wording {
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        senders: Some(WECHAT_SENDERS),
        pattern: concat!("收款单到账", amount!()),
        example: "收款单到账8.80元",
    },
    // 微信收款商业版 says only `收款3.00元` after its sender prefix; a bare 收款 is taken only as
    // the whole message, never from the middle of a sentence.
    Wording {
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        senders: Some(WECHAT_SENDERS),
        pattern: concat!("^收款", amount!()),
        example: "微信收款商业版: 收款3.00元",
    },
    Wording {
        packages: &["com.tencent.wework"],
        channel: Channel::Wechat,
        senders: Some(WEWORK_SENDERS),
        pattern: concat!("成功收款", amount!()),
        example: "成功收款66.00元",
    },
    Wording {
        packages: ALIPAY_PACKAGES,
        channel: Channel::Alipay,
        senders: None,
        pattern: concat!("向你付款", amount!()),
        example: "张三通过扫码向你付款0.01元",
    },
    Wording {
        packages: ALIPAY_PACKAGES,
        channel: Channel::Alipay,
        senders: None,
        pattern: concat!("你已成功收款", amount!()),
        example: "你已成功收款0.50元（老顾客消费）",
    },
    Wording {
        packages: ALIPAY_PACKAGES,
        channel: Channel::Alipay,
        senders: None,
        pattern: concat!("支付宝成功收款", amount!()),
        example: "支付宝成功收款1.00元。",
    },
];

/// Words after which an amount is money changing hands. Any such amount, in a known wording or
/// not, must agree with the one read: a second, different amount makes the notification ambiguous.
const MONEY_WORDS: &[&str] = &[
    "收款", "到账", "付款", "转账", "转了", "转入", "入账", "收到", "赞赏", "支付", "退款", "金额",
    "实收", "红包",
];

/// Markers of a broadcast restating an earlier payment. They taint every amount after them in
/// the notification (title first, then text), however far: the broadcast's own punctuation
/// (`上一笔播报：支付宝到账…`) sits between marker and keyword.
const PREVIOUS_PAYMENT_MARKERS: &[&str] = &["上一笔", "上笔播报", "历史播报", "最近一笔"];

/// Markers of a running total. They taint a keyword in the same clause only (`本月累计收款`),
/// so that a total appended after the payment (`…，今日累计收款¥99.00`) is ignored, not mistaken
/// for a second payment.
const TOTAL_MARKERS: &[&str] = &[
    "累计", "合计", "共计", "总计", "汇总", "总额", "今日", "今天", "本日", "当日", "昨日", "本周",
    "本月", "当月",
];

/// How far back from a keyword a total marker is looked for, in characters; clauses are short,
/// and the bound keeps reading linear on huge inputs.
const TOTAL_LOOKBACK_CHARS: usize = 12;

const CLAUSE_BREAKS: &[char] = &['，', ',', '。', '；', ';', '！', '!', '？', '?', '\n', '\r'];

const SPACES: &[char] = &[' ', '\t', '\u{3000}', '\u{a0}'];

struct CompiledWording {
    wording: &'static Wording,
    pattern: Regex,
}

static COMPILED_WORDINGS: LazyLock<Vec<CompiledWording>> = LazyLock::new(|| {
    WORDINGS
        .iter()
        .map(|wording| CompiledWording {
            wording,
            pattern: Regex::new(wording.pattern)
                .expect("every wording pattern compiles (checked by the tests)"),
        })
        .collect()
});

static MONEY_WORD_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    let words: Vec<String> = MONEY_WORDS.iter().map(|w| regex::escape(w)).collect();
    Regex::new(&format!("(?:{}){}", words.join("|"), amount!()))
        .expect("the money-word pattern compiles (checked by the tests)")
});

/// A stacked or group notification's text starts with `[N条]` and/or `sender: `. Whatever
/// precedes the first colon of the first line counts as a sender, however long and whatever
/// brackets it holds: a group member's nickname is chosen by the payer.
static SENDER_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\[[0-9]{1,6}条\])?(?:(?P<sender>[^:：\n]+)[:：][ \t\u{3000}]*)?")
        .expect("the sender prefix pattern compiles (checked by the tests)")
});

/// What follows a payment keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spelled {
    Money(Amount),
    /// Digits that are a count, rate, time or points (`1笔`, `0.38%`, `12:30`, `100积分`).
    NotMoney,
    Invalid(String),
}

/// One amount seen after a keyword, with what the text around it says about it.
struct Sighting {
    spelled: Spelled,
    previous_payment: bool,
    total: bool,
}

/// Reads a payment notification: the channel from the package, the amount from title and text.
pub fn read(package: &str, title: Option<&str>, text: Option<&str>) -> Result<Reading, Refusal> {
    let channel =
        channel_of_package(package).ok_or_else(|| Refusal::UnknownPackage(package.to_owned()))?;
    let fields = [title.unwrap_or(""), text.unwrap_or("")];
    // A previous-payment marker in the title precedes everything in the text.
    let title_marker = first_marker_end(fields[0]);
    let previous_from = [
        title_marker,
        title_marker.map(|_| 0).or(first_marker_end(fields[1])),
    ];

    let mut money_sightings = Vec::new();
    for (field, from) in fields.iter().zip(previous_from) {
        sight(&MONEY_WORD_PATTERN, field, 0, from, &mut money_sightings);
    }
    if money_sightings
        .iter()
        .any(|s| s.previous_payment && s.spelled != Spelled::NotMoney)
    {
        return Err(Refusal::PreviousPayment);
    }

    let mut wording_sightings = Vec::new();
    let mut refused_sender = None;
    let mut heard = false;
    for compiled in COMPILED_WORDINGS
        .iter()
        .filter(|c| c.wording.channel == channel && c.wording.packages.contains(&package))
    {
        let text_start = match sender_check(compiled, fields[0], fields[1]) {
            Ok(start) => start,
            Err(sender) => {
                refused_sender.get_or_insert(sender);
                continue;
            }
        };
        heard = true;
        sight(
            &compiled.pattern,
            fields[0],
            0,
            previous_from[0],
            &mut wording_sightings,
        );
        sight(
            &compiled.pattern,
            fields[1],
            text_start,
            previous_from[1],
            &mut wording_sightings,
        );
    }
    if !heard {
        return Err(Refusal::UnknownSender(refused_sender.unwrap_or_default()));
    }
    if wording_sightings.iter().any(|s| s.previous_payment) {
        return Err(Refusal::PreviousPayment);
    }

    let counted = || {
        wording_sightings
            .iter()
            .chain(&money_sightings)
            .filter(|s| !s.total)
    };
    if let Some(token) = counted().find_map(|s| match &s.spelled {
        Spelled::Invalid(token) => Some(token.clone()),
        _ => None,
    }) {
        return Err(Refusal::InvalidAmount(token));
    }
    let amounts: BTreeSet<Amount> = counted().filter_map(|s| money(&s.spelled)).collect();
    if amounts.len() > 1 {
        return Err(Refusal::Ambiguous(amounts.into_iter().collect()));
    }
    let read = wording_sightings
        .iter()
        .filter(|s| !s.total)
        .find_map(|s| money(&s.spelled));
    match read {
        Some(amount) => Ok(Reading { channel, amount }),
        None if wording_sightings
            .iter()
            .chain(&money_sightings)
            .any(|s| s.total && money(&s.spelled).is_some()) =>
        {
            Err(Refusal::Total)
        }
        None => Err(Refusal::NoAmount),
    }
}

fn money(spelled: &Spelled) -> Option<Amount> {
    match spelled {
        Spelled::Money(amount) => Some(*amount),
        _ => None,
    }
}

/// Checks who posted the notification for a wording limited to known senders; on success, where
/// the message itself starts in the text (after `[N条]sender: `).
fn sender_check(compiled: &CompiledWording, title: &str, text: &str) -> Result<usize, String> {
    let Some(senders) = compiled.wording.senders else {
        return Ok(0);
    };
    let title = title.trim();
    if !senders.contains(&title) {
        return Err(title.to_owned());
    }
    let Some(prefix) = SENDER_PREFIX.captures(text) else {
        return Ok(0);
    };
    if let Some(sender) = prefix.name("sender") {
        // Text before a later colon (`…收款1.00元(朋友到店) 时间:12:30`) that already holds the
        // payment wording is the message itself, not a sender naming itself.
        if compiled.pattern.is_match(sender.as_str()) {
            return Ok(0);
        }
        let sender = sender.as_str().trim();
        if !senders.contains(&sender) {
            return Err(sender.to_owned());
        }
    }
    Ok(prefix.get(0).map_or(0, |m| m.end()))
}

/// Where the first previous-payment marker in `field` ends, if any.
fn first_marker_end(field: &str) -> Option<usize> {
    PREVIOUS_PAYMENT_MARKERS
        .iter()
        .filter_map(|marker| field.find(marker).map(|at| at + marker.len()))
        .min()
}

/// Records every keyword-and-amount match of `pattern` in `field[start..]`.
fn sight(
    pattern: &Regex,
    field: &str,
    start: usize,
    previous_from: Option<usize>,
    sightings: &mut Vec<Sighting>,
) {
    let Some(message) = field.get(start..) else {
        return;
    };
    for caps in pattern.captures_iter(message) {
        let Some(whole) = caps.get(0) else {
            continue;
        };
        let at = start + whole.start();
        sightings.push(Sighting {
            spelled: spelled(&caps, &message[whole.end()..]),
            previous_payment: previous_from.is_some_and(|from| from <= at),
            total: in_total_clause(&field[..at]),
        });
    }
}

/// Whether the clause just before a keyword names a running total.
fn in_total_clause(before: &str) -> bool {
    let clause: String = before
        .chars()
        .rev()
        .take(TOTAL_LOOKBACK_CHARS)
        .take_while(|c| !CLAUSE_BREAKS.contains(c))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    TOTAL_MARKERS.iter().any(|marker| clause.contains(marker))
}

/// Decides what the digits after a keyword are, from the digits and what follows them.
fn spelled(caps: &Captures<'_>, rest: &str) -> Spelled {
    let Some(token) = caps.name(AMOUNT_GROUP).map(|m| m.as_str()) else {
        return Spelled::NotMoney;
    };
    let after = rest.trim_start_matches(SPACES);
    let next = after.chars().next();
    if caps.name(UNIT_GROUP).is_some() {
        // `5元5角` or `5元 50`: the amount goes on past the unit.
        if next.is_some_and(|c| c.is_ascii_digit()) {
            return Spelled::Invalid(token.to_owned());
        }
    } else if let Some(next) = next {
        // `5 00`, `5.` (`5.积分`) or `5, 00`: the digits go on or stop mid-number.
        if next.is_ascii_digit() || next == '.' {
            return Spelled::Invalid(token.to_owned());
        }
        if next == ','
            && after[next.len_utf8()..]
                .trim_start_matches(SPACES)
                .starts_with(|c: char| c.is_ascii_digit())
        {
            return Spelled::Invalid(token.to_owned());
        }
        if matches!(next, '%' | '％' | '‰' | ':' | '：') || next.is_alphanumeric() {
            return Spelled::NotMoney;
        }
    }
    match parse_grouped(token) {
        Some(amount) => Spelled::Money(amount),
        None => Spelled::Invalid(token.to_owned()),
    }
}

/// Parses `1234.56`, `1,234.56`, `1234.5` or `1234`; refuses groupings other than threes after a
/// first group of one to three digits.
fn parse_grouped(token: &str) -> Option<Amount> {
    let (int, frac) = match token.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (token, None),
    };
    if frac.is_some_and(|f| f.contains([',', '.'])) {
        return None;
    }
    let plain = if int.contains(',') {
        let mut groups = int.split(',');
        let first = groups.next()?;
        if !(1..=3).contains(&first.len()) || groups.clone().any(|g| g.len() != 3) {
            return None;
        }
        int.replace(',', "")
    } else {
        int.to_owned()
    };
    let canonical = match frac {
        Some(frac) => format!("{plain}.{frac}"),
        None => plain,
    };
    Amount::parse(&canonical, Amount::storage_limit()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const SAMPLES: &str = include_str!("../../tests/data/notification-samples.tsv");

    fn amount(text: &str) -> Amount {
        Amount::parse(text, Amount::storage_limit()).unwrap()
    }

    fn non_empty(field: &str) -> Option<&str> {
        (!field.is_empty()).then_some(field)
    }

    #[test]
    fn every_sample_line_reads_as_expected() {
        let mut failures = Vec::new();
        let mut checked = 0;
        for (index, line) in SAMPLES.lines().enumerate().skip(1) {
            let number = index + 1;
            let columns: Vec<&str> = line.split('\t').collect();
            let [package, title, text, expected] = columns[..] else {
                failures.push(format!("line {number}: not 4 columns: {line:?}"));
                continue;
            };
            checked += 1;
            let result = read(package, non_empty(title), non_empty(text));
            let ok = match (&result, expected) {
                (Err(_), "reject") => true,
                (Ok(reading), expected) => {
                    reading.amount.to_string() == expected
                        && Some(reading.channel) == channel_of_package(package)
                }
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "line {number}: {line:?}: expected {expected}, got {result:?}"
                ));
            }
        }
        assert!(checked >= 40, "only {checked} sample lines");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_reference_traps_are_refused_for_their_reason() {
        let cases = [
            (
                ("com.android.mms", "10086", "你已成功收款140.00元"),
                Refusal::UnknownPackage("com.android.mms".into()),
            ),
            (
                (
                    "com.eg.android.AlipayGphone",
                    "收钱提醒",
                    "上一笔播报：支付宝到账 1430.00 元。收钱提醒助手正在为您服务",
                ),
                Refusal::PreviousPayment,
            ),
            (
                (
                    "com.eg.android.AlipayGphone",
                    "最近一笔收款",
                    "你已成功收款6.00元",
                ),
                Refusal::PreviousPayment,
            ),
            (
                (
                    "com.eg.android.AlipayGphone",
                    "转账",
                    "李四已成功向你转了1笔钱",
                ),
                Refusal::NoAmount,
            ),
            (
                ("com.tencent.mm", "微信支付", "微信支付收款元(朋友到店)"),
                Refusal::NoAmount,
            ),
            (
                ("com.tencent.mm", "张三", "你好，我刚给你转了10.00元"),
                Refusal::UnknownSender("张三".into()),
            ),
            (
                ("com.tencent.mm", "微信支付", "张三: 微信支付收款100.00元"),
                Refusal::UnknownSender("张三".into()),
            ),
            (
                (
                    "com.eg.android.AlipayGphone",
                    "收钱码到账",
                    "你已成功收款3.00元，另有一笔收款4.00元待确认",
                ),
                Refusal::Ambiguous(vec![amount("3.00"), amount("4.00")]),
            ),
            (
                (
                    "com.tencent.mm",
                    "微信支付",
                    "微信支付收款1,23.00元(朋友到店)",
                ),
                Refusal::InvalidAmount("1,23.00".into()),
            ),
            (
                ("com.tencent.mm", "微信支付", "今日累计收款¥999.99"),
                Refusal::Total,
            ),
            (
                (
                    "com.eg.android.AlipayGphone",
                    "收钱码到账",
                    "你已成功收款0.38%",
                ),
                Refusal::NoAmount,
            ),
            (
                (
                    "com.eg.android.AlipayGphone",
                    "收钱码到账",
                    "你已成功收款51.积分",
                ),
                Refusal::InvalidAmount("51".into()),
            ),
            (
                ("com.tencent.mm", "微信支付", "个人收款码到账¥5, 00"),
                Refusal::InvalidAmount("5".into()),
            ),
        ];
        for ((package, title, text), refusal) in cases {
            assert_eq!(
                read(package, Some(title), Some(text)),
                Err(refusal),
                "{package} {title} {text}"
            );
        }
        assert!(
            read(
                "com.tencent.mm",
                Some("微信支付"),
                Some("本月累计收款共¥999.99")
            )
            .is_err()
        );
    }

    #[test]
    fn title_and_text_are_read_together() {
        let reading = read(
            "com.eg.android.AlipayGphone",
            Some("你已成功收款5.00元"),
            Some("已转入余额 100积分兑收钱音箱，去兑换>>"),
        );
        assert_eq!(
            reading,
            Ok(Reading {
                channel: Channel::Alipay,
                amount: amount("5.00")
            })
        );
        let same = read(
            "com.eg.android.AlipayGphone",
            Some("你已成功收款5.00元"),
            Some("你已成功收款5.00元"),
        );
        assert_eq!(same.map(|r| r.amount), Ok(amount("5.00")));
        assert!(read("com.eg.android.AlipayGphone", None, None).is_err());
        assert!(read("com.tencent.mm", None, Some("微信支付收款1.00元")).is_err());
    }

    #[test]
    fn packages_and_channels_agree_with_the_table() {
        for channel in Channel::ALL {
            for package in official_packages(*channel) {
                assert_eq!(channel_of_package(package), Some(*channel));
            }
        }
        assert_eq!(channel_of_package("com.android.mms"), None);
        assert_eq!(channel_of_package(""), None);
    }

    #[test]
    fn wordings_are_data_every_row_compiles_and_reads_its_example() {
        assert!(!WORDINGS.is_empty());
        assert_eq!(COMPILED_WORDINGS.len(), WORDINGS.len());
        for (row, wording) in WORDINGS.iter().enumerate() {
            let pattern = Regex::new(wording.pattern).unwrap();
            let names: Vec<&str> = pattern.capture_names().flatten().collect();
            assert!(names.contains(&AMOUNT_GROUP), "row {row} lacks ?P<amount>");
            assert!(names.contains(&UNIT_GROUP), "row {row} lacks ?P<unit>");
            assert!(!wording.packages.is_empty(), "row {row} has no package");
            for package in wording.packages {
                assert_eq!(
                    channel_of_package(package),
                    Some(wording.channel),
                    "row {row}: {package} is not an official {} package",
                    wording.channel
                );
            }
            let title = wording.senders.map_or("支付宝", |senders| senders[0]);
            let reading = read(wording.packages[0], Some(title), Some(wording.example));
            assert!(
                reading.is_ok(),
                "row {row} does not read {:?}: {reading:?}",
                wording.example
            );
        }
        for channel in Channel::ALL {
            for package in official_packages(*channel) {
                assert!(
                    WORDINGS.iter().any(|w| w.packages.contains(package)),
                    "no wording for {package}"
                );
            }
        }
        let names: Vec<&str> = MONEY_WORD_PATTERN.capture_names().flatten().collect();
        assert!(names.contains(&AMOUNT_GROUP) && names.contains(&UNIT_GROUP));
        assert!(
            SENDER_PREFIX
                .capture_names()
                .flatten()
                .any(|n| n == "sender")
        );
    }

    #[test]
    fn amount_spellings_are_strict() {
        for (token, expected) in [
            ("1,234.56", Some("1234.56")),
            ("12,345,678.90", Some("12345678.90")),
            ("1,000", Some("1000.00")),
            ("1234.5", Some("1234.50")),
            ("7", Some("7.00")),
            ("1,23.00", None),
            ("1234,567.00", None),
            ("1,2345.00", None),
            ("01.00", None),
            ("0.00", None),
            ("1.005", None),
            ("1.2.3", None),
            ("10000000000.00", None),
        ] {
            assert_eq!(
                parse_grouped(token).map(|a| a.to_string()),
                expected.map(str::to_owned),
                "{token}"
            );
        }
    }

    #[test]
    fn huge_and_odd_inputs_do_not_panic() {
        let long = "你已成功收款1.00元".repeat(20_000);
        assert_eq!(
            read("com.eg.android.AlipayGphone", Some(&long), Some(&long)).map(|r| r.amount),
            Ok(amount("1.00"))
        );
        let digits = format!("你已成功收款{}元", "9".repeat(100_000));
        assert!(read("com.eg.android.AlipayGphone", None, Some(&digits)).is_err());
        for odd in [
            "",
            "\0",
            "收款",
            "收款¥",
            "收款,",
            "[",
            "[1条]",
            "：",
            "\u{10ffff}收款9",
        ] {
            for package in WECHAT_PACKAGES.iter().chain(ALIPAY_PACKAGES) {
                let _ = read(package, Some(odd), Some(odd));
                let _ = read(package, Some("微信支付"), Some(odd));
            }
        }
    }

    /// The ways an amount may be spelled in a notification, written without the parser.
    fn spellings(amount: Amount) -> Vec<String> {
        let printed = amount.to_string();
        let (int, frac) = printed.split_once('.').unwrap();
        let mut grouped = String::new();
        for (i, digit) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let mut fracs = vec![format!(".{frac}")];
        if frac.ends_with('0') {
            fracs.push(format!(".{}", &frac[..1]));
        }
        if frac == "00" {
            fracs.push(String::new());
        }
        let mut all = Vec::new();
        for int in [int.to_owned(), grouped] {
            for frac in &fracs {
                all.push(format!("{int}{frac}"));
            }
        }
        all
    }

    /// Whether `amount` is written right after one of the reference's payment keywords.
    fn follows_a_payment_keyword(amount: Amount, fields: &[&str]) -> bool {
        let spellings = spellings(amount);
        fields.iter().any(|field| {
            ["收款", "到账", "付款"].iter().any(|keyword| {
                field.match_indices(keyword).any(|(at, _)| {
                    let rest = field[at + keyword.len()..]
                        .trim_start_matches([' ', '\t', '\u{3000}', '\u{a0}', '¥', '￥']);
                    spellings.iter().any(|spelling| {
                        rest.strip_prefix(spelling.as_str())
                            .is_some_and(|after| !after.starts_with(|c: char| c.is_ascii_digit()))
                    })
                })
            })
        })
    }

    fn package() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(
                WECHAT_PACKAGES
                    .iter()
                    .chain(ALIPAY_PACKAGES)
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
            ),
            1 => any::<String>(),
        ]
    }

    /// A payment keyword followed by something amount-like: well or badly grouped, with or
    /// without sign, spaces, decimals and unit.
    fn payment_phrase() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![
                "微信支付收款",
                "你已成功收款",
                "支付宝成功收款",
                "向你付款",
                "收款单到账",
                "收款到账",
                "个人收款码到账",
                "二维码赞赏到账",
                "成功收款",
                "收款",
                "到账",
                "转了",
            ]),
            prop::sample::select(vec!["", "¥", "￥", " ", "¥ ", " ￥"]),
            "[0-9]{1,4}(,[0-9]{2,4}){0,2}(\\.[0-9]{0,3})?",
            prop::sample::select(vec!["", "元", " 元", "块", "笔", "%", "积分", "(朋友到店)"]),
        )
            .prop_map(|(keyword, sign, digits, unit)| format!("{keyword}{sign}{digits}{unit}"))
    }

    /// Texts assembled from the pieces notifications are made of, so that generated input
    /// reaches the amount reading and not only the package check.
    fn notification_like() -> impl Strategy<Value = String> {
        let pieces = [
            "微信支付收款",
            "你已成功收款",
            "向你付款",
            "收款单到账",
            "个人收款码到账",
            "收款",
            "到账",
            "转了",
            "¥",
            "￥",
            " ",
            "1",
            "0",
            "9",
            "23",
            ",",
            ".",
            "元",
            "笔",
            "%",
            "积分",
            "上一笔",
            "累计",
            "今日",
            "：",
            ": ",
            "[2条]",
            "微信支付",
            "，",
            "(朋友到店)",
            "用户12",
            "\u{3000}",
        ];
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(pieces.to_vec()).prop_map(str::to_owned),
                3 => payment_phrase(),
                1 => any::<String>(),
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat())
    }

    fn title_like() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof![
            prop::sample::select(
                WECHAT_SENDERS
                    .iter()
                    .chain(WEWORK_SENDERS)
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
            ),
            notification_like(),
        ])
    }

    /// An amount as a notification might print it: sign, spaces, grouping, dropped zeros.
    fn printed_amount() -> impl Strategy<Value = (Amount, String)> {
        (
            1u64..=999_999_999_999,
            prop::sample::select(vec!["", "¥", "￥", "¥ ", " ", " ￥ "]),
            any::<bool>(),
            0usize..3,
        )
            .prop_map(|(cents, sign, group, drop)| {
                let amount = amount(&format!("{}.{:02}", cents / 100, cents % 100));
                let all = spellings(amount);
                // spellings(): plain first, then grouped; each with the full fraction first.
                let per_form = all.len() / 2;
                let form = if group { per_form } else { 0 };
                let written = &all[form + drop.min(per_form - 1)];
                (amount, format!("{sign}{written}"))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn read_never_panics(
            package in package(),
            title in prop::option::of(any::<String>()),
            text in prop::option::of(any::<String>()),
        ) {
            let _ = read(&package, title.as_deref(), text.as_deref());
        }

        #[test]
        fn read_never_panics_on_notification_like_text(
            package in package(),
            title in title_like(),
            text in prop::option::of(notification_like()),
        ) {
            let _ = read(&package, title.as_deref(), text.as_deref());
        }

        #[test]
        fn an_amount_read_is_written_after_a_payment_keyword(
            package in package(),
            title in title_like(),
            text in prop::option::of(notification_like()),
        ) {
            if let Ok(reading) = read(&package, title.as_deref(), text.as_deref()) {
                let fields = [title.as_deref().unwrap_or(""), text.as_deref().unwrap_or("")];
                prop_assert!(
                    follows_a_payment_keyword(reading.amount, &fields),
                    "{} read from {:?}", reading.amount, fields
                );
            }
        }

        #[test]
        fn generated_notifications_read_back_their_amount(
            template in prop::sample::select(vec![
                ("com.tencent.mm", "微信支付", "", "微信支付收款", "元(朋友到店)"),
                ("com.tencent.mm", "微信", "", "微信支付收款", "元(新顾客到店)"),
                ("com.tencent.mm", "微信收款助手", "", "[3条]微信收款助手: 微信支付收款", "元"),
                ("com.tencent.mm", "微信支付", "", "个人收款码到账", ""),
                ("com.tencent.mm", "微信收款助手", "", "[店员消息]收款到账", "元"),
                ("com.tencent.mm", "微信收款商业版", "", "微信收款商业版: 收款", "元"),
                ("com.tencent.wework", "对外收款", "", "成功收款", "元"),
                ("com.eg.android.AlipayGphone", "支付宝通知", "", "用户2024通过扫码向你付款", "元"),
                ("com.eg.android.AlipayGphoneHW", "收钱码到账", "", "你已成功收款", "元（老顾客消费）"),
                ("com.eg.android.AlipayGphone", "支付宝", "", "支付宝成功收款", "元。"),
                ("com.eg.android.AlipayGphone", "你已成功收款", "已转入余额 100积分兑收钱音箱", "", "元"),
            ]),
            (amount, written) in printed_amount(),
            suffix in "[a-z朋友到店老顾客消费（）()。，！ >]{0,12}",
        ) {
            let (package, title, other, before, after) = template;
            // Where nothing closes the amount, the suffix starts a new clause.
            let tail = if after.is_empty() && !suffix.is_empty() {
                format!("，{suffix}")
            } else {
                format!("{after}{suffix}")
            };
            let notice = format!("{before}{written}{tail}");
            // The last template carries the amount in the title, the way Alipay moved it.
            let (title, text) = if before.is_empty() {
                (format!("{title}{written}{tail}"), other.to_owned())
            } else {
                (title.to_owned(), notice)
            };
            prop_assert_eq!(
                read(package, Some(&title), Some(&text)),
                Ok(Reading { channel: channel_of_package(package).unwrap(), amount }),
                "title {:?} text {:?}", title, text
            );
        }
    }
}
