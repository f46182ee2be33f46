//! Talking to the service as its clients do: the operator setting up merchants, devices and
//! payees, a merchant creating orders, a shop page long-polling, and listener devices signing
//! heartbeats and payment notifications.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use crate::service::Service;
use crate::{HEARTBEAT_EVERY, LONG_POLL_WAIT_SECS, Result};

#[derive(Debug, Clone)]
pub struct Merchant {
    pub id: String,
    pub api_key: String,
    /// The number the old protocols name it by (易支付's `pid`).
    pub pid: i64,
    /// The key of the old protocols' md5 signs.
    pub md5_key: String,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub secret: String,
}

/// The operator, merchant and listener sides of the API.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base_url: String,
    pub admin_token: String,
}

/// What a timed request came to: `ok`, or the status and problem code.
pub type Outcome = std::result::Result<Value, String>;

impl Api {
    pub fn new(service: &Service) -> Result<Api> {
        Ok(Api {
            http: http_client()?,
            base_url: service.base_url.clone(),
            admin_token: service.admin_token.clone(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {answer}").into());
        }
        Ok(answer)
    }

    pub async fn create_merchant(&self, name: &str, notify_url: Option<&str>) -> Result<Merchant> {
        let body = json!({ "name": name, "notify_url": notify_url });
        let created = self
            .admin(reqwest::Method::POST, "/admin/merchants", &body)
            .await?;
        Ok(Merchant {
            id: text_field(&created, "id")?,
            api_key: text_field(&created, "api_key")?,
            pid: created["pid"]
                .as_i64()
                .ok_or_else(|| format!("no \"pid\" in {created}"))?,
            md5_key: text_field(&created, "md5_key")?,
        })
    }

    /// A device with one payee on each of `channels`, online (it has sent its first heartbeat).
    pub async fn online_payees(&self, name: &str, channels: &[&str]) -> Result<Device> {
        let created = self
            .admin(
                reqwest::Method::POST,
                "/admin/devices",
                &json!({ "name": name }),
            )
            .await?;
        let device = Device {
            id: text_field(&created, "id")?,
            secret: text_field(&created, "secret")?,
        };
        for channel in channels {
            let payee = json!({
                "channel": channel,
                "name": format!("{name} {channel}"),
                "qr_code": format!("{channel}://collect/{}", device.id),
                "device_id": device.id,
            });
            self.admin(reqwest::Method::POST, "/admin/payees", &payee)
                .await?;
        }
        self.heartbeat(&device).await?;
        Ok(device)
    }

    /// A device with one payee on `channel`, online.
    pub async fn online_payee(&self, name: &str, channel: &str) -> Result<Device> {
        self.online_payees(name, &[channel]).await
    }

    /// Takes a device's payees out of allocation (`false`) or puts them back.
    pub async fn set_device_enabled(&self, device: &Device, enabled: bool) -> Result<()> {
        self.admin(
            reqwest::Method::PATCH,
            &format!("/admin/devices/{}", device.id),
            &json!({ "enabled": enabled }),
        )
        .await?;
        Ok(())
    }

    /// A listener request: `v1=` hex HMAC-SHA256(device secret, "<unix time>.<body>").
    async fn signed_post(&self, path: &str, device: &Device, body: Vec<u8>) -> Result<Outcome> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)?
            .as_secs()
            .to_string();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(device.secret.as_bytes())
            .map_err(|e| format!("device secret: {e}"))?;
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(&body);
        let signature = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("X-Solopay-Device", &device.id)
            .header("X-Solopay-Timestamp", timestamp)
            .header("X-Solopay-Signature", signature)
            .body(body)
            .send()
            .await?;
        outcome(response).await
    }

    pub async fn heartbeat(&self, device: &Device) -> Result<()> {
        let body = br#"{"app_version": "solopay-bench", "battery": 80}"#.to_vec();
        self.signed_post("/heartbeat", device, body)
            .await?
            .map_err(|e| format!("heartbeat of {}: {e}", device.id))?;
        Ok(())
    }

    /// A payment of `amount` as a WeChat listener reports it: the amount it read, the text and
    /// the notification's post time `posted_at` (as the README asks of a listener; it gives the
    /// report a same-payment key, so the earlier-report read runs). A retry of the same payment
    /// sends the same `notification_id` and `posted_at`.
    pub async fn notify(
        &self,
        device: &Device,
        notification_id: &str,
        amount: &str,
        posted_at: &str,
    ) -> Result<Outcome> {
        let body = json!({
            "notification_id": notification_id,
            "channel": "wechat",
            "amount": amount,
            "package": "com.tencent.mm",
            "title": "微信支付",
            "text": format!("微信支付收款{amount}元"),
            "posted_at": posted_at,
        });
        self.signed_post("/notify", device, body.to_string().into_bytes())
            .await
    }

    pub async fn create_order(
        &self,
        merchant: &Merchant,
        merchant_order_id: &str,
        amount: &str,
        channel: &str,
    ) -> Result<Outcome> {
        let body = json!({
            "merchant_order_id": merchant_order_id,
            "amount": amount,
            "channel": channel,
        });
        let response = self
            .http
            .post(self.url("/orders"))
            .bearer_auth(&merchant.api_key)
            .json(&body)
            .send()
            .await?;
        outcome(response).await
    }

    /// `GET /orders/{id}?wait=30`: answers when the order leaves `pending`.
    pub async fn long_poll(&self, order_id: &str) -> Result<Outcome> {
        let response = self
            .http
            .get(self.url(&format!("/orders/{order_id}?wait={LONG_POLL_WAIT_SECS}")))
            .timeout(Duration::from_secs(LONG_POLL_WAIT_SECS + 10))
            .send()
            .await?;
        outcome(response).await
    }
}

pub fn http_client() -> Result<reqwest::Client> {
    Ok(solopay::webhooks::sender::http_client_builder()
        .timeout(Duration::from_secs(30))
        // Below the service's 5 s keep-alive, so that a request never goes out on a connection
        // the server is closing.
        .pool_idle_timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

pub async fn outcome(response: reqwest::Response) -> Result<Outcome> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Ok(if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{} {}",
            status.as_u16(),
            body["code"].as_str().unwrap_or("(no code)")
        ))
    })
}

pub fn text_field(value: &Value, name: &str) -> Result<String> {
    value[name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no {name:?} in {value}").into())
}

/// Devices that must stay online: each gets a heartbeat every 20 s while it is listed.
#[derive(Clone, Default)]
pub struct Listeners {
    pub devices: Arc<Mutex<Vec<Device>>>,
}

impl Listeners {
    pub fn add(&self, device: Device) {
        self.lock().push(device);
    }

    pub fn remove(&self, device: &Device) {
        self.lock().retain(|d| d.id != device.id);
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Device>> {
        self.devices.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn keep_alive(&self, api: Api) -> tokio::task::JoinHandle<()> {
        let listeners = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                ticks.tick().await;
                let devices = listeners.lock().clone();
                for device in devices {
                    if let Err(error) = api.heartbeat(&device).await {
                        eprintln!("warning: {error}");
                    }
                }
            }
        })
    }
}
