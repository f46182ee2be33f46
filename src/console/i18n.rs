//! Every text of the console, in English and Chinese (zh-CN), in one table: a page asks for a
//! text by its key. The language comes from the `lang` cookie (the switch on every page), else
//! from `Accept-Language`.

/// The console's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    /// From the `lang` cookie's value (`en`, `zh`).
    pub fn from_cookie(value: &str) -> Option<Lang> {
        match value {
            "en" => Some(Lang::En),
            "zh" | "zh-CN" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The preferred of the two in an `Accept-Language` header (English when it names neither).
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best = (Lang::En, -1.0_f32);
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let quality = pieces
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = if tag.starts_with("zh") {
                Some(Lang::Zh)
            } else if tag.starts_with("en") {
                Some(Lang::En)
            } else {
                None
            };
            if let Some(lang) = lang
                && quality > best.1
            {
                best = (lang, quality);
            }
        }
        best.0
    }

    /// The text of `key` in this language (the key itself if the table lacks it, which a test
    /// rules out).
    pub fn t(self, key: &'static str) -> &'static str {
        TEXTS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map_or(key, |(_, en, zh)| match self {
                Lang::En => en,
                Lang::Zh => zh,
            })
    }
}

/// (key, English, 中文).
pub const TEXTS: &[(&str, &str, &str)] = &[
    ("title", "solopay console", "solopay 控制台"),
    ("switch_lang", "中文", "English"),
    ("sign_in", "Sign in", "登录"),
    ("sign_out", "Sign out", "退出"),
    ("token", "Operator token", "管理令牌"),
    (
        "sign_in_hint",
        "The operator token (SOLOPAY_ADMIN_TOKEN, or the generated one in solopay-admin-token).",
        "管理令牌（SOLOPAY_ADMIN_TOKEN，或自动生成并写入 solopay-admin-token 的令牌）。",
    ),
    ("wrong_token", "Wrong operator token.", "管理令牌不正确。"),
    (
        "locked_out",
        "Too many wrong tokens from this address: try again in 15 minutes.",
        "此地址输错令牌次数过多，请 15 分钟后再试。",
    ),
    (
        "session_over",
        "Your session ended: sign in again.",
        "会话已结束，请重新登录。",
    ),
    (
        "bad_form",
        "This form is out of date (wrong or missing CSRF token): reload the page and try again.",
        "表单已失效（CSRF 令牌错误或缺失），请刷新页面重试。",
    ),
    ("overview", "Overview", "概览"),
    ("orders", "Orders", "订单"),
    ("payments", "Payments", "收款"),
    ("devices", "Devices", "监听设备"),
    ("payees", "Payees", "收款码"),
    ("merchants", "Merchants", "商户"),
    ("webhooks", "Webhooks", "回调"),
    ("today", "Today", "今日"),
    ("created", "Created", "创建"),
    ("paid", "Paid", "已支付"),
    ("expired", "Expired", "已过期"),
    ("received", "Received", "收款金额"),
    ("channel", "Channel", "渠道"),
    ("waiting", "Payments waiting for a decision", "待处理的收款"),
    ("failing_webhooks", "Webhooks failing", "失败的回调"),
    ("none", "None.", "无。"),
    ("online", "online", "在线"),
    ("offline", "offline", "离线"),
    ("last_seen", "Last seen", "最后在线"),
    ("battery", "Battery", "电量"),
    ("app_version", "App version", "应用版本"),
    ("status", "Status", "状态"),
    ("amount", "Amount", "金额"),
    ("payable", "Payable", "应付"),
    ("merchant_order_id", "Merchant order no.", "商户订单号"),
    ("filter", "Filter", "筛选"),
    ("all", "All", "全部"),
    ("next_page", "Next page", "下一页"),
    ("details", "Details", "详情"),
    ("mark_paid", "Mark paid", "标记为已支付"),
    ("note", "Note (for the audit log)", "备注（记入审计日志）"),
    ("events", "Events", "事件"),
    ("deliveries", "Webhook deliveries", "回调投递"),
    ("result", "Result", "结果"),
    ("reason", "Reason", "原因"),
    ("assign", "Assign to an order", "分配到订单"),
    ("order_id", "Order id", "订单 ID"),
    (
        "confirm_assign",
        "Confirm: this payment pays this order",
        "确认：此笔收款支付此订单",
    ),
    ("differences", "Differences", "差异"),
    (
        "second_payment",
        "The payer paid twice (this is a second payment)",
        "付款人确实付了两次（这是第二笔付款）",
    ),
    (
        "accept_differences",
        "I have checked the app: assign it despite the differences",
        "已在 App 中核实：忽略差异，仍然分配",
    ),
    ("name", "Name", "名称"),
    ("create", "Create", "创建"),
    ("enable", "Enable", "启用"),
    ("disable", "Disable", "停用"),
    ("enabled", "enabled", "已启用"),
    ("disabled", "disabled", "已停用"),
    ("rotate_secret", "New secret", "更换密钥"),
    ("setup", "Set up the listener", "配置监听端"),
    (
        "shown_once",
        "Shown only now: copy it or scan it.",
        "仅显示这一次：请复制或扫码。",
    ),
    (
        "vmq_setup",
        "V免签 app: scan this code (its 扫码配置)",
        "V免签 App：扫描此二维码（扫码配置）",
    ),
    (
        "generic_setup",
        "Other listeners: URL, device id and secret",
        "其他监听端：地址、设备 ID 与密钥",
    ),
    ("secret", "Secret", "密钥"),
    ("device", "Device", "设备"),
    (
        "upload_code",
        "Photo or screenshot of the collection code",
        "收款码的照片或截图",
    ),
    (
        "fixed_codes",
        "Fixed-amount codes: one image per amount",
        "固定金额收款码：每个金额一张图片",
    ),
    ("add_codes", "Add codes", "添加收款码"),
    ("api_key", "API key", "API 密钥"),
    ("webhook_secret", "Webhook secret", "回调密钥"),
    (
        "md5_key",
        "md5 key (V免签, 易支付)",
        "md5 密钥（V免签、易支付）",
    ),
    ("rotate_api_key", "New API key", "更换 API 密钥"),
    (
        "rotate_webhook_secret",
        "New webhook secret",
        "更换回调密钥",
    ),
    ("redeliver", "Redeliver", "重新投递"),
    ("attempts", "Attempts", "尝试次数"),
    ("destination", "Destination", "目标"),
    ("done", "Done.", "完成。"),
    ("refused", "Refused", "已拒绝"),
    ("back", "Back", "返回"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_written_once_in_both_languages() {
        let mut keys = std::collections::BTreeSet::new();
        for (key, en, zh) in TEXTS {
            assert!(keys.insert(key), "{key} twice");
            assert!(!en.is_empty() && !zh.is_empty(), "{key}");
        }
    }

    #[test]
    fn the_language_follows_accept_language() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh;q=0.5"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("fr-FR"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr, zh-TW;q=0.3"), Lang::Zh);
        assert_eq!(Lang::Zh.t("sign_in"), "登录");
    }
}
