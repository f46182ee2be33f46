//! The classes of notification that restate an amount next to payment words without being an
//! incoming payment. A notification of any of them is refused outright, whatever else it says,
//! before any wording is tried: refusing costs the operator a look, crediting one costs money.

use std::sync::LazyLock;

use regex::Regex;

use super::text::without_invisibles;

/// What a refused notification is instead of a new incoming payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// A broadcast restating an earlier payment (`上一笔播报：…`).
    Broadcast,
    /// Money going back to the payer.
    Refund,
    /// A payment undone, withdrawn or frozen.
    Reversal,
    /// A payment that failed or has not completed (awaiting confirmation).
    Failure,
    Cancellation,
    /// Money leaving to a bank card.
    Withdrawal,
    /// Money the owner paid or transferred to someone else.
    Outgoing,
    /// Red packets, sent or received: never a collection-code payment.
    RedPacket,
    /// A statement of the balance.
    Balance,
    /// Totals, counts and summaries of any period.
    Summary,
}

impl RefusalClass {
    pub fn code(self) -> &'static str {
        match self {
            RefusalClass::Broadcast => "broadcast",
            RefusalClass::Refund => "refund",
            RefusalClass::Reversal => "reversal",
            RefusalClass::Failure => "failure",
            RefusalClass::Cancellation => "cancellation",
            RefusalClass::Withdrawal => "withdrawal",
            RefusalClass::Outgoing => "outgoing",
            RefusalClass::RedPacket => "red_packet",
            RefusalClass::Balance => "balance",
            RefusalClass::Summary => "summary",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RefusalClass::Broadcast => "a broadcast of an earlier payment",
            RefusalClass::Refund => "a refund",
            RefusalClass::Reversal => "a reversal",
            RefusalClass::Failure => "a failed or unfinished payment",
            RefusalClass::Cancellation => "a cancellation",
            RefusalClass::Withdrawal => "a withdrawal",
            RefusalClass::Outgoing => "an outgoing payment or transfer",
            RefusalClass::RedPacket => "a red packet",
            RefusalClass::Balance => "a balance",
            RefusalClass::Summary => "a total or summary",
        }
    }
}

/// The words of each class, as regular expressions over the normalised title and text (simplified
/// and traditional Chinese, and English in any case). Checked in this order; the first class
/// found is the reason.
const CLASSES: &[(RefusalClass, &[&str])] = &[
    (
        RefusalClass::Broadcast,
        &[
            "上一?[笔筆]",
            "上[0-9]+[笔筆]",
            "前一[笔筆]",
            "最近一[笔筆]",
            "[历歷]史播[报報]",
            "重[复複]播[报報]",
            "再次播[报報]",
            "[补補]播",
            // An earlier payment told again (上次, 之前, 前一次, …), in a chat or a notice.
            "上[次回]",
            "前一?次",
            "[之此先]前",
            "(?i)previous payment|last payment",
        ],
    ),
    (
        RefusalClass::Refund,
        &[
            // 欵 is a variant of 款 that NFKC leaves as it is.
            "退[款欵]",
            "退回",
            "已退",
            "退[还還]",
            "退[费費]",
            "原路返回",
            "原路退",
            "退[货貨单單票]",
            "返[还還现現款]",
            "(?i)refund",
        ],
    ),
    (
        RefusalClass::Reversal,
        &[
            "[冲沖]正",
            "撤[销銷]",
            "撤回",
            "追回",
            "[冻凍][结結]",
            "拒付",
            "撤[单單]",
            "回退",
            "止付",
            "[驳駁]回",
            "拒[绝絕收]",
            "(?i)revers|chargeback",
        ],
    ),
    (
        RefusalClass::Failure,
        &[
            "失[败敗]",
            "未成功",
            "不成功",
            "未到[账賬帳]",
            "未收到",
            "[异異]常",
            "未完成",
            "待[确確][认認]",
            "待收款",
            "[确確][认認]收款",
            "待[领領]取",
            "未[领領]取",
            "[处處]理中",
            "[审審]核中",
            "失效",
            "无效",
            "無效",
            "(?i)fail|pending",
        ],
    ),
    (
        RefusalClass::Cancellation,
        &[
            "取消",
            "[关關]閉",
            "关闭",
            "作[废廢]",
            "已[过過]期",
            "超[时時]",
            "(?i)cancel",
        ],
    ),
    (
        RefusalClass::Withdrawal,
        &["提[现現]", "[转轉]出", "[银銀]行卡", "提取", "(?i)withdraw"],
    ),
    (
        RefusalClass::Outgoing,
        &[
            // 你向…转账, 你已向…付款, 你给…, 您在…消费 (向你付款, 你已成功收款 do not match)
            "[你您](?:已经?|已經|成功|刚刚?|剛剛?)*[向给給对對为為在于於]",
            "付款[给給]",
            "支付[给給]",
            "[转轉][账賬帳][给給至]",
            "[转轉][给給]",
            "已支付",
            "支付成功",
            "成功支付",
            "付款成功",
            "成功付款",
            "扣款",
            "扣[费費]",
            "代扣",
            "自[动動][续續][费費]",
            "[续續][费費]成功",
            "消[费費]了",
            "消[费費] *[¥$€£0-9]",
            "支出",
            "花[费費]",
            "[缴繳][费費]",
            "充值",
            "(?i)you paid|sent to|transfer(red)? to|payment to",
        ],
    ),
    (
        RefusalClass::RedPacket,
        &["[红紅]包", "(?i)red (packet|envelope)"],
    ),
    (
        RefusalClass::Balance,
        &[
            "(?:当前|當前|[账賬帳]户|[账賬帳]戶|可用|剩余|剩餘|零[钱錢]|[钱錢]包)[余餘][额額]",
            "[余餘][额額][宝寶]",
            "[余餘][额額](?:为|為|是|:)? *(?:[¥$€£] *[0-9]|[0-9][0-9,.]* *(?:元|块|塊))",
            "(?i)balance",
        ],
    ),
    (
        RefusalClass::Summary,
        &[
            "累[计計]",
            "合[计計]",
            "共[计計]",
            "[总總][计計]",
            "[汇匯][总總]",
            "[总總][额額]",
            "[总總]收",
            "共收",
            "收入",
            "流水",
            "[统統][计計]",
            "[账賬帳][单單]",
            "[对對][账賬帳]",
            "[日周週月年][报報]",
            "今日",
            "今天",
            "昨日",
            "昨天",
            "前天",
            "本日",
            "[当當]日",
            "本[周週]",
            "上[周週]",
            "本月",
            "上月",
            "[当當]月",
            "上[个個]月",
            "本年",
            "今年",
            "去年",
            "共[0-9一二两兩三四五六七八九十百几幾多]+[笔筆]",
            "(?:[0-9]+|[二两兩三四五六七八九十百几幾多]+)[笔筆](?:收款|交易|[订訂][单單]|款[项項]|付款)",
            "(?i)total|summary|today|yesterday|(this|last) (week|month|year)",
        ],
    ),
];

struct CompiledClass {
    class: RefusalClass,
    pattern: Regex,
}

#[allow(clippy::expect_used)] // a constant table; every pattern is compiled by the tests
static COMPILED: LazyLock<Vec<CompiledClass>> = LazyLock::new(|| {
    CLASSES
        .iter()
        .map(|(class, words)| CompiledClass {
            class: *class,
            pattern: Regex::new(&words.join("|")).expect("refusal patterns compile"),
        })
        .collect()
});

/// The first refusal class the normalised title or text belongs to, with the words that say so.
/// Invisible characters are left out first, so that `退\u{200b}款` is still a refund.
pub fn refusal_of(title: &str, text: &str) -> Option<(RefusalClass, String)> {
    let fields = [without_invisibles(title), without_invisibles(text)];
    COMPILED.iter().find_map(|compiled| {
        fields.iter().find_map(|field| {
            compiled
                .pattern
                .find(field)
                .map(|found| (compiled.class, found.as_str().to_owned()))
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_class_pattern_compiles_and_is_found() {
        assert_eq!(COMPILED.len(), CLASSES.len());
        for (class, text) in [
            (RefusalClass::Broadcast, "上一笔播报:支付宝到账 1430.00 元"),
            (RefusalClass::Refund, "你已成功收款100.00元,已退款"),
            (RefusalClass::Refund, "付款10.00元失败,资金已原路退回"),
            (RefusalClass::Reversal, "收款5.00元已撤销"),
            (RefusalClass::Failure, "你未成功收款5.00元"),
            (RefusalClass::Failure, "收到转账8.00元,请确认收款"),
            (RefusalClass::Cancellation, "收款单8.80元已取消"),
            (RefusalClass::Withdrawal, "提现1,000.00元到账"),
            (RefusalClass::Outgoing, "你向张三转账200.00元"),
            (RefusalClass::Outgoing, "已支付¥25.00"),
            (RefusalClass::Outgoing, "你在美团消费了25.00元"),
            (RefusalClass::RedPacket, "你发出的红包已被领取,共10.00元"),
            (RefusalClass::Balance, "当前余额1,200.00元"),
            (RefusalClass::Balance, "余额:¥12.00"),
            (RefusalClass::Summary, "昨日收款共¥999.99"),
            (RefusalClass::Summary, "上月累计收款8,000.00元"),
            (RefusalClass::Summary, "今天共3笔收款"),
            (RefusalClass::Refund, "退\u{200b}款10.00元"),
            (RefusalClass::Refund, "退還給對方10.00元"),
            (RefusalClass::Refund, "Refunded ¥10.00"),
            (RefusalClass::Broadcast, "上1筆收款10.00元"),
            (RefusalClass::Broadcast, "上次通过扫码向你付款100.00元"),
            (RefusalClass::Broadcast, "之前通过扫码向你付款100.00元"),
            (RefusalClass::Broadcast, "前一次通过扫码向你付款100.00元"),
            (RefusalClass::Refund, "退欵通过扫码向你付款100.00元"),
            (RefusalClass::Summary, "累計收款10.00元"),
            (RefusalClass::Balance, "餘額10.00元"),
            (RefusalClass::Summary, "Today's total 10.00"),
            (RefusalClass::Refund, "退货通过扫码向你付款5.00元"),
            (RefusalClass::Refund, "返现通过扫码向你付款5.00元"),
            (RefusalClass::Refund, "返還通过扫码向你付款5.00元"),
            (RefusalClass::Reversal, "驳回通过扫码向你付款5.00元"),
            (RefusalClass::Reversal, "拒绝通过扫码向你付款5.00元"),
            (RefusalClass::Reversal, "止付通过扫码向你付款5.00元"),
            (RefusalClass::Failure, "失效通过扫码向你付款5.00元"),
        ] {
            assert_eq!(refusal_of("", text).map(|(c, _)| c), Some(class), "{text}");
        }
    }

    #[test]
    fn receipts_and_their_labels_are_not_refused() {
        for text in [
            "微信支付收款0.01元(朋友到店)",
            "你已成功收款0.50元(老顾客消费)",
            "支付宝成功收款1.00元。",
            "张三通过扫码向你付款0.01元",
            "已转入余额 100积分兑收钱音箱,去兑换>>",
            "收款单到账8.80元",
            "[4条]微信收款助手: 微信支付收款1.01元(朋友到店)",
        ] {
            assert_eq!(refusal_of("", text), None, "{text}");
        }
    }
}
