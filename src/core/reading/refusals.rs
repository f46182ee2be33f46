//! The classes of notification that restate an amount next to payment words without being an
//! incoming payment. A notification of any of them is refused outright, whatever else it says,
//! before any wording is tried: refusing costs the operator a look, crediting one costs money.

use std::sync::LazyLock;

use regex::Regex;

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

/// The words of each class, as regular expressions over the normalised title and text. Checked
/// in this order; the first class found is the reason.
const CLASSES: &[(RefusalClass, &[&str])] = &[
    (
        RefusalClass::Broadcast,
        &[
            "上一笔",
            "上笔",
            "前一笔",
            "最近一笔",
            "历史播报",
            "重复播报",
            "再次播报",
            "补播",
        ],
    ),
    (
        RefusalClass::Refund,
        &["退款", "退回", "已退", "退还", "退费", "原路返回", "原路退"],
    ),
    (
        RefusalClass::Reversal,
        &[
            "冲正", "撤销", "撤回", "追回", "冻结", "拒付", "撤单", "回退",
        ],
    ),
    (
        RefusalClass::Failure,
        &[
            "失败",
            "未成功",
            "不成功",
            "未到账",
            "未收到",
            "异常",
            "未完成",
            "待确认",
            "待收款",
            "确认收款",
            "待领取",
            "未领取",
            "处理中",
            "审核中",
        ],
    ),
    (
        RefusalClass::Cancellation,
        &["取消", "关闭", "作废", "已过期", "超时"],
    ),
    (
        RefusalClass::Withdrawal,
        &["提现", "转出", "到银行卡", "至银行卡", "提取"],
    ),
    (
        RefusalClass::Outgoing,
        &[
            // 你向…转账, 你已向…付款, 你给…, 您在…消费 (向你付款, 你已成功收款 do not match)
            "[你您](?:已经?|成功|刚刚?)*[向给对为在于]",
            "付款给",
            "支付给",
            "转账给",
            "转给",
            "转账至",
            "已支付",
            "支付成功",
            "成功支付",
            "付款成功",
            "成功付款",
            "扣款",
            "扣费",
            "代扣",
            "自动续费",
            "续费成功",
            "消费了",
            "消费 *[¥$0-9]",
            "支出",
            "花费",
            "缴费",
            "充值",
        ],
    ),
    (RefusalClass::RedPacket, &["红包"]),
    (
        RefusalClass::Balance,
        &[
            "(?:当前|账户|可用|剩余|零钱|钱包)余额",
            "余额宝",
            "余额(?:为|是|:)? *(?:[¥$] *[0-9]|[0-9][0-9,.]* *(?:元|块))",
        ],
    ),
    (
        RefusalClass::Summary,
        &[
            "累计",
            "合计",
            "共计",
            "总计",
            "汇总",
            "总额",
            "总收",
            "共收",
            "收入",
            "流水",
            "统计",
            "账单",
            "对账",
            "日报",
            "周报",
            "月报",
            "年报",
            "今日",
            "今天",
            "昨日",
            "昨天",
            "前天",
            "本日",
            "当日",
            "本周",
            "上周",
            "本月",
            "上月",
            "当月",
            "上个月",
            "本年",
            "今年",
            "去年",
            "共[0-9一二两三四五六七八九十百几多]+笔",
            "(?:[0-9]+|[两二三四五六七八九十百几多]+)笔(?:收款|交易|订单|款项|付款)",
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
pub fn refusal_of(title: &str, text: &str) -> Option<(RefusalClass, String)> {
    COMPILED.iter().find_map(|compiled| {
        [title, text].iter().find_map(|field| {
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
