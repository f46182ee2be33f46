//! The ways an alert reaches the owner, each as its service documents it: the settings a channel
//! takes (secrets sealed when stored), the exact request an alert becomes, and what answer counts
//! as delivered.
//!
//! - Telegram Bot API: `POST {base}/bot<token>/sendMessage` `{"chat_id", "text"}`; delivered when
//!   the answer says `"ok": true`.
//! - WeCom (企业微信) group robot: `POST {base}/cgi-bin/webhook/send?key=<key>`
//!   `{"msgtype": "text", "text": {"content"}}`; delivered on `"errcode": 0`.
//! - DingTalk (钉钉) robot: `POST {base}/robot/send?access_token=<token>[&timestamp=<ms>&sign=<s>]`
//!   with the same body shape; `sign` is the URL-encoded base64 of HMAC-SHA256(secret,
//!   "<ms>\n<secret>"); delivered on `"errcode": 0`.
//! - Feishu / Lark (飞书) custom bot: `POST {base}/open-apis/bot/v2/hook/<hook>`
//!   `{"timestamp": "<s>", "sign", "msg_type": "text", "content": {"text"}}`; `sign` is the base64
//!   of HMAC-SHA256 keyed with "<s>\n<secret>" over nothing; delivered on `"code": 0`.
//! - Bark (iOS push): `POST {server}/push` `{"device_key", "title", "body", "group"}`; delivered on
//!   `"code": 200`.
//! - E-mail over SMTP (STARTTLS, TLS, or plain on a trusted network).
//! - A generic webhook, signed with the Standard Webhooks scheme (like merchant webhooks);
//!   delivered on any 2xx.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::error::RuleError;
use crate::core::signing::{dingtalk_sign, feishu_sign};
use crate::core::webhooks::signature_header;
use crate::domain::AlertChannelKind;

/// A channel's settings, as the operator gives them (`kind` picks the shape). Secrets are
/// never shown again once stored, nor printed: `Debug` names the kind only.
#[derive(Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelSettings {
    /// A Telegram bot (from @BotFather) and the chat it writes to.
    Telegram {
        /// Secret.
        bot_token: String,
        chat_id: String,
        /// Default `https://api.telegram.org`.
        api_base: Option<String>,
    },
    /// A WeCom group robot (the `key` of its webhook URL).
    Wecom {
        /// Secret.
        key: String,
        /// Default `https://qyapi.weixin.qq.com`.
        api_base: Option<String>,
    },
    /// A DingTalk group robot (the `access_token` of its webhook URL and, with 加签, its secret).
    Dingtalk {
        /// Secret.
        access_token: String,
        /// Secret (`SEC…`), when the robot signs.
        secret: Option<String>,
        /// Default `https://oapi.dingtalk.com`.
        api_base: Option<String>,
    },
    /// A Feishu/Lark custom bot (the last part of its webhook URL and, with signing on, its
    /// secret).
    Feishu {
        /// Secret.
        hook: String,
        /// Secret, when the bot checks signatures.
        secret: Option<String>,
        /// Default `https://open.feishu.cn` (Lark: `https://open.larksuite.com`).
        api_base: Option<String>,
    },
    /// Bark on an iPhone (the device key the app shows).
    Bark {
        /// Secret.
        device_key: String,
        /// Default `https://api.day.app` (or your own Bark server).
        server: Option<String>,
    },
    /// E-mail through an SMTP server.
    Email {
        host: String,
        /// Default 587 with `starttls`, 465 with `tls`, 25 with `none`.
        port: Option<u16>,
        /// `starttls` (default), `tls`, or `none` (plain: only on a network you trust).
        security: Option<SmtpSecurity>,
        username: Option<String>,
        /// Secret.
        password: Option<String>,
        from: String,
        to: Vec<String>,
    },
    /// A URL of your own, sent a Standard Webhooks signed POST.
    Webhook {
        url: String,
        /// Secret (`whsec_…`); generated when left out, and shown once.
        secret: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    Starttls,
    Tls,
    None,
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelSettings({}, secrets hidden)", self.kind())
    }
}

impl ChannelSettings {
    pub fn kind(&self) -> AlertChannelKind {
        match self {
            ChannelSettings::Telegram { .. } => AlertChannelKind::Telegram,
            ChannelSettings::Wecom { .. } => AlertChannelKind::Wecom,
            ChannelSettings::Dingtalk { .. } => AlertChannelKind::Dingtalk,
            ChannelSettings::Feishu { .. } => AlertChannelKind::Feishu,
            ChannelSettings::Bark { .. } => AlertChannelKind::Bark,
            ChannelSettings::Email { .. } => AlertChannelKind::Email,
            ChannelSettings::Webhook { .. } => AlertChannelKind::Webhook,
        }
    }

    /// Checks the settings (URLs absolute http(s), fields present and short) before they are
    /// stored.
    pub fn check(&self) -> Result<(), RuleError> {
        let text = |field: &str, value: &str, max: usize| {
            if value.trim().is_empty()
                || value.chars().count() > max
                || value.chars().any(char::is_control)
            {
                Err(RuleError::InvalidRequest(format!(
                    "{field} must be 1 to {max} characters without control characters"
                )))
            } else {
                Ok(())
            }
        };
        let url = |field: &str, value: &Option<String>| match value {
            Some(value) => {
                text(field, value, 2048)?;
                match url::Url::parse(value) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
                    _ => Err(RuleError::InvalidRequest(format!(
                        "{field} must be an absolute http(s) URL"
                    ))),
                }
            }
            None => Ok(()),
        };
        match self {
            ChannelSettings::Telegram {
                bot_token,
                chat_id,
                api_base,
            } => {
                text("bot_token", bot_token, 256)?;
                text("chat_id", chat_id, 64)?;
                url("api_base", api_base)
            }
            ChannelSettings::Wecom { key, api_base } => {
                text("key", key, 256)?;
                url("api_base", api_base)
            }
            ChannelSettings::Dingtalk {
                access_token,
                secret,
                api_base,
            } => {
                text("access_token", access_token, 256)?;
                if let Some(secret) = secret {
                    text("secret", secret, 256)?;
                }
                url("api_base", api_base)
            }
            ChannelSettings::Feishu {
                hook,
                secret,
                api_base,
            } => {
                text("hook", hook, 256)?;
                if let Some(secret) = secret {
                    text("secret", secret, 256)?;
                }
                url("api_base", api_base)
            }
            ChannelSettings::Bark { device_key, server } => {
                text("device_key", device_key, 256)?;
                url("server", server)
            }
            ChannelSettings::Email {
                host,
                username,
                password,
                from,
                to,
                ..
            } => {
                text("host", host, 253)?;
                text("from", from, 320)?;
                if let Some(username) = username {
                    text("username", username, 320)?;
                }
                if let Some(password) = password {
                    text("password", password, 1024)?;
                }
                if to.is_empty() || to.len() > 20 {
                    return Err(RuleError::InvalidRequest(
                        "to must list 1 to 20 addresses".into(),
                    ));
                }
                for address in std::iter::once(from).chain(to) {
                    if address.parse::<lettre::Address>().is_err()
                        && address.parse::<lettre::message::Mailbox>().is_err()
                    {
                        return Err(RuleError::InvalidRequest(format!(
                            "{address:?} is not an e-mail address"
                        )));
                    }
                }
                Ok(())
            }
            ChannelSettings::Webhook {
                url: target,
                secret,
            } => {
                url("url", &Some(target.clone()))?;
                if let Some(secret) = secret
                    && signature_header(&[secret.as_str()], "x", 0, b"").is_err()
                {
                    return Err(RuleError::InvalidRequest(
                        "secret must be `whsec_` followed by base64".into(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The secret fields, for sealing, opening and hiding.
    fn secrets_mut(&mut self) -> Vec<&mut String> {
        match self {
            ChannelSettings::Telegram { bot_token, .. } => vec![bot_token],
            ChannelSettings::Wecom { key, .. } => vec![key],
            ChannelSettings::Dingtalk {
                access_token,
                secret,
                ..
            } => std::iter::once(access_token)
                .chain(secret.as_mut())
                .collect(),
            ChannelSettings::Feishu { hook, secret, .. } => {
                std::iter::once(hook).chain(secret.as_mut()).collect()
            }
            ChannelSettings::Bark { device_key, .. } => vec![device_key],
            ChannelSettings::Email { password, .. } => password.iter_mut().collect(),
            ChannelSettings::Webhook { secret, .. } => secret.iter_mut().collect(),
        }
    }

    /// Applies `f` to every secret (sealing before storing, opening after reading).
    pub fn map_secrets(
        mut self,
        mut f: impl FnMut(&str) -> Result<String, String>,
    ) -> Result<ChannelSettings, String> {
        for secret in self.secrets_mut() {
            *secret = f(secret)?;
        }
        Ok(self)
    }

    /// The settings as the operator may see them again: secrets replaced by `"<hidden>"`.
    pub fn shown(mut self) -> ChannelSettings {
        for secret in self.secrets_mut() {
            *secret = "<hidden>".into();
        }
        // A URL may carry a secret too (a chat service's hook path, a password before the
        // host): only where it goes is shown.
        let urls: Vec<&mut String> = match &mut self {
            ChannelSettings::Telegram { api_base, .. }
            | ChannelSettings::Wecom { api_base, .. }
            | ChannelSettings::Dingtalk { api_base, .. }
            | ChannelSettings::Feishu { api_base, .. } => api_base.iter_mut().collect(),
            ChannelSettings::Bark { server, .. } => server.iter_mut().collect(),
            ChannelSettings::Webhook { url, .. } => vec![url],
            ChannelSettings::Email { .. } => Vec::new(),
        };
        for url in urls {
            *url = where_it_goes(url);
        }
        self
    }
}

/// The scheme, host and port of a URL, with `/<hidden>` for any path, query or user info.
fn where_it_goes(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return "<hidden>".into();
    };
    let origin = parsed.origin().ascii_serialization();
    let more = parsed.path() != "/"
        || parsed.query().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some();
    if more {
        format!("{origin}/<hidden>")
    } else {
        origin
    }
}

/// What an alert says.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The alert's id (the webhook's `webhook-id`).
    pub id: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub details: &'a serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Message<'_> {
    /// One text for chat services: the title, then the body.
    pub fn text(&self) -> String {
        format!("[solopay] {}\n{}", self.title, self.body)
    }
}

/// An HTTP request an alert becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAlert {
    pub url: String,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// An e-mail an alert becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAlert {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Http(HttpAlert),
    Email(EmailAlert),
}

fn json_body(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap_or_default()
}

fn base(given: &Option<String>, default: &str) -> String {
    given
        .as_deref()
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_string()
}

fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The request (or e-mail) `message` becomes on a channel with these (opened) settings, at
/// `now` (the signatures' timestamps).
pub fn outgoing(
    settings: &ChannelSettings,
    message: &Message<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Outgoing, String> {
    let text = message.text();
    let chat = |url: String, body: serde_json::Value| {
        Ok(Outgoing::Http(HttpAlert {
            url,
            body: json_body(body),
            headers: Vec::new(),
        }))
    };
    let plain_text = || serde_json::json!({"msgtype": "text", "text": {"content": text}});
    match settings {
        ChannelSettings::Telegram {
            bot_token,
            chat_id,
            api_base,
        } => chat(
            format!(
                "{}/bot{bot_token}/sendMessage",
                base(api_base, "https://api.telegram.org")
            ),
            serde_json::json!({"chat_id": chat_id, "text": text,
                               "disable_web_page_preview": true}),
        ),
        ChannelSettings::Wecom { key, api_base } => chat(
            format!(
                "{}/cgi-bin/webhook/send?key={}",
                base(api_base, "https://qyapi.weixin.qq.com"),
                encoded(key)
            ),
            plain_text(),
        ),
        ChannelSettings::Dingtalk {
            access_token,
            secret,
            api_base,
        } => {
            let mut url = format!(
                "{}/robot/send?access_token={}",
                base(api_base, "https://oapi.dingtalk.com"),
                encoded(access_token)
            );
            if let Some(secret) = secret {
                let timestamp = now.timestamp_millis().to_string();
                url.push_str(&format!(
                    "&timestamp={timestamp}&sign={}",
                    dingtalk_sign(secret, &timestamp)
                ));
            }
            chat(url, plain_text())
        }
        ChannelSettings::Feishu {
            hook,
            secret,
            api_base,
        } => {
            let url = format!(
                "{}/open-apis/bot/v2/hook/{}",
                base(api_base, "https://open.feishu.cn"),
                encoded(hook)
            );
            let content = serde_json::json!({"text": text});
            let body = match secret {
                Some(secret) => {
                    let timestamp = now.timestamp().to_string();
                    let sign = feishu_sign(secret, &timestamp);
                    serde_json::json!({"timestamp": timestamp, "sign": sign,
                                       "msg_type": "text", "content": content})
                }
                None => serde_json::json!({"msg_type": "text", "content": content}),
            };
            chat(url, body)
        }
        ChannelSettings::Bark { device_key, server } => chat(
            format!("{}/push", base(server, "https://api.day.app")),
            serde_json::json!({"device_key": device_key, "title": message.title,
                               "body": message.body, "group": "solopay"}),
        ),
        ChannelSettings::Email { .. } => Ok(Outgoing::Email(email(settings, message)?)),
        ChannelSettings::Webhook { url, secret } => Ok(Outgoing::Http(webhook(
            url,
            secret.as_deref(),
            message,
            now,
        )?)),
    }
}

fn email(settings: &ChannelSettings, message: &Message<'_>) -> Result<EmailAlert, String> {
    let ChannelSettings::Email {
        host,
        port,
        security,
        username,
        password,
        from,
        to,
    } = settings
    else {
        return Err("not an e-mail channel".into());
    };
    let security = security.unwrap_or(SmtpSecurity::Starttls);
    Ok(EmailAlert {
        host: host.clone(),
        port: port.unwrap_or(match security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }),
        security,
        credentials: username
            .clone()
            .map(|user| (user, password.clone().unwrap_or_default())),
        from: from.clone(),
        to: to.clone(),
        subject: format!("[solopay] {}", message.title),
        body: message.body.to_string(),
    })
}

fn webhook(
    url: &str,
    secret: Option<&str>,
    message: &Message<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<HttpAlert, String> {
    let body = json_body(serde_json::json!({
        "id": message.id,
        "type": format!("alert.{}", message.kind),
        "created_at": message.created_at,
        "data": {"kind": message.kind, "subject": message.subject,
                 "title": message.title, "body": message.body,
                 "details": message.details},
    }));
    let timestamp = now.timestamp();
    let mut headers = vec![
        ("webhook-id", message.id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
    ];
    if let Some(secret) = secret {
        let signature =
            signature_header(&[secret], message.id, timestamp, &body).map_err(|e| e.to_string())?;
        headers.push(("webhook-signature", signature));
    }
    Ok(HttpAlert {
        url: url.to_string(),
        body,
        headers,
    })
}

/// Whether a channel's service took the message: the success its documentation gives.
pub fn delivered(kind: AlertChannelKind, status: Option<u16>, body: Option<&str>) -> bool {
    let Some(status) = status.filter(|s| (200..300).contains(s)) else {
        return false;
    };
    let answer: serde_json::Value = body
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    let field = |name: &str| answer.get(name).cloned().unwrap_or_default();
    match kind {
        AlertChannelKind::Telegram => field("ok") == serde_json::json!(true),
        AlertChannelKind::Wecom | AlertChannelKind::Dingtalk => {
            field("errcode") == serde_json::json!(0)
        }
        AlertChannelKind::Feishu => {
            field("code") == serde_json::json!(0) || field("StatusCode") == serde_json::json!(0)
        }
        AlertChannelKind::Bark => field("code") == serde_json::json!(200),
        AlertChannelKind::Webhook | AlertChannelKind::Email => status < 300,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn shown_urls_say_only_where_they_go() {
        let shown = |settings: serde_json::Value| {
            let settings: ChannelSettings = serde_json::from_value(settings).unwrap();
            serde_json::to_value(settings.shown()).unwrap()
        };
        let hook = shown(serde_json::json!({
            "kind": "webhook", "url": "https://hooks.example.com/services/T0/B0/SECRET?x=1"
        }));
        assert_eq!(hook["url"], "https://hooks.example.com/<hidden>");
        let bark = shown(serde_json::json!({
            "kind": "bark", "device_key": "k", "server": "https://me:SECRET@bark.example:8443"
        }));
        assert_eq!(bark["server"], "https://bark.example:8443/<hidden>");
        let telegram = shown(serde_json::json!({
            "kind": "telegram", "bot_token": "1:SECRET", "chat_id": "1",
            "api_base": "https://tg.example"
        }));
        assert_eq!(telegram["api_base"], "https://tg.example");
        assert!(!telegram.to_string().contains("SECRET"));
    }

    #[test]
    fn settings_print_no_secret() {
        let settings: ChannelSettings = serde_json::from_value(serde_json::json!({
            "kind": "dingtalk", "access_token": "tok-SECRET", "secret": "SEC-SECRET"
        }))
        .unwrap();
        let printed = format!("{settings:?}");
        assert_eq!(printed, "ChannelSettings(dingtalk, secrets hidden)");
    }

    fn message() -> (serde_json::Value, chrono::DateTime<chrono::Utc>) {
        (
            serde_json::json!({"device_id": "dev_1"}),
            chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
        )
    }

    #[test]
    fn each_service_gets_its_documented_request() {
        let (details, now) = message();
        let message = Message {
            id: "alr_1",
            kind: "device.offline",
            subject: "dev_1",
            title: "Counter phone is offline",
            body: "No heartbeat for 95 s.",
            details: &details,
            created_at: now,
        };
        let http = |settings: ChannelSettings| match outgoing(&settings, &message, now).unwrap() {
            Outgoing::Http(http) => http,
            Outgoing::Email(_) => panic!("not http"),
        };
        let body =
            |http: &HttpAlert| serde_json::from_slice::<serde_json::Value>(&http.body).unwrap();

        let telegram = http(ChannelSettings::Telegram {
            bot_token: "123:abc".into(),
            chat_id: "-100".into(),
            api_base: None,
        });
        assert_eq!(
            telegram.url,
            "https://api.telegram.org/bot123:abc/sendMessage"
        );
        assert_eq!(body(&telegram)["chat_id"], "-100");
        assert_eq!(
            body(&telegram)["text"],
            "[solopay] Counter phone is offline\nNo heartbeat for 95 s."
        );

        let wecom = http(ChannelSettings::Wecom {
            key: "k-1".into(),
            api_base: None,
        });
        assert_eq!(
            wecom.url,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1"
        );
        assert_eq!(body(&wecom)["msgtype"], "text");

        let dingtalk = http(ChannelSettings::Dingtalk {
            access_token: "t".into(),
            secret: Some("SEC1".into()),
            api_base: None,
        });
        assert!(dingtalk.url.starts_with(
            "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1764000000000&sign="
        ));

        let feishu = http(ChannelSettings::Feishu {
            hook: "h".into(),
            secret: Some("s".into()),
            api_base: None,
        });
        assert_eq!(feishu.url, "https://open.feishu.cn/open-apis/bot/v2/hook/h");
        assert_eq!(body(&feishu)["timestamp"], "1764000000");
        assert_eq!(body(&feishu)["sign"], feishu_sign("s", "1764000000"));

        let bark = http(ChannelSettings::Bark {
            device_key: "dk".into(),
            server: Some("https://bark.example/".into()),
        });
        assert_eq!(bark.url, "https://bark.example/push");
        assert_eq!(body(&bark)["device_key"], "dk");
    }

    #[test]
    fn success_is_what_each_service_answers_when_it_took_the_message() {
        use AlertChannelKind::*;
        assert!(delivered(
            Telegram,
            Some(200),
            Some(r#"{"ok":true,"result":{}}"#)
        ));
        assert!(!delivered(Telegram, Some(200), Some(r#"{"ok":false}"#)));
        assert!(delivered(
            Wecom,
            Some(200),
            Some(r#"{"errcode":0,"errmsg":"ok"}"#)
        ));
        assert!(!delivered(Wecom, Some(200), Some(r#"{"errcode":93000}"#)));
        assert!(!delivered(
            Dingtalk,
            Some(200),
            Some(r#"{"errcode":310000,"errmsg":"sign not match"}"#)
        ));
        assert!(delivered(
            Feishu,
            Some(200),
            Some(r#"{"code":0,"msg":"success"}"#)
        ));
        assert!(!delivered(Feishu, Some(200), Some(r#"{"code":19021}"#)));
        assert!(delivered(
            Bark,
            Some(200),
            Some(r#"{"code":200,"message":"success"}"#)
        ));
        assert!(delivered(Webhook, Some(204), None));
        assert!(!delivered(Webhook, Some(500), None));
        assert!(!delivered(Telegram, None, None));
    }

    #[test]
    fn secrets_are_sealed_opened_and_hidden_and_only_they() {
        let settings = ChannelSettings::Dingtalk {
            access_token: "t".into(),
            secret: Some("s".into()),
            api_base: Some("https://x.example".into()),
        };
        let sealed = settings
            .clone()
            .map_secrets(|s| Ok(format!("sealed:{s}")))
            .unwrap();
        assert_eq!(
            sealed,
            ChannelSettings::Dingtalk {
                access_token: "sealed:t".into(),
                secret: Some("sealed:s".into()),
                api_base: Some("https://x.example".into()),
            }
        );
        let shown = settings.shown();
        assert_eq!(
            serde_json::to_value(shown).unwrap()["access_token"],
            "<hidden>"
        );
    }
}
