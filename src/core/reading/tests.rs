#![allow(clippy::unwrap_used)]
use super::refusals::RefusalClass;
use super::wordings::{AMOUNT_GROUP, COMPILED, Title, WORDINGS};
use super::*;
use proptest::prelude::*;
use regex::Regex;

const SAMPLES: &str = include_str!("../../../tests/data/notification-samples.tsv");

fn amount(text: &str) -> Amount {
    Amount::parse(text, Amount::storage_limit()).unwrap()
}

fn non_empty(field: &str) -> Option<&str> {
    (!field.is_empty()).then_some(field)
}

/// Every line: an amount, `reject` (any refusal) or `reject:<code>` (that refusal).
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
        let ok = match (&result, expected.split_once(':')) {
            (Err(_), None) if expected == "reject" => true,
            (Err(refusal), Some(("reject", code))) => refusal.code() == code,
            (Ok(reading), None) => {
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
    assert!(checked >= 120, "only {checked} sample lines");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_wording_row_compiles_is_official_and_reads_its_example() {
    assert_eq!(COMPILED.len(), WORDINGS.len());
    for wording in WORDINGS {
        let text = Regex::new(wording.text).unwrap();
        if let Title::Receipt(title) = wording.title {
            let title = Regex::new(title).unwrap();
            assert!(
                title.capture_names().flatten().any(|n| n == AMOUNT_GROUP),
                "{}: a receipt title holds the amount",
                wording.id
            );
        } else {
            assert!(
                text.capture_names().flatten().any(|n| n == AMOUNT_GROUP),
                "{} lacks ?P<amount>",
                wording.id
            );
        }
        assert!(
            !wording.packages.is_empty(),
            "{} has no package",
            wording.id
        );
        let (title, text, expected) = wording.example;
        for package in wording.packages {
            assert_eq!(channel_of_package(package), Some(wording.channel));
            assert_eq!(
                read(package, Some(title), Some(text)),
                Ok(Reading {
                    channel: wording.channel,
                    amount: amount(expected),
                    wording: wording.id,
                    titled_by_itself: matches!(wording.title, Title::Receipt(_)),
                }),
                "{} does not read its example",
                wording.id
            );
        }
        // The example mentions money exactly where the row puts it.
        let mentions = text::money_mentions(&normalise(title)).len()
            + text::money_mentions(&normalise(text)).len();
        let slots = usize::from(matches!(wording.title, Title::Receipt(_))).max(1);
        assert_eq!(mentions, slots, "{}", wording.id);
    }
    for channel in Channel::ALL {
        for package in official_packages(*channel) {
            assert!(
                WORDINGS.iter().any(|w| w.packages.contains(package)),
                "no wording for {package}"
            );
        }
    }
    assert_eq!(channel_of_package("com.android.mms"), None);
    assert_eq!(channel_of_package(""), None);
}

#[test]
fn each_refusal_class_is_refused_through_the_reader() {
    let receipt = |text: &str| read("com.tencent.mm", Some("微信支付"), Some(text));
    for (class, text) in [
        (RefusalClass::Broadcast, "上一笔播报:微信支付收款3.00元"),
        (RefusalClass::Refund, "微信支付收款3.00元(朋友到店),已退款"),
        (RefusalClass::Reversal, "微信支付收款3.00元已撤回"),
        (RefusalClass::Failure, "微信支付收款3.00元失败"),
        (RefusalClass::Cancellation, "微信支付收款3.00元已取消"),
        (RefusalClass::Withdrawal, "零钱提现3.00元"),
        (RefusalClass::Outgoing, "你已向张三转账3.00元"),
        (RefusalClass::RedPacket, "张三给你发了一个红包3.00元"),
        (RefusalClass::Balance, "微信支付收款3.00元,当前余额9.00元"),
        (RefusalClass::Summary, "上个月微信支付收款3.00元"),
    ] {
        match receipt(text) {
            Err(Refusal::Refused { class: found, .. }) => {
                assert_eq!(found, class, "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn the_reference_traps_are_refused_for_their_reason() {
    let cases = [
        (
            ("com.android.mms", "10086", "你已成功收款140.00元"),
            Refusal::UnknownPackage("com.android.mms".into()),
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
            ("com.eg.android.AlipayGphone", "", "你已成功收款20.00元"),
            Refusal::UnknownSender(String::new()),
        ),
        (
            (
                "com.eg.android.AlipayGphone",
                "收钱码到账",
                "你已成功收款3.00元，另有一笔收款4.00元",
            ),
            Refusal::Ambiguous(vec![amount("3.00"), amount("4.00")]),
        ),
        (
            (
                "com.tencent.mm",
                "微信支付",
                "微信支付收款5.00元(朋友到店)微信支付收款5.00元(朋友到店)",
            ),
            Refusal::Ambiguous(vec![amount("5.00"), amount("5.00")]),
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
            ("com.tencent.mm", "微信支付", "微信支付收款1，00.00元"),
            Refusal::InvalidAmount("1,00.00".into()),
        ),
        (
            ("com.tencent.mm", "微信支付", "微信支付收款元(朋友到店)"),
            Refusal::NoAmount,
        ),
        (
            (
                "com.eg.android.AlipayGphone",
                "收钱码到账",
                "你已成功收款0.38%",
            ),
            Refusal::UnknownWording,
        ),
    ];
    for ((package, title, text), refusal) in cases {
        assert_eq!(
            read(package, Some(title), Some(text)),
            Err(refusal),
            "{package} {title} {text}"
        );
    }
}

#[test]
fn invisible_and_look_alike_characters_are_not_official() {
    for title in [
        "微信支付\u{200b}",
        "\u{202e}微信支付",
        "微信\u{00ad}支付",
        "微信支付\n",
        "微信支付\u{3000}",
        " 微信支付",
        "微信\u{2003}",
        "⽀付宝",
        "微信收款助⼿",
        "ｗ微信",
    ] {
        let read = read(
            "com.tencent.mm",
            Some(title),
            Some("微信支付收款1.00元(朋友到店)"),
        );
        assert!(
            matches!(read, Err(Refusal::UnknownSender(_))),
            "{title:?}: {read:?}"
        );
    }
    let split = read(
        "com.tencent.mm",
        Some("微信支付"),
        Some("微信支付收款1.00元\n微信支付收款1.00元"),
    );
    assert!(matches!(split, Err(Refusal::Ambiguous(a)) if a.len() == 2));
}

#[test]
fn title_and_text_are_read_together() {
    let reading = read(
        "com.eg.android.AlipayGphone",
        Some("你已成功收款5.00元"),
        Some("已转入余额 100积分兑收钱音箱，去兑换>>"),
    );
    assert_eq!(reading.map(|r| r.amount), Ok(amount("5.00")));
    let restated = read(
        "com.eg.android.AlipayGphone",
        Some("你已成功收款5.00元"),
        Some("你已成功收款5.00元"),
    );
    assert_eq!(restated.map(|r| r.amount), Ok(amount("5.00")));
    assert!(read("com.eg.android.AlipayGphone", None, None).is_err());
    assert!(read("com.tencent.mm", None, Some("微信支付收款1.00元")).is_err());
}

#[test]
fn huge_and_odd_inputs_do_not_panic() {
    let long = "你已成功收款1.00元".repeat(20_000);
    assert!(read("com.eg.android.AlipayGphone", Some("支付宝"), Some(&long)).is_err());
    let digits = format!("你已成功收款{}元", "9".repeat(100_000));
    assert!(read("com.eg.android.AlipayGphone", Some("支付宝"), Some(&digits)).is_err());
    for odd in [
        "",
        "\0",
        "收款",
        "收款¥",
        "收款,",
        "[",
        "[1条]",
        ":",
        "\u{10ffff}收款9",
    ] {
        for package in official_packages(Channel::Wechat)
            .iter()
            .chain(official_packages(Channel::Alipay))
        {
            let _ = read(package, Some(odd), Some(odd));
            let _ = read(package, Some("微信支付"), Some(odd));
        }
    }
}

/// The receipts the table credits, restated with plain string operations instead of regular
/// expressions, so that the property below checks the table against a second reading of it:
/// the amount token as written when `(package, title, text)` is one of them.
fn oracle(package: &str, title: &str, text: &str) -> Option<String> {
    let title = normalise(title);
    let text = normalise(text);
    let wechat = ["微信支付", "微信收款助手", "微信收款商业版", "微信"];
    let alipay = ["支付宝通知", "支付宝", "收钱码到账", "店员通"];
    let wechat_labels = ["", "(朋友到店)", "(老顾客到店)", "(新顾客到店)"];
    let alipay_labels = ["", "(老顾客消费)", "(新顾客消费)"];
    match package {
        "com.tencent.mm" => {
            if !wechat.contains(&title.as_str()) {
                return None;
            }
            let mut message = text.as_str();
            if let Some(rest) = message.strip_prefix('[')
                && let Some((count, rest)) = rest.split_once("条]")
                && (1..=4).contains(&count.len())
                && count.bytes().all(|b| b.is_ascii_digit())
            {
                message = rest;
            }
            if let Some((sender, rest)) = message.split_once(':')
                && !sender.contains('\n')
            {
                if sender.trim() != title {
                    return None;
                }
                message = rest.trim_start_matches(' ');
            }
            let units: Vec<String> = wechat_labels.iter().map(|l| format!("元{l}")).collect();
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            let mut shapes: Vec<(&str, Vec<&str>)> = vec![
                ("微信支付收款", units),
                ("个人收款码到账", vec!["", "元"]),
                ("二维码赞赏到账", vec!["元"]),
                ("[店员消息]收款到账", vec!["元"]),
                ("收款到账", vec!["元"]),
                ("收款单到账", vec!["元"]),
            ];
            if title == "微信收款商业版" {
                shapes.push(("收款", vec!["元"]));
            }
            shapes
                .iter()
                .find_map(|(before, after)| between(message, before, after))
        }
        "com.tencent.wework" => {
            if !["对外收款", "企业微信"].contains(&title.as_str()) {
                return None;
            }
            let message = text.strip_prefix("成功收款")?.trim_start_matches(' ');
            between(message, "", &["", "元"])
        }
        "com.eg.android.AlipayGphone" | "com.eg.android.AlipayGphoneHW" => {
            let units: Vec<String> = alipay_labels
                .iter()
                .flat_map(|l| [format!("元{l}"), format!("元{l}。")])
                .collect();
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            if let Some(token) = between(&title, "你已成功收款", &["元"]) {
                let plain = ["", "已转入余额", "点击查看详情", "查看详情"];
                let accepted = plain.contains(&text.as_str())
                    || text
                        .strip_prefix("已转入余额 ")
                        .is_some_and(promotion_counts_points_only)
                    || alipay_labels.iter().any(|l| {
                        between(&text, "你已成功收款", &[&format!("元{l}")]).as_deref()
                            == Some(token.as_str())
                    });
                return accepted.then_some(token);
            }
            if !alipay.contains(&title.as_str()) {
                return None;
            }
            if let Some((name, rest)) = text.split_once("通过扫码向你付款") {
                // A name: letters and digits (and the masking `*`, `·`), not a sentence.
                let sentence_words = "我你您他她没不未已了吗呢吧啊请别假若次前刚曾再又也是的被给向说就都还才要会想将近人们无否某需须拟";
                let plain_name = (1..=16).contains(&name.chars().count())
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || "*·_-".contains(c))
                    && !name.chars().any(|c| sentence_words.contains(c))
                    && ![
                        "付款", "收款", "到账", "转账", "扫码", "支付", "如果", "万一", "应该",
                        "可能", "或许", "准备", "打算", "马上", "稍后", "待会", "等会", "明天",
                        "明日", "后天", "以后", "之后", "当天", "季度", "测试", "模拟", "演示",
                        "大家", "预计", "预约", "分期", "示例", "伪造", "今晚", "晚上", "早上",
                        "上午", "下午", "中午", "月底", "月初", "test", "fake", "demo", "tomorrow",
                        "later", "unpaid", "notpaid", "тест",
                    ]
                    .iter()
                    .any(|w| name.to_lowercase().contains(w));
                if plain_name && let Some(token) = between(rest, "", &["元"]) {
                    return Some(token);
                }
            }
            between(&text, "你已成功收款", &units)
                .or_else(|| between(&text, "支付宝成功收款", &["元", "元。"]))
        }
        _ => None,
    }
}

/// Whether Alipay's promotion after `已转入余额 ` is at most 40 characters on one line, a number
/// of points (`100积分`) counting as one, and every number in it counts points.
fn promotion_counts_points_only(rest: &str) -> bool {
    let mut units = 0;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        units += 1;
        if c == '\n' {
            return false;
        }
        if c.is_ascii_digit() {
            while chars.next_if(char::is_ascii_digit).is_some() {}
            if chars.next() != Some('积') || chars.next() != Some('分') {
                return false;
            }
        }
    }
    units <= 40
}

/// The amount token of `before + [¥] + token + [spaces] + one of after`, the whole of `text`.
fn between(text: &str, before: &str, after: &[&str]) -> Option<String> {
    let rest = text.strip_prefix(before)?.trim_start_matches(' ');
    let rest = rest
        .strip_prefix('¥')
        .map_or(rest, |r| r.trim_start_matches(' '));
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(rest.len());
    let (token, tail) = rest.split_at(end);
    if !token.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let tail = tail.trim_start_matches(' ');
    after.contains(&tail).then(|| token.to_owned())
}

fn packages() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "com.tencent.mm",
            "com.tencent.wework",
            "com.eg.android.AlipayGphone",
            "com.eg.android.AlipayGphoneHW",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["com.android.mms", "com.tencent.mobileqq", ""])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// The pieces notifications and the traps against them are made of: payment keywords, amounts
/// in every spelling, names, labels, stack prefixes, punctuation and the refusal words.
const PIECES: &[&str] = &[
    "微信支付收款",
    "你已成功收款",
    "支付宝成功收款",
    "通过扫码向你付款",
    "向你付款",
    "收款单到账",
    "收款到账",
    "个人收款码到账",
    "二维码赞赏到账",
    "成功收款",
    "收款",
    "到账",
    "转账",
    "¥",
    "￥",
    " ",
    "\u{3000}",
    "1",
    "0",
    "9",
    "23",
    "１",
    "，",
    ",",
    ".",
    "．",
    "元",
    "块",
    "笔",
    "%",
    "积分",
    "(朋友到店)",
    "（老顾客消费）",
    "。",
    ":",
    "：",
    ": ",
    "[2条]",
    "[店员消息]",
    "张三",
    "用户12",
    "微信支付",
    "微信收款助手",
    "支付宝",
    "已转入余额",
    "上一笔",
    "退款",
    "失败",
    "撤销",
    "取消",
    "提现",
    "你向",
    "已支付",
    "红包",
    "余额",
    "累计",
    "昨日",
    "上月",
    "\n",
    "收款通知",
    "你好",
    "我",
    "没有",
    "上次",
    "之前",
    "【",
    "】",
    "*",
    "·",
    "刚又收一笔",
];

fn notification_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(PIECES.to_vec()).prop_map(str::to_owned),
            1 => "[0-9]{1,5}(,[0-9]{3})?(\\.[0-9]{1,3})?",
            1 => any::<char>().prop_map(String::from),
        ],
        0..10,
    )
    .prop_map(|parts| parts.concat())
}

fn titles() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "微信支付", "微信收款助手", "微信收款商业版", "微信", "对外收款", "企业微信",
            "支付宝通知", "支付宝", "收钱码到账", "店员通", "张三", "",
        ])
        .prop_map(str::to_owned),
        1 => notification_text(),
    ]
}

/// A receipt of a known wording with its amount in any spelling, as real apps print it.
fn receipts() -> impl Strategy<Value = (String, String, String, Amount)> {
    let wordings = prop::sample::select(vec![
        ("com.tencent.mm", "微信支付", "微信支付收款", "元(朋友到店)"),
        ("com.tencent.mm", "微信", "微信支付收款", "元(新顾客到店)"),
        (
            "com.tencent.mm",
            "微信收款助手",
            "[3条]微信收款助手: 微信支付收款",
            "元",
        ),
        ("com.tencent.mm", "微信支付", "个人收款码到账", ""),
        ("com.tencent.mm", "微信收款助手", "[店员消息]收款到账", "元"),
        (
            "com.tencent.mm",
            "微信收款商业版",
            "微信收款商业版: 收款",
            "元",
        ),
        ("com.tencent.wework", "对外收款", "成功收款", "元"),
        (
            "com.eg.android.AlipayGphone",
            "支付宝通知",
            "用户2024通过扫码向你付款",
            "元",
        ),
        (
            "com.eg.android.AlipayGphoneHW",
            "收钱码到账",
            "你已成功收款",
            "元（老顾客消费）",
        ),
        (
            "com.eg.android.AlipayGphone",
            "支付宝",
            "支付宝成功收款",
            "元。",
        ),
    ]);
    (
        wordings,
        1u64..=999_999_999_999,
        prop::sample::select(vec!["", "¥", "￥", "¥ ", " ￥ "]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |((package, title, before, after), cents, sign, group, wide, short)| {
                let amount = Amount::parse(
                    &format!("{}.{:02}", cents / 100, cents % 100),
                    Amount::storage_limit(),
                )
                .unwrap();
                let printed = amount.to_string();
                let (int, frac) = printed.split_once('.').unwrap();
                let mut digits = String::new();
                for (i, digit) in int.chars().enumerate() {
                    if group && i > 0 && (int.len() - i) % 3 == 0 {
                        digits.push(',');
                    }
                    digits.push(digit);
                }
                let frac = if short && frac == "00" {
                    String::new()
                } else {
                    format!(".{frac}")
                };
                let mut written = format!("{digits}{frac}");
                if wide {
                    written = written
                        .chars()
                        .map(|c| match c {
                            '0'..='9' => char::from_u32(u32::from(c) - 0x30 + 0xff10).unwrap(),
                            ',' => '，',
                            '.' => '．',
                            other => other,
                        })
                        .collect();
                }
                (
                    package.to_owned(),
                    title.to_owned(),
                    format!("{before}{sign}{written}{after}"),
                    amount,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn read_never_panics(
        package in packages(),
        title in prop::option::of(any::<String>()),
        text in prop::option::of(any::<String>()),
    ) {
        let _ = read(&package, title.as_deref(), text.as_deref());
    }

    /// Nothing outside the table credits: whatever reads is one of the table's receipts (as the
    /// oracle restates them), with the amount at the oracle's position.
    #[test]
    fn only_a_known_wording_credits(
        package in packages(),
        title in titles(),
        text in notification_text(),
    ) {
        if let Ok(reading) = read(&package, Some(&title), Some(&text)) {
            let token = oracle(&package, &title, &text);
            prop_assert!(token.is_some(), "{reading:?} from {title:?} / {text:?}");
            prop_assert_eq!(
                token.as_deref().and_then(text::parse_amount),
                Some(reading.amount),
                "{:?} / {:?}", title, text
            );
        }
    }

    #[test]
    fn a_receipt_reads_back_its_amount_in_any_spelling((package, title, text, amount) in receipts()) {
        let reading = read(&package, Some(&title), Some(&text));
        prop_assert_eq!(reading.map(|r| r.amount), Ok(amount), "{:?} / {:?}", title, text);
    }

    /// A receipt with anything added before or after it (other than white space) is not a
    /// receipt any more, and a refusal word anywhere refuses it.
    #[test]
    fn a_receipt_with_anything_around_it_credits_nothing(
        (package, title, text, _amount) in receipts(),
        added in notification_text(),
        before in any::<bool>(),
    ) {
        if normalise(&added).is_empty() {
            return Ok(());
        }
        let changed = if before { format!("{added}{text}") } else { format!("{text}{added}") };
        if let Ok(reading) = read(&package, Some(&title), Some(&changed)) {
            // Only where the addition is itself part of the wording's own shape (a label, a
            // stack count, a full stop) may the text still read, and then as the oracle does.
            prop_assert_eq!(
                oracle(&package, &title, &changed).as_deref().and_then(text::parse_amount),
                Some(reading.amount),
                "{:?} / {:?}", title, changed
            );
        }
    }

    #[test]
    fn a_refusal_word_anywhere_refuses_a_receipt(
        (package, title, text, _amount) in receipts(),
        word in prop::sample::select(vec![
            "上一笔", "退款", "原路退回", "撤销", "失败", "未成功", "待确认", "取消", "提现",
            "你向", "已支付", "支付成功", "扣款", "红包", "当前余额", "累计", "合计", "今日",
            "昨天", "上月", "本周", "共3笔",
        ]),
        at in any::<prop::sample::Index>(),
    ) {
        let chars: Vec<char> = text.chars().collect();
        let at = at.index(chars.len() + 1);
        let changed: String = chars[..at].iter().chain(word.chars().collect::<Vec<_>>().iter()).chain(chars[at..].iter()).collect();
        let read = read(&package, Some(&title), Some(&changed));
        prop_assert!(read.is_err(), "{:?} / {:?}: {:?}", title, changed, read);
    }
}

/// Money a payer's name (or Alipay's promotion) writes in numerals that NFKC does not fold
/// into ASCII digits (Arabic-Indic, Devanagari, Chinese and Roman numerals) or with a magnitude
/// or small unit (`1万元`, `5毛`) is money outside the row's position all the same: a second
/// amount, so the notification is ambiguous, never the row's amount alone.
#[test]
fn money_in_numerals_nfkc_keeps_is_ambiguous() {
    let alipay = "com.eg.android.AlipayGphone";
    for (title, text) in [
        ("支付宝通知", "十元通过扫码向你付款0.01元"),
        ("支付宝通知", "壹佰元通过扫码向你付款0.01元"),
        ("支付宝通知", "〇元通过扫码向你付款0.01元"),
        ("支付宝通知", "١٠٠元通过扫码向你付款0.01元"),
        ("支付宝通知", "१००元通过扫码向你付款0.01元"),
        ("支付宝通知", "Ⅹ元通过扫码向你付款0.01元"),
        ("支付宝通知", "张三1万元通过扫码向你付款0.01元"),
        ("支付宝通知", "张三5毛通过扫码向你付款0.01元"),
        ("你已成功收款5.00元", "已转入余额 送٥٠٠刀"),
        ("你已成功收款5.00元", "已转入余额 送五百块"),
    ] {
        let read = read(alipay, Some(title), Some(text));
        assert!(
            matches!(read, Err(Refusal::Ambiguous(_))),
            "{title} / {text}: {read:?}"
        );
    }
    // Names that merely hold a numeral character are still names.
    for text in ["张三通过扫码向你付款0.01元", "百万通过扫码向你付款0.01元"] {
        assert_eq!(
            read(alipay, Some("支付宝通知"), Some(text)).map(|r| r.amount),
            Ok(amount("0.01")),
            "{text}"
        );
    }
}

/// A payer's name that makes the receipt a condition, a promise, a test or a tally (`如果…`,
/// `明天…`, `张三将…`, `测试…`, `3人…`, `当天…`) is a sentence, not a name: not read.
#[test]
fn a_payer_name_of_condition_future_test_or_tally_is_not_read() {
    for name in [
        "如果",
        "明天",
        "张三将",
        "张三马上",
        "稍后",
        "测试",
        "无人",
        "当天",
        "近7天",
        "3人",
        "多人",
        "大家",
        "本季度",
        "示例",
        "无效",
        "伪造",
        "某某",
        "今晚",
        "晚上",
        "上午",
        "月底",
        "分期",
        "预计",
        "预约",
        "需",
        "须",
        "能否",
        "可否",
        "无法",
        "拟",
        "TEST",
        "Tomorrow",
        "NotPaid",
        "FakeUser",
        "тест",
        "应该",
        "可能",
        "或许",
        "准备",
        "打算",
        "万一",
        "模拟",
    ] {
        let text = format!("{name}通过扫码向你付款100.00元");
        let read = read(
            "com.eg.android.AlipayGphone",
            Some("支付宝通知"),
            Some(&text),
        );
        assert!(read.is_err(), "{text}: {read:?}");
    }
}

/// Alipay's promotion under a receipt in the title is an advertisement: one that tells of
/// another payment, denies this one, carries a currency sign or a second line (any line
/// separator) is not that row.
#[test]
fn an_alipay_promotion_that_is_not_an_advertisement_is_not_read() {
    for text in [
        "已转入余额 测试通知,非真实收款",
        "已转入余额 另有一笔收款待入账",
        "已转入余额 模拟收款",
        "已转入余额 仅为示例",
        "已转入余额 假的",
        "已转入余额 ¥",
        "已转入余额 \u{2028}你已成功收款",
        "已转入余额 去兑换\r你已成功收款",
    ] {
        let read = read(
            "com.eg.android.AlipayGphone",
            Some("你已成功收款5.00元"),
            Some(text),
        );
        assert!(read.is_err(), "{text:?}: {read:?}");
    }
}

/// A payer's name that makes the payment a return, a cashback, a rejection or a lapse (`退货`,
/// `返现`, `驳回`, `拒绝`, `止付`, `失效`) is refused for that reason, like the words the refusal
/// classes knew.
#[test]
fn returns_cashbacks_rejections_and_lapses_are_refused() {
    for name in [
        "退货", "退單", "返现", "返还", "驳回", "拒收", "止付", "失效",
    ] {
        let text = format!("{name}通过扫码向你付款5.00元");
        let read = read(
            "com.eg.android.AlipayGphone",
            Some("支付宝通知"),
            Some(&text),
        );
        assert!(
            matches!(read, Err(Refusal::Refused { .. })),
            "{text}: {read:?}"
        );
    }
}

/// Digits that only NFKC makes (`①`, `¹`, `₀`, `𝟓`, `⒑` is `10.`) put an amount together from
/// look-alikes: `微信支付收款①⓪⓪元` would read 100.00, `1⒑5` 110.50. No app prints them:
/// refused.
#[test]
fn digit_look_alikes_that_nfkc_turns_into_digits_are_refused() {
    for (package, title, text) in [
        ("com.tencent.mm", "微信支付", "微信支付收款1⒑5元"),
        ("com.tencent.mm", "微信支付", "微信支付收款①⓪⓪元"),
        ("com.tencent.mm", "微信支付", "个人收款码到账¥¹⁰⁰"),
        ("com.tencent.mm", "微信支付", "微信支付收款𝟓.00元"),
        ("com.tencent.wework", "对外收款", "成功收款⑩元"),
        (
            "com.eg.android.AlipayGphone",
            "支付宝通知",
            "张三通过扫码向你付款1₀0.00元",
        ),
        ("com.eg.android.AlipayGphone", "你已成功收款⒌00元", ""),
    ] {
        let read = read(package, Some(title), Some(text));
        assert!(
            matches!(read, Err(Refusal::InvalidAmount(_))),
            "{title} / {text}: {read:?}"
        );
    }
    // Full-width digits are how apps print them.
    assert_eq!(
        read(
            "com.tencent.mm",
            Some("微信支付"),
            Some("微信支付收款１２.５０元")
        )
        .map(|r| r.amount),
        Ok(amount("12.50"))
    );
}
