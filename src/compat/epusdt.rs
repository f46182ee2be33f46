//! epusdt's (and BEpusdt's) merchant API, as dujiaoka's Epusdt driver and the WHMCS,
//! WooCommerce and v2board-fork plugins built for it speak it: `POST
//! /api/v1/order/create-transaction` with a JSON body `{order_id, amount, notify_url,
//! redirect_url, [trade_type, name, …], signature}`, answered `{status_code, message, data,
//! request_id}` with HTTP 200 whatever happened; `POST /api/v1/order/cancel-transaction`
//! (BEpusdt) closes an order; `GET /pay/check-status/{trade_id}` (epusdt) reads one.
//!
//! `signature` is md5 over the non-empty fields but itself, `k=v` sorted and joined with `&`,
//! with the API token appended; numbers are signed as Go formats a float, shortest (`12.5`).
//! The token is a merchant's md5 key; requests name no merchant, so the merchant is the one
//! whose key verifies (or the one `?pid=` names). The body is read exactly: amounts never go
//! through a float.
//!
//! For solopay, `amount` is the order's amount, `actual_amount` what the payer must send (yuan),
//! `token` the collection code, `payment_url` the payment page. The channel is `trade_type`
//! (`wechat`/`wxpay` or `alipay`) when sent, else the merchant's `epusdt_channel`.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::compat::{optional_url, public_base, require};
use crate::config::Protocol;
use crate::core::compat::epusdt::{channel_of_trade_type, json_number};
use crate::core::merchants::{Merchant, enabled_merchants, merchant_by_pid};
use crate::core::orders::{self as order_rules, Creator, Order, OrderRequest};
use crate::core::signing::{epusdt_sign, sign_matches};
use crate::domain::{MerchantId, MerchantOrderId, OrderId, OrderProtocol, OrderStatus};
use crate::error::ApiError;
use crate::http::{AppState, read_body};
use crate::money::Amount;

/// epusdt's answer codes (`status_code`).
mod code {
    pub const OK: u32 = 200;
    pub const FAILED: u32 = 400;
    pub const BAD_SIGNATURE: u32 = 401;
    pub const ORDER_EXISTS: u32 = 10002;
    pub const NO_WALLET: u32 = 10003;
    pub const NO_AMOUNT: u32 = 10005;
    pub const NO_ORDER: u32 = 10008;
    pub const UNREADABLE: u32 = 10009;
}

/// Every epusdt answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpusdtAnswer {
    /// 200 success; 401 bad signature, 10002 the order_id was used with other parameters,
    /// 10003 no listener online, 10005 no free amount, 10008 no such order, 10009 an unreadable
    /// body, 400 anything else (see `message`).
    pub status_code: u32,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    pub request_id: String,
}

fn answer(outcome: Result<Value, (u32, String)>) -> HttpResponse {
    HttpResponse::Ok().json(match outcome {
        Ok(data) => EpusdtAnswer {
            status_code: code::OK,
            message: "success".into(),
            data: Some(data),
            request_id: String::new(),
        },
        Err((status_code, message)) => EpusdtAnswer {
            status_code,
            message,
            data: None,
            request_id: String::new(),
        },
    })
}

/// A failure as epusdt reports it.
fn failure(error: ApiError) -> (u32, String) {
    match error {
        ApiError::Unauthorized(_) => (code::BAD_SIGNATURE, "签名认证错误".into()),
        ApiError::IdempotencyConflict(_) => (
            code::ORDER_EXISTS,
            "支付交易已存在，请勿重复创建 (order_id was used with other parameters)".into(),
        ),
        ApiError::NoPayeeAvailable => (
            code::NO_WALLET,
            "无可用钱包地址，无法发起支付 (no listener online)".into(),
        ),
        ApiError::AmountsExhausted => (code::NO_AMOUNT, "无可用金额通道".into()),
        ApiError::NotFound(_) => (code::NO_ORDER, "订单不存在".into()),
        other => (code::FAILED, other.to_string()),
    }
}

/// A JSON body's fields, read exactly: strings as they are, numbers in the shortest spelling of
/// their exact decimal value, `null` as absent. Anything else is refused, as epusdt's signer
/// refuses it.
struct EpusdtFields(BTreeMap<String, String>);

impl EpusdtFields {
    fn parse(body: &[u8]) -> Result<EpusdtFields, (u32, String)> {
        let unreadable =
            |reason: String| (code::UNREADABLE, format!("无法解析请求参数 ({reason})"));
        let raw: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(body).map_err(|e| unreadable(e.to_string()))?;
        let mut fields = BTreeMap::new();
        for (name, value) in raw {
            let text = value.get().trim();
            let read = if text.starts_with('"') {
                serde_json::from_str::<String>(text).map_err(|e| unreadable(e.to_string()))?
            } else if text == "null" {
                continue;
            } else {
                // Plain decimals only: an exponent form is no amount anyone sends.
                let plain = text
                    .strip_prefix('-')
                    .unwrap_or(text)
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.');
                let number: rust_decimal::Decimal =
                    text.parse().ok().filter(|_| plain).ok_or_else(|| {
                        unreadable(format!("{name} is not a plain number or a string"))
                    })?;
                number.normalize().to_string()
            };
            fields.insert(name, read);
        }
        Ok(EpusdtFields(fields))
    }

    fn text(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }

    /// The merchant whose token (md5 key) the signature verifies with: among `candidates`.
    fn signer(&self, candidates: Vec<Merchant>) -> Result<Merchant, ApiError> {
        let pairs = || self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        candidates
            .into_iter()
            .find(|merchant| {
                sign_matches(
                    &epusdt_sign(pairs(), merchant.md5_key.expose()),
                    self.text("signature"),
                )
            })
            .ok_or_else(|| ApiError::Unauthorized("bad signature".into()))
    }

    /// The native request for `merchant`, each field checked.
    fn order_request(&self, merchant: &Merchant, max: Amount) -> Result<OrderRequest, ApiError> {
        let merchant_order_id =
            MerchantOrderId::parse(self.text("order_id"), OrderProtocol::Epusdt)?;
        let amount = Amount::parse(self.text("amount").trim(), max)?;
        let channel = match self.0.get("trade_type").map(|t| t.trim()) {
            Some(trade_type) if !trade_type.is_empty() => channel_of_trade_type(trade_type)
                .ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "不支持的 trade_type {trade_type:?}：本站只支持 alipay 和 wxpay (wechat)"
                    ))
                })?,
            _ => merchant.epusdt_channel.ok_or_else(|| {
                ApiError::InvalidRequest(
                    "no channel: send trade_type (alipay or wxpay), or have the operator set \
                     the merchant's epusdt_channel"
                        .into(),
                )
            })?,
        };
        let notify_url = optional_url("notify_url", self.0.get("notify_url").map(String::as_str))?
            .ok_or_else(|| ApiError::InvalidRequest("notify_url is required".into()))?;
        let name = self.text("name").trim();
        if name.chars().count() > 256 || name.chars().any(char::is_control) {
            return Err(ApiError::InvalidRequest(
                "name must be at most 256 characters".into(),
            ));
        }
        Ok(OrderRequest {
            merchant_order_id,
            amount,
            channel,
            subject: Some(name.to_string()).filter(|n| !n.is_empty()),
            notify_url: Some(notify_url),
            return_url: optional_url(
                "redirect_url",
                self.0.get("redirect_url").map(String::as_str),
            )?,
            expires_in: None,
            metadata: None,
            protocol: OrderProtocol::Epusdt,
            compat: None,
        })
    }
}

/// The merchants a request may come from: the one `?pid=` names, or every enabled one.
fn candidates(
    conn: &mut diesel::PgConnection,
    pid: Option<i64>,
) -> Result<Vec<Merchant>, ApiError> {
    Ok(match pid {
        Some(pid) => vec![merchant_by_pid(conn, pid)?],
        None => enabled_merchants(conn)?,
    })
}

/// `?pid=` of the request, if any.
fn pid_of(req: &HttpRequest) -> Option<i64> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(name, _)| name == "pid")
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// The body of a POST, read exactly: `404` when epusdt is not served.
async fn read_fields(
    state: &AppState,
    payload: web::Payload,
) -> Result<Result<EpusdtFields, (u32, String)>, ApiError> {
    require(&state.settings, Protocol::Epusdt)?;
    let body = read_body(payload).await?;
    Ok(EpusdtFields::parse(&body))
}

/// Create an order: JSON `{order_id, amount, notify_url, redirect_url, signature}` and optionally
/// `trade_type` (`alipay`, `wxpay`), `name`; `?pid=` may name the merchant.
#[utoipa::path(
    tag = "compat: epusdt",
    params(("pid" = Option<String>, Query, description = "The merchant, when several share the service (otherwise the one whose key verifies the signature)")),
    request_body(content = Object, description = "`{order_id, amount, notify_url, redirect_url, [trade_type], [name], signature}`"),
    responses(
        (status = 200, description = "`{status_code: 200, message: \"success\", data: {trade_id, order_id, amount, actual_amount, token, expiration_time, payment_url}}`, or a failure `status_code` and `message`", body = EpusdtAnswer),
        (status = 404, description = "`not_found`: epusdt is switched off"),
    )
)]
#[post("/api/v1/order/create-transaction")]
pub async fn create_transaction(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let fields = match read_fields(&state, payload).await? {
        Ok(fields) => fields,
        Err(refusal) => return Ok(answer(Err(refusal))),
    };
    let (rules, max_amount, pid) = (state.rules.clone(), state.settings.max_amount, pid_of(&req));
    let channel = fields
        .0
        .get("trade_type")
        .and_then(|t| channel_of_trade_type(t));
    let created = state
        .db
        .run_allocating(channel, move |conn| -> Result<Order, ApiError> {
            let merchant = fields.signer(candidates(conn, pid)?)?;
            let request = fields.order_request(&merchant, max_amount)?;
            let creator = Creator::Merchant(&merchant.id);
            Ok(order_rules::create_order(conn, creator, &request, &rules)?.into_order())
        })
        .await;
    let base = public_base(&state.settings, &req);
    Ok(answer(created.map_err(failure).map(|order| {
        json!({
            "trade_id": order.id,
            "order_id": order.merchant_order_id,
            "amount": json_number(Amount::from_stored(order.amount)),
            "actual_amount": json_number(Amount::from_stored(order.payable_amount)),
            "token": order.qr_code,
            "expiration_time": order.expires_at.timestamp(),
            "payment_url": format!("{base}/pay/{}", order.id),
        })
    })))
}

/// Close an unpaid order (BEpusdt): JSON `{trade_id, signature}`.
#[utoipa::path(
    tag = "compat: epusdt",
    params(("pid" = Option<String>, Query, description = "The merchant, when several share the service")),
    request_body(content = Object, description = "`{trade_id, signature}`"),
    responses(
        (status = 200, description = "`{status_code: 200, data: {trade_id}}`, or a failure", body = EpusdtAnswer),
        (status = 404, description = "`not_found`: epusdt is switched off"),
    )
)]
#[post("/api/v1/order/cancel-transaction")]
pub async fn cancel_transaction(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let fields = match read_fields(&state, payload).await? {
        Ok(fields) => fields,
        Err(refusal) => return Ok(answer(Err(refusal))),
    };
    let (grace, pid) = (state.rules.late_payment_grace, pid_of(&req));
    let closed = state
        .db
        .run(move |conn| -> Result<Order, ApiError> {
            let merchant = fields.signer(candidates(conn, pid)?)?;
            let trade_id = fields.text("trade_id");
            Ok(order_rules::close_order(
                conn,
                MerchantId(&merchant.id),
                OrderId(trade_id),
                grace,
            )?)
        })
        .await;
    Ok(answer(
        closed
            .map_err(failure)
            .map(|order| json!({ "trade_id": order.id })),
    ))
}

/// An order's status (epusdt's checkout page polls it; no signature: the id is unguessable):
/// 1 waiting, 2 paid, 3 expired or closed.
#[utoipa::path(
    tag = "compat: epusdt",
    params(("trade_id" = String, Path, description = "solopay's order id (`ord_…`)")),
    responses(
        (status = 200, description = "`{status_code: 200, data: {trade_id, status}}`, or 10008", body = EpusdtAnswer),
        (status = 404, description = "`not_found`: epusdt is switched off"),
    )
)]
#[get("/pay/check-status/{trade_id}")]
pub async fn check_status(
    state: web::Data<AppState>,
    trade_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&state.settings, Protocol::Epusdt)?;
    let trade_id = trade_id.into_inner();
    let found = state
        .db
        .run(move |conn| -> Result<Order, ApiError> {
            order_rules::read_order(conn, &trade_id)?
                .filter(|order| order.protocol == OrderProtocol::Epusdt)
                .ok_or_else(|| ApiError::not_found("order"))
        })
        .await;
    Ok(answer(found.map_err(failure).map(|order| {
        let status = match order.status {
            OrderStatus::Pending => 1,
            OrderStatus::Paid => 2,
            OrderStatus::Expired | OrderStatus::Closed => 3,
        };
        json!({ "trade_id": order.id, "status": status })
    })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::EpusdtFields;

    #[test]
    fn numbers_are_read_exactly_and_signed_shortest() {
        let fields =
            EpusdtFields::parse(br#"{"amount": 10.50, "order_id": "A1", "n": null, "t": 100}"#)
                .unwrap();
        assert_eq!(fields.text("amount"), "10.5");
        assert_eq!(fields.text("t"), "100");
        assert!(!fields.0.contains_key("n"));
        assert!(EpusdtFields::parse(br#"{"amount": true}"#).is_err());
        assert!(EpusdtFields::parse(br#"{"amount": 1e2}"#).is_err());
        assert!(EpusdtFields::parse(b"[1]").is_err());
    }
}
