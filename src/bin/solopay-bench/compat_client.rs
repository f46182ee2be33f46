//! Speaking solopay's older protocols as their clients do, to any server that speaks them: a shop
//! plugin creating V免签 orders (`/createOrder`) and 易支付 orders (`/mapi.php`), and the V免签
//! app saying it is alive (`/appHeart`) and what it was paid (`/appPush`), each md5-signed as
//! its protocol says. Amounts travel as the text the server wrote, never as numbers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;
use solopay::core::signing::{epay_sign, md5_hex};

use crate::Result;

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// A new TCP connection for every request, as PHP shop plugins and the app connect.
    PerRequest,
    /// Requests reuse pooled connections.
    KeepAlive,
}

impl Connection {
    pub fn describe(self) -> &'static str {
        match self {
            Connection::PerRequest => "new connection per request",
            Connection::KeepAlive => "keep-alive",
        }
    }
}

/// The V免签 merchant: `key` signs its requests (the merchant's md5 key).
#[derive(Debug, Clone)]
pub struct VmqMerchant {
    pub key: String,
}

/// The V免签 app on a listener phone: `secret` signs its requests (the device's secret).
#[derive(Debug, Clone)]
pub struct VmqApp {
    pub secret: String,
}

/// A 易支付 merchant: its number and md5 key.
#[derive(Debug, Clone)]
pub struct EpayMerchant {
    pub pid: String,
    pub key: String,
}

/// A V免签 order as `/createOrder` answered it: what the app pushes once it is paid.
#[derive(Debug, Clone)]
pub struct VmqOrder {
    pub order_id: String,
    /// 1 WeChat, 2 Alipay.
    pub pay_type: String,
    /// What the payer must send, as the server wrote it.
    pub really_price: String,
}

/// What a request came to: its outcome, or the refusal in the server's words (`msg`), or
/// `HTTP <status>` or `transport: …` when no protocol answer came.
pub type Answer<T> = std::result::Result<T, String>;

/// Every answer of these protocols: `{code, msg, …}`, 1 meaning success.
#[derive(Debug, Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    msg: Option<String>,
    /// V免签's payload.
    #[serde(default)]
    data: Option<Box<RawValue>>,
    /// 易支付's order number.
    #[serde(default)]
    trade_no: Option<String>,
}

/// `/createOrder`'s `data`; `reallyPrice` as written (a JSON number read as a float would not
/// be the amount).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedVmqOrder {
    order_id: String,
    pay_type: u8,
    really_price: Box<RawValue>,
}

#[derive(Clone)]
pub struct CompatClient {
    http: reqwest::Client,
    base_url: String,
}

impl CompatClient {
    pub fn new(base_url: &str, connection: Connection) -> Result<CompatClient> {
        let builder = solopay::webhooks::sender::http_client_builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        let builder = match connection {
            // No idle connection is kept, so each request opens its own.
            Connection::PerRequest => builder.pool_max_idle_per_host(0),
            // Below the service's 5 s keep-alive (see `client::http_client`).
            Connection::KeepAlive => builder.pool_idle_timeout(Duration::from_secs(2)),
        };
        Ok(CompatClient {
            http: builder.build()?,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// A GET of `path` with `fields` in the query, as the V免签 app and plugins send them.
    async fn get(&self, path: &str, fields: &[(&str, &str)]) -> Answer<Envelope> {
        let query = form(fields);
        let request = self.http.get(format!("{}{path}?{query}", self.base_url));
        envelope(request.send().await).await
    }

    /// A form POST of `fields` to `path`, as 易支付 plugins send them.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer<Envelope> {
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        envelope(request.send().await).await
    }

    /// `/createOrder`: `sign = md5(payId + param + type + price + key)`.
    pub async fn vmq_create_order(
        &self,
        merchant: &VmqMerchant,
        pay_id: &str,
        pay_type: &str,
        price: &str,
    ) -> Answer<VmqOrder> {
        let param = "solopay-bench";
        let sign = md5_hex(&format!("{pay_id}{param}{pay_type}{price}{}", merchant.key));
        let fields = [
            ("payId", pay_id),
            ("type", pay_type),
            ("price", price),
            ("param", param),
            ("sign", &sign),
        ];
        let data = self.get("/createOrder", &fields).await?.data;
        let order: CreatedVmqOrder = data
            .and_then(|data| serde_json::from_str(data.get()).ok())
            .ok_or("success without the order in data")?;
        Ok(VmqOrder {
            order_id: order.order_id,
            pay_type: order.pay_type.to_string(),
            really_price: order.really_price.get().to_string(),
        })
    }

    /// `/appHeart`: `t` (ms) and `sign = md5(t + secret)`.
    pub async fn vmq_app_heart(&self, app: &VmqApp) -> Answer<()> {
        let t = unix_millis();
        let sign = md5_hex(&format!("{t}{}", app.secret));
        self.get("/appHeart", &[("t", &t), ("sign", &sign)])
            .await
            .map(drop)
    }

    /// `/appPush`: a payment of `price` on `pay_type`, `sign = md5(type + price + t + secret)`.
    pub async fn vmq_app_push(&self, app: &VmqApp, pay_type: &str, price: &str) -> Answer<()> {
        let t = unix_millis();
        let sign = md5_hex(&format!("{pay_type}{price}{t}{}", app.secret));
        let fields = [
            ("t", t.as_str()),
            ("type", pay_type),
            ("price", price),
            ("sign", &sign),
        ];
        self.get("/appPush", &fields).await.map(drop)
    }

    /// `/mapi.php`: the order's fields, signed as 易支付's SDK signs them (sorted, empty ones
    /// left out, the key appended); answers the order number.
    pub async fn epay_create_order(
        &self,
        merchant: &EpayMerchant,
        out_trade_no: &str,
        pay_type: &str,
        money: &str,
    ) -> Answer<String> {
        let mut fields = vec![
            ("pid", merchant.pid.as_str()),
            ("type", pay_type),
            ("out_trade_no", out_trade_no),
            ("notify_url", "https://shop.example/epay/notify"),
            ("return_url", "https://shop.example/epay/return"),
            ("name", "solopay-bench"),
            ("money", money),
            ("clientip", "203.0.113.9"),
            ("device", "pc"),
        ];
        let sign = epay_sign(fields.iter().copied(), &merchant.key);
        fields.extend([("sign", sign.as_str()), ("sign_type", "MD5")]);
        self.post("/mapi.php", &fields)
            .await?
            .trade_no
            .ok_or_else(|| "success without trade_no".to_string())
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The protocol's answer when it says success; otherwise what refused the request.
async fn envelope(sent: reqwest::Result<reqwest::Response>) -> Answer<Envelope> {
    // Without the URL: it carries the request's fields, and refusals are counted by message.
    let transport = |error: reqwest::Error| format!("transport: {}", error.without_url());
    let response = sent.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let body = response.bytes().await.map_err(transport)?;
    let answer: Envelope = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "HTTP {} with an answer that is no {{code, msg}}",
            status.as_u16()
        )
    })?;
    if answer.code == 1 {
        Ok(answer)
    } else {
        Err(answer
            .msg
            .unwrap_or_else(|| format!("code {} without msg", answer.code)))
    }
}

/// The app's clock: milliseconds since the epoch.
fn unix_millis() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string()
}
