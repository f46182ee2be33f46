//! The table of known receipt wordings: one row per wording a payment app posts when money
//! arrives on a collection code, with the packages that post it, the titles it comes under, the
//! whole text anchored at both ends with the amount at its own position, and a real example.
//! A new app version's wording is one more row here (and a line in
//! `tests/data/notification-samples.tsv`).

use std::sync::LazyLock;

use regex::{Captures, Regex};

use crate::domain::Channel;

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

/// The amount where a wording prints it: optional spaces and `¥` (NFKC makes `￥` one), then
/// digits and the separators between them, taken whole so that a malformed amount is refused,
/// not cut short.
macro_rules! amount {
    () => {
        " *(?:¥ *)?(?P<amount>[0-9][0-9,.]*)"
    };
}

/// WeChat's payment titles (`微信` from WeChat 8.0.50).
const WECHAT_TITLES: &[&str] = &["微信支付", "微信收款助手", "微信收款商业版", "微信"];
const WECHAT_BUSINESS_TITLES: &[&str] = &["微信收款商业版"];
/// WeChat Work's payment titles.
const WEWORK_TITLES: &[&str] = &["对外收款", "企业微信"];
/// The system titles Alipay posts receipts under (its notices, the collection code, the clerk
/// app). Alipay documents no such list: these are the ones seen in the wild.
const ALIPAY_TITLES: &[&str] = &["支付宝通知", "支付宝", "收钱码到账", "店员通"];

/// Who may have posted a wording, read from the title.
pub enum Title {
    /// One of these system senders, exactly.
    Official(&'static [&'static str]),
    /// The receipt itself, anchored like a text (Alipay moved the amount into the title).
    Receipt(&'static str),
}

/// One wording of a receipt, as an app version posts it.
pub struct Wording {
    /// Names the wording in readings and reasons.
    pub id: &'static str,
    pub packages: &'static [&'static str],
    pub channel: Channel,
    pub title: Title,
    /// WeChat stacks a sender's notifications as `[N条]sender: text`; the sender must then be
    /// the title itself (a group member's name never is).
    pub stacked: bool,
    /// The whole text after the stack prefix, anchored at both ends; `(?P<amount>…)` where
    /// the amount sits. With a receipt title, the text may restate the amount or carry none.
    pub text: &'static str,
    /// A real notification of this wording: title, text, the amount it reads (checked by the
    /// tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub example: (&'static str, &'static str, &'static str),
}

/// WeChat's customer labels after the amount.
macro_rules! wechat_label {
    () => {
        r"(?:\((?:朋友|老顾客|新顾客)到店\))?"
    };
}

/// Alipay's customer labels after the amount.
macro_rules! alipay_label {
    () => {
        r"(?:\((?:老顾客|新顾客)消费\))?"
    };
}

pub const WORDINGS: &[Wording] = &[
    Wording {
        id: "wechat.collection_code",
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        title: Title::Official(WECHAT_TITLES),
        stacked: true,
        text: concat!("微信支付收款", amount!(), " *元", wechat_label!()),
        example: ("微信支付", "微信支付收款0.01元(朋友到店)", "0.01"),
    },
    Wording {
        id: "wechat.personal_code",
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        title: Title::Official(WECHAT_TITLES),
        stacked: true,
        text: concat!("个人收款码到账", amount!(), "(?: *元)?"),
        example: ("微信支付", "个人收款码到账¥0.03", "0.03"),
    },
    Wording {
        id: "wechat.tip_code",
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        title: Title::Official(WECHAT_TITLES),
        stacked: true,
        text: concat!("二维码赞赏到账", amount!(), " *元"),
        example: ("微信支付", "二维码赞赏到账1.00元", "1.00"),
    },
    Wording {
        id: "wechat.clerk",
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        title: Title::Official(WECHAT_TITLES),
        stacked: true,
        text: concat!(r"(?:\[店员消息\])?收款到账", amount!(), " *元"),
        example: ("微信收款助手", "[店员消息]收款到账5.00元", "5.00"),
    },
    Wording {
        id: "wechat.bill",
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        title: Title::Official(WECHAT_TITLES),
        stacked: true,
        text: concat!("收款单到账", amount!(), " *元"),
        example: ("微信收款助手", "收款单到账8.80元", "8.80"),
    },
    Wording {
        id: "wechat.business",
        packages: &["com.tencent.mm"],
        channel: Channel::Wechat,
        title: Title::Official(WECHAT_BUSINESS_TITLES),
        stacked: true,
        text: concat!("收款", amount!(), " *元"),
        example: ("微信收款商业版", "微信收款商业版: 收款3.00元", "3.00"),
    },
    Wording {
        id: "wework.collection",
        packages: &["com.tencent.wework"],
        channel: Channel::Wechat,
        title: Title::Official(WEWORK_TITLES),
        stacked: false,
        // Only the bare receipt: `收款通知: 成功收款…` has the shape of a group member named
        // 收款通知 speaking in a group named like the title, so it is not read.
        text: concat!("成功收款", amount!(), "(?: *元)?"),
        example: ("对外收款", "成功收款66.00元", "66.00"),
    },
    Wording {
        id: "alipay.scan",
        packages: ALIPAY_PACKAGES,
        channel: Channel::Alipay,
        title: Title::Official(ALIPAY_TITLES),
        stacked: false,
        // The payer's name is theirs to choose: a name, not a sentence (letters, digits and
        // the masking `*` or `·` only, at most 16 of them) and without payment or sentence
        // words (`PAYER_WORDS`); money it mentions makes the notification ambiguous.
        text: concat!(
            "(?P<payer>[\\p{L}\\p{N}*·_-]{1,16}?)通过扫码向你付款",
            amount!(),
            " *元"
        ),
        example: ("支付宝通知", "张三通过扫码向你付款0.01元", "0.01"),
    },
    Wording {
        id: "alipay.collection_code",
        packages: ALIPAY_PACKAGES,
        channel: Channel::Alipay,
        title: Title::Official(ALIPAY_TITLES),
        stacked: false,
        text: concat!("你已成功收款", amount!(), " *元", alipay_label!(), "。?"),
        example: ("收钱码到账", "你已成功收款0.50元（老顾客消费）", "0.50"),
    },
    Wording {
        id: "alipay.success",
        packages: ALIPAY_PACKAGES,
        channel: Channel::Alipay,
        title: Title::Official(ALIPAY_TITLES),
        stacked: false,
        text: concat!("支付宝成功收款", amount!(), " *元。?"),
        example: ("支付宝", "支付宝成功收款1.00元。", "1.00"),
    },
    Wording {
        id: "alipay.receipt_title",
        packages: ALIPAY_PACKAGES,
        channel: Channel::Alipay,
        title: Title::Receipt(concat!("你已成功收款", amount!(), " *元")),
        stacked: false,
        text: concat!(
            // Alipay's promotion after 已转入余额 counts points (`100积分`), never money: any
            // other number there may be a second payment, so the text is then not this row. It
            // is one line, without currency signs or `PROMOTION_WORDS`.
            "(?:已转入余额(?: (?P<promotion>(?:[^0-9\\n\\r\\p{Zl}\\p{Zp}\\p{Sc}]|[0-9]+积分){0,40}))?|点击查看详情|查看详情|你已成功收款",
            amount!(),
            " *元",
            alipay_label!(),
            ")?"
        ),
        example: (
            "你已成功收款5.00元",
            "已转入余额 100积分兑收钱音箱，去兑换>>",
            "5.00",
        ),
    },
];

/// The capture group every amount slot is named by.
pub const AMOUNT_GROUP: &str = "amount";
/// The capture group of a name the payer chose.
const PAYER_GROUP: &str = "payer";
/// Words a payer's name may not hold: with them, the name restates a payment or is a sentence
/// (pronouns, negations, particles and time words that names rarely carry; conditions, promises,
/// tests and tallies of people or periods; in any case), so it is not read.
const PAYER_WORDS: &[&str] = &[
    "付款", "收款", "到账", "转账", "扫码", "支付", "¥", "我", "你", "您", "他", "她", "没", "不",
    "未", "已", "了", "吗", "呢", "吧", "啊", "请", "别", "假", "若", "次", "前", "刚", "曾", "再",
    "又", "也", "是", "的", "被", "给", "向", "说", "就", "都", "还", "才", "要", "会", "想",
    "如果", "万一", "应该", "可能", "或许", "准备", "打算", "将", "马上", "稍后", "待会", "等会",
    "明天", "明日", "后天", "以后", "之后", "当天", "季度", "近", "测试", "模拟", "演示", "人",
    "们", "大家", "无", "否", "某", "需", "须", "拟", "预计", "预约", "分期", "示例", "伪造",
    "今晚", "晚上", "早上", "上午", "下午", "中午", "月底", "月初", "test", "fake", "demo",
    "tomorrow", "later", "unpaid", "notpaid", "тест",
];

/// The capture group of Alipay's promotion under a receipt in the title.
const PROMOTION_GROUP: &str = "promotion";
/// Words Alipay's promotion may not hold: with them, it tells of another payment (`另有一笔收款`),
/// denies this one (`测试通知，非真实收款`, `假的`) or is a sentence, not an advertisement.
const PROMOTION_WORDS: &[&str] = &[
    "收款", "付款", "到账", "入账", "转账", "支付", "笔", "另", "元", "测试", "模拟", "示例",
    "演示", "假", "非", "不", "没", "未", "无", "再", "又",
];

pub struct CompiledWording {
    pub wording: &'static Wording,
    title: Option<Regex>,
    text: Regex,
}

fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

#[allow(clippy::expect_used)] // a constant table; every row is compiled by the tests
pub static COMPILED: LazyLock<Vec<CompiledWording>> = LazyLock::new(|| {
    WORDINGS
        .iter()
        .map(|wording| CompiledWording {
            wording,
            title: match wording.title {
                Title::Official(_) => None,
                Title::Receipt(pattern) => {
                    Some(anchored(pattern).expect("receipt title patterns compile"))
                }
            },
            text: anchored(wording.text).expect("wording patterns compile"),
        })
        .collect()
});

/// `[N条]` and `sender: ` (or `sender：`), as WeChat stacks a sender's notifications.
#[allow(clippy::expect_used)] // a constant pattern, compiled by the tests
static STACK_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\[[0-9]{1,4}条\])?(?:(?P<sender>[^:：\n]+)[:：] *)?")
        .expect("the stack prefix compiles")
});

/// A notification's title and text, as posted and as normalised (NFKC) for reading.
pub struct Fields<'t> {
    pub title: &'t str,
    pub text: &'t str,
    pub title_normalised: &'t str,
    pub text_normalised: &'t str,
}

/// What trying one wording on a notification found.
pub enum Attempt<'t> {
    /// The title is not one this wording comes under.
    OtherTitle,
    /// The title is this wording's, but the stacked text names another sender.
    OtherSender(String),
    /// The title is this wording's, the text is not.
    OtherText,
    /// The notification is this wording; the amount slots as written (title first).
    Read(Vec<&'t str>),
}

impl CompiledWording {
    /// Tries this wording on a notification. A system sender's name is compared as posted,
    /// exactly: a name that only looks like one after normalisation (`⽀付宝` with a Kangxi
    /// radical, `店员通` with an ideographic space after it) is someone else's.
    pub fn attempt<'t>(&self, fields: &Fields<'t>) -> Attempt<'t> {
        let mut slots = Vec::new();
        match (&self.wording.title, &self.title) {
            (Title::Official(names), _) => {
                if !names.contains(&fields.title) {
                    return Attempt::OtherTitle;
                }
            }
            (Title::Receipt(_), Some(pattern)) => match pattern.captures(fields.title_normalised) {
                Some(caps) => slots.extend(amount_of(&caps)),
                None => return Attempt::OtherTitle,
            },
            (Title::Receipt(_), None) => return Attempt::OtherTitle,
        }
        let message = if self.wording.stacked {
            if let Err(sender) = unstack(fields.title, fields.text) {
                return Attempt::OtherSender(sender);
            }
            // A sender prefix that only appears once normalised (a look-alike colon, `﹕`) was
            // not written by the app.
            if let Some(sender) = stack_sender(fields.text_normalised)
                && stack_sender(fields.text).is_none()
            {
                return Attempt::OtherSender(sender.to_owned());
            }
            unstack(fields.title_normalised, fields.text_normalised)
                .unwrap_or(fields.text_normalised)
        } else {
            fields.text_normalised
        };
        match self.text.captures(message) {
            Some(caps) => {
                let holds = |group: &str, words: &[&str]| {
                    caps.name(group).is_some_and(|free| {
                        let free = free.as_str().to_lowercase();
                        words.iter().any(|w| free.contains(w))
                    })
                };
                if holds(PAYER_GROUP, PAYER_WORDS) || holds(PROMOTION_GROUP, PROMOTION_WORDS) {
                    return Attempt::OtherText;
                }
                slots.extend(amount_of(&caps));
                if slots.is_empty() {
                    Attempt::OtherText
                } else {
                    Attempt::Read(slots)
                }
            }
            None => Attempt::OtherText,
        }
    }
}

fn amount_of<'t>(caps: &Captures<'t>) -> Option<&'t str> {
    caps.name(AMOUNT_GROUP).map(|m| m.as_str())
}

/// The sender a stacked text names, if it names one.
fn stack_sender(text: &str) -> Option<&str> {
    STACK_PREFIX
        .captures(text)?
        .name("sender")
        .map(|sender| sender.as_str())
}

/// The message of a stacked text; `Err(sender)` when the sender it names is not the title,
/// exactly.
pub fn unstack<'t>(title: &str, text: &'t str) -> Result<&'t str, String> {
    let Some(prefix) = STACK_PREFIX.captures(text) else {
        return Ok(text);
    };
    if let Some(sender) = prefix.name("sender")
        && sender.as_str().trim_end_matches(' ') != title
    {
        return Err(sender.as_str().to_owned());
    }
    let end = prefix.get(0).map_or(0, |m| m.end());
    Ok(text.get(end..).unwrap_or(text))
}
