//! Real shop plugins against solopay: each test builds its requests exactly as the plugin's code
//! does (field set, PHP number formatting, sign, GET or POST, URL joining), runs the order
//! through a signed listener notification, checks the callback the way the plugin checks it
//! (re-implemented here, independently of the service), and asks for the status the way the
//! plugin asks. Plugin sources: see `shared/reference/shop-plugins.md`.

mod epay_v1;
mod epay_v2;
mod epusdt;
mod vmq;
mod vpay;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::compat::local_webhooks;
use crate::helpers::*;
use crate::receiver::Receiver;

/// What each shop test starts from: an instance with local webhooks, a merchant whose default
/// webhook URL is the receiver, its `pid` and md5 key, and an online listener per channel.
pub(crate) struct Shop {
    pub env: TestEnv,
    pub receiver: Receiver,
    pub merchant: MerchantKeys,
    pub pid: String,
    pub key: String,
    pub wechat: Listener,
    pub alipay: Listener,
}

impl Shop {
    pub async fn open() -> Shop {
        Shop::open_with(|_| {}).await
    }

    pub async fn open_with(configure: impl FnOnce(&mut solopay::config::Settings)) -> Shop {
        let receiver = Receiver::start().await;
        let env = spawn_app_with(|s| {
            local_webhooks(s);
            configure(s);
        })
        .await;
        let merchant = env.app.merchant_with_webhooks(&receiver.url()).await;
        let (pid, key) = crate::compat::merchant_keys(&env, &merchant).await;
        let wechat = env.app.online_listener("wechat").await;
        let alipay = env.app.online_listener("alipay").await;
        Shop {
            env,
            receiver,
            merchant,
            pid,
            key,
            wechat,
            alipay,
        }
    }

    /// The merchant's next callback answers: `body`, as its plugin prints it.
    pub fn answer_callbacks_with(&self, body: &str) {
        self.receiver.answer_with([crate::receiver::Answer {
            status: 200,
            headers: vec![],
            body: body.into(),
        }]);
    }

    pub fn app(&self) -> &TestApp {
        &self.env.app
    }

    /// The base URL a shop owner enters, as the plugin's settings page takes it.
    pub fn base(&self, trailing_slash: bool) -> String {
        if trailing_slash {
            format!("{}/", self.app().address)
        } else {
            self.app().address.clone()
        }
    }

    /// The payer pays the order's payable amount; the listener reports it, signed. The same
    /// report sent again (a replay) credits nothing more.
    pub async fn pay(&self, order_id: &str) -> String {
        let order = self.app().get_order(order_id).await;
        let (channel, payable) = (
            order["channel"].as_str().unwrap().to_string(),
            order["payable_amount"].as_str().unwrap().to_string(),
        );
        let listener = if channel == "wechat" {
            &self.wechat
        } else {
            &self.alipay
        };
        let report = json!({
            "notification_id": uuid::Uuid::new_v4().to_string(),
            "channel": channel,
            "amount": payable,
        });
        for _ in 0..2 {
            let answer = self.app().notify(&listener.device, &report).await;
            assert_eq!(answer.status(), StatusCode::OK);
        }
        assert_eq!(
            self.app().get_order(order_id).await["status"],
            "paid",
            "{order_id}"
        );
        let paid_by = format!("SELECT count(*) FROM payments WHERE order_id = '{order_id}'");
        assert_eq!(
            self.env.db.count(&paid_by).await,
            1,
            "a replay credits once"
        );
        payable
    }

    /// The callbacks the merchant received so far, once `count` arrived.
    pub async fn callbacks(&self, count: usize) -> Vec<crate::receiver::Received> {
        let received = self.receiver.wait_for(count, Duration::from_secs(10)).await;
        assert!(received.len() >= count, "{received:?}");
        received
    }

    /// Whether the order's callback was accepted (the plugin's answer understood), once.
    pub async fn callback_settled(&self, order_id: &str) -> bool {
        let db = &self.env.db;
        let sql = format!(
            "SELECT count(*) FROM webhook_deliveries WHERE order_id = '{order_id}' \
             AND status = 'succeeded'"
        );
        eventually(Duration::from_secs(5), || {
            let sql = sql.clone();
            async move { db.count(&sql).await == 1 }
        })
        .await
    }

    /// A client that does not follow redirects (a browser's steps, one at a time).
    pub fn browser(&self) -> reqwest::Client {
        solopay::webhooks::sender::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }
}

/// PHP's `(float)` of an amount in cents, printed: `10`, `10.5`, `10.01`.
pub(crate) fn php_float(cents: i64) -> String {
    let text = format!("{}.{:02}", cents / 100, cents % 100);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// PHP's `http_build_query` (values through `urlencode`: space as `+`).
pub(crate) fn http_build_query(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", php_urlencode(k), php_urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn php_urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `ksort` by key, as PHP sorts string keys (byte order).
pub(crate) fn ksort(fields: &mut [(String, String)]) {
    fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
}

/// A field of a received callback's query.
pub(crate) fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The page a redirect points at, as a path on the service.
pub(crate) fn location(response: &reqwest::Response) -> String {
    let location = response.headers()["location"].to_str().unwrap().to_string();
    match location.split_once("://") {
        Some((_, rest)) => rest
            .split_once('/')
            .map(|(_, path)| format!("/{path}"))
            .unwrap(),
        None => location,
    }
}

/// The order id a payment page path names.
pub(crate) fn order_of_page(path: &str) -> String {
    path.trim_start_matches("/pay/").to_string()
}

/// A JSON value as PHP prints it inside a string (`"$key=$val"`).
pub(crate) fn php_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => {
                // PHP prints a float with up to 14 significant digits, shortest.
                let text = format!("{:.2}", n.as_f64().unwrap());
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            }
        },
        Value::Bool(true) => "1".into(),
        _ => String::new(),
    }
}

/// A form body (`application/x-www-form-urlencoded`), as browsers and PHP's curl send one.
pub(crate) trait FormBody {
    fn form_fields<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_fields<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(encode(fields))
    }
}

/// Fields URL-encoded as a form or query.
pub(crate) fn encode<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish()
}
