//! The text of a notification as the reader sees it: normalised once (Unicode NFKC, so that
//! full-width digits, separators, colons, brackets, spaces and `￥` read as what they are), the
//! strict spelling of an amount, and every place where a text mentions money.

use unicode_normalization::UnicodeNormalization;

use crate::money::Amount;

/// A text after NFKC, without surrounding white space.
pub fn normalise(field: &str) -> String {
    let normalised: String = field.nfkc().collect();
    normalised.trim().to_owned()
}

/// Whether NFKC leaves `field` as it is. The apps write their sender names in plain characters:
/// a name that only folds into one (a Kangxi radical for 支, a circled 企, a full-width letter)
/// is someone else's.
pub fn is_normal(field: &str) -> bool {
    unicode_normalization::is_nfkc(field)
}

/// The text with invisible format characters (zero-width spaces and joiners, bidi controls,
/// soft hyphens, variation selectors) left out, for finding refusal words that someone split
/// with them.
pub fn without_invisibles(field: &str) -> String {
    field
        .chars()
        .filter(|c| {
            !matches!(c,
                '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}'
                | '\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}')
        })
        .collect()
}

/// Parses an amount as notifications print it: `1234.56`, `1,234.56`, `1234.5` or `1234`.
/// Groupings other than threes after a first group of one to three digits, leading zeros, more
/// than two decimals, zero and amounts beyond storage are refused, never cut short.
pub fn parse_amount(token: &str) -> Option<Amount> {
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

/// Words and signs right before digits that make them money changing hands (`收款100`,
/// `金额: 5`, `RMB 5`), in simplified and traditional Chinese and variant characters, compared
/// in lower case. Any currency sign (Unicode's `Sc`) counts too.
const MONEY_WORDS: &[&str] = &[
    "收款",
    "收欵",
    "到账",
    "到賬",
    "到帳",
    "付款",
    "付欵",
    "转账",
    "轉賬",
    "轉帳",
    "入账",
    "入賬",
    "收到",
    "赞赏",
    "讚賞",
    "支付",
    "金额",
    "金額",
    "实收",
    "實收",
    "退款",
    "红包",
    "紅包",
    "提现",
    "提現",
    "消费",
    "消費",
    "收入",
    "人民币",
    "人民幣",
    "rmb",
    "cny",
    "usd",
    "hkd",
];

/// Words that may stand between a money word and its digits (`金额为100`, `收款了 5`).
const FILLERS: &[char] = &[
    ' ', ':', '\t', '为', '為', '是', '了', '共', '约', '約', '计', '計', '达', '達',
];

/// Units right after digits that make them money (`5.00元`, `5块`, `5 yuan`), in lower case.
const MONEY_UNITS: &[&str] = &[
    "元",
    "块",
    "塊",
    "圆",
    "圓",
    "刀",
    "美元",
    "美金",
    "港币",
    "港幣",
    "人民币",
    "人民幣",
    "rmb",
    "cny",
    "usd",
    "hkd",
    "yuan",
    "kuai",
    "dollar",
];

/// A currency sign at the end of a text (`¥`, `$`, `€`, `₩`, …).
#[allow(clippy::expect_used)] // a constant pattern, compiled by the tests
static CURRENCY_SIGN: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\p{Sc}$").expect("the sign pattern compiles"));

/// Every run of digits (with the separators between them) in `field` that the text presents as
/// money: after a currency sign or a money word, or before a unit. Each is returned as written;
/// it may not be a valid amount.
pub fn money_mentions(field: &str) -> Vec<&str> {
    let mut mentions = Vec::new();
    let bytes = field.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let Some(byte) = bytes.get(at) else { break };
        if !byte.is_ascii_digit() {
            at += 1;
            continue;
        }
        // A run: digits with `,` and `.` between them, started by its first digit.
        let start = at;
        let mut end = at;
        while let Some(b) = bytes.get(end) {
            if b.is_ascii_digit() || *b == b',' || *b == b'.' {
                end += 1;
            } else {
                break;
            }
        }
        at = end;
        // ASCII bytes only were consumed, so both ends are character boundaries.
        let (Some(before), Some(run), Some(after)) =
            (field.get(..start), field.get(start..end), field.get(end..))
        else {
            continue;
        };
        if marked_as_money(before, after) {
            mentions.push(run.trim_end_matches([',', '.']));
        }
    }
    mentions
}

/// Whether a number between `before` and `after` is money: a money word or currency sign right
/// before it, or a unit right after it.
fn marked_as_money(before: &str, after: &str) -> bool {
    // The longest word or unit is four characters: look at no more, so that a long text is
    // read in linear time.
    let before: String = before
        .trim_end_matches(FILLERS)
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_lowercase();
    let after = start_of(after, 4);
    MONEY_WORDS.iter().any(|word| before.ends_with(word))
        || CURRENCY_SIGN.is_match(&before)
        || MONEY_UNITS.iter().any(|unit| after.starts_with(unit))
}

/// The first `chars` characters of `after`, past spaces and tabs, in lower case.
fn start_of(after: &str, chars: usize) -> String {
    after
        .trim_start_matches([' ', '\t'])
        .chars()
        .take(chars)
        .collect::<String>()
        .to_lowercase()
}

/// The first character of `field` that NFKC turns into digits although it is not a digit as
/// apps print them (ASCII or full-width): `⒑` (`10.`), `¹`, `①`, `𝟓`. Such a character in
/// a receipt puts an amount together from look-alikes (`1⒑5` reads `110.5`).
pub fn digit_look_alike(field: &str) -> Option<char> {
    field.chars().find(|&c| {
        !c.is_ascii()
            && !('０'..='９').contains(&c)
            && c.to_string().nfkc().any(|d| d.is_ascii_digit())
    })
}

/// Chinese numerals (everyday and financial), which NFKC leaves as they are.
const CHINESE_NUMERALS: &[char] = &[
    '〇', '零', '一', '二', '两', '兩', '三', '四', '五', '六', '七', '八', '九', '十', '百', '千',
    '万', '萬', '亿', '億', '壹', '贰', '貳', '叁', '參', '肆', '伍', '陆', '陸', '柒', '捌', '玖',
    '拾', '佰', '仟',
];

/// Magnitudes between a number and its unit (`1万元`, `3k块`).
const MAGNITUDES: &[char] = &[
    '十', '百', '千', '万', '萬', '亿', '億', '拾', '佰', '仟', 'k', 'w',
];

/// Small units of the yuan, which make a number money on their own (`5毛`, `五角`).
const SMALL_UNITS: &[&str] = &["毛", "角"];

/// Whether `field` mentions money that [`money_mentions`] cannot see: a number written with
/// digits NFKC does not fold into ASCII (`١٠٠`, `१००`, `Ⅹ` before normalisation) or with
/// Chinese numerals (`五百`, `壹佰`), marked as money by a sign, a word or a unit; or any number
/// followed by a magnitude and a unit, or by a small unit (`1万元`, `5毛`). A receipt's own
/// amount is plain ASCII digits before its unit, so it is never one of these.
pub fn has_numeral_money(field: &str) -> bool {
    let numeral = |c: char| c.is_numeric() || CHINESE_NUMERALS.contains(&c);
    let mut rest = field;
    while let Some(start) = rest.find(numeral) {
        let (before, from) = rest.split_at(start);
        let end = from
            .find(|c: char| !(numeral(c) || c == ',' || c == '.'))
            .unwrap_or(from.len());
        let (run, after) = from.split_at(end);
        rest = after;
        // A magnitude or two, then a unit: at most eight characters.
        let after = start_of(after, 8);
        let magnified = after.trim_start_matches(MAGNITUDES);
        let small_unit = |text: &str| SMALL_UNITS.iter().any(|unit| text.starts_with(unit));
        let magnitude_and_unit = magnified.len() < after.len()
            && (MONEY_UNITS.iter().any(|unit| magnified.starts_with(unit))
                || small_unit(magnified));
        if small_unit(&after) || magnitude_and_unit {
            return true;
        }
        // Digits that are, or NFKC folds into, ASCII digits: money_mentions reads them once
        // normalised.
        let plain =
            |c: char| c == ',' || c == '.' || c.to_string().nfkc().all(|d| d.is_ascii_digit());
        if !run.chars().all(plain) && marked_as_money(before, &after) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn full_width_digits_separators_and_signs_read_as_ascii() {
        assert_eq!(normalise(" １，０００.００ "), "1,000.00");
        assert_eq!(normalise("12．50"), "12.50");
        assert_eq!(normalise("￥7.77"), "¥7.77");
        assert_eq!(normalise("[4条]微信收款助手："), "[4条]微信收款助手:");
        assert_eq!(normalise("（老顾客消费）"), "(老顾客消费)");
        assert_eq!(normalise("\u{3000}收款\u{a0}"), "收款");
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
            ("5.", None),
            ("5,", None),
            (",5", None),
            ("10000000000.00", None),
        ] {
            assert_eq!(
                parse_amount(token).map(|a| a.to_string()),
                expected.map(str::to_owned),
                "{token}"
            );
        }
    }

    #[test]
    fn money_is_what_a_sign_a_word_or_a_unit_marks() {
        assert_eq!(money_mentions("微信支付收款0.01元(朋友到店)"), ["0.01"]);
        assert_eq!(money_mentions("个人收款码到账¥ 6.60"), ["6.60"]);
        assert_eq!(money_mentions("个人收款码到账 0.03"), ["0.03"]);
        assert_eq!(
            money_mentions("[4条]微信支付: 用户2024 12:30"),
            Vec::<&str>::new()
        );
        assert_eq!(
            money_mentions("已转入余额 100积分兑收钱音箱"),
            Vec::<&str>::new()
        );
        assert_eq!(
            money_mentions("你已成功收款5.00元,手续费0.03元"),
            ["5.00", "0.03"]
        );
        assert_eq!(money_mentions("共¥999.99"), ["999.99"]);
        assert_eq!(money_mentions("收款1,23.元"), ["1,23"]);
        assert_eq!(money_mentions("5 RMB"), ["5"]);
        assert_eq!(money_mentions("RMB88 小王"), ["88"]);
        assert_eq!(money_mentions("88yuan"), ["88"]);
        assert_eq!(money_mentions("€8 和 $9"), ["8", "9"]);
        for (text, mention) in [
            ("人民币100小王", "100"),
            ("100圓", "100"),
            ("100塊", "100"),
            ("金额为100", "100"),
            ("到賬100", "100"),
            ("收欵100", "100"),
            ("付欵 100", "100"),
            ("USD100", "100"),
            ("100美元", "100"),
            ("100刀", "100"),
            ("₩100", "100"),
            ("收款了 100", "100"),
        ] {
            assert_eq!(money_mentions(text), [mention], "{text}");
        }
    }
}
