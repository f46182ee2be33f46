//! 易支付: `/submit.php` (a payment page), `/mapi.php` (JSON) and `/api.php?act=order` (query),
//! for the "易支付" plugins of PHP shop systems. Merchants are named by their numeric `pid`;
//! requests are signed with the merchant's md5 key: every field but `sign`, `sign_type` and empty
//! ones, sorted by name, joined as `k=v&k=v` without URL-encoding, the key appended, MD5.
//!
//! In this protocol `money` is the order's amount; what the payer must send (`money` plus or
//! minus a few fen) is shown on solopay's payment page and returned as `real_money`.

use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::compat::{Fields, check_param, optional_url, public_base, read_fields, require};
use crate::config::Protocol;
use crate::core::compat::{channel_of_epay_type, epay_time, epay_type};
use crate::core::merchants::{Merchant, merchant_by_pid};
use crate::core::orders::{
    self as order_rules, Creation, Creator, Order, OrderLookup, OrderRequest,
};
use crate::core::secrets::constant_time_eq;
use crate::core::signing::epay_sign;
use crate::domain::{MerchantOrderId, OrderProtocol, OrderStatus};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// 易支付's `pid`: a merchant's number.
fn merchant_number(pid: &str) -> Result<i64, ApiError> {
    pid.trim()
        .parse()
        .map_err(|_| ApiError::InvalidRequest("pid must be a merchant number".into()))
}

fn check_sign(fields: &Fields, merchant: &Merchant) -> Result<(), ApiError> {
    let expected = epay_sign(fields.pairs(), merchant.md5_key.expose());
    let given = fields.text("sign").trim().to_ascii_lowercase();
    if constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("签名错误".into()))
    }
}

fn epay_order_request(fields: &Fields, max_amount: Amount) -> Result<OrderRequest, ApiError> {
    let merchant_order_id =
        MerchantOrderId::parse(fields.text("out_trade_no"), OrderProtocol::Epay)?;
    let channel = channel_of_epay_type(fields.text("type")).ok_or_else(|| {
        ApiError::InvalidRequest("不支持的支付方式 (type: wxpay or alipay)".into())
    })?;
    let amount = Amount::parse(fields.text("money").trim(), max_amount)?;
    let name = fields.text("name").trim();
    if name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "name must be at most 256 characters".into(),
        ));
    }
    let param = fields.text("param");
    check_param(param)?;
    Ok(OrderRequest {
        merchant_order_id,
        amount,
        channel,
        subject: Some(name.to_string()).filter(|n| !n.is_empty()),
        notify_url: optional_url("notify_url", fields.get("notify_url"))?,
        return_url: optional_url("return_url", fields.get("return_url"))?,
        expires_in: None,
        metadata: None,
        protocol: OrderProtocol::Epay,
        // The payer's address and device are not parameters of the order: a re-post from
        // another browser is the same order.
        compat: Some(serde_json::json!({ "param": param })),
    })
}

/// Creates the order a signed request describes, or returns the same earlier one. Re-posting an
/// unpaid `out_trade_no` with other parameters is refused.
async fn create(state: &AppState, fields: Fields) -> Result<Order, ApiError> {
    let (rules, max) = (state.rules.clone(), state.settings.max_amount);
    state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let merchant = merchant_by_pid(conn, merchant_number(fields.text("pid"))?)?;
            check_sign(&fields, &merchant)?;
            let request = epay_order_request(&fields, max)?;
            match order_rules::create_order(conn, Creator::Merchant(&merchant.id), &request, &rules)
            {
                Ok(Creation::Created(order) | Creation::Repeated(order)) => Ok(order),
                Err(ApiError::IdempotencyConflict(_)) => Err(ApiError::IdempotencyConflict(
                    "订单号已存在，且参数不同 (out_trade_no was used with other parameters)".into(),
                )),
                Err(other) => Err(other),
            }
        })
        .await
}

fn message(error: &ApiError) -> String {
    match error {
        ApiError::NoPayeeAvailable => "收款通道暂不可用，请稍后再试 (no listener online)".into(),
        ApiError::AmountsExhausted => "订单超出负荷，请稍后重试 (amounts exhausted)".into(),
        other => other.to_string(),
    }
}

/// Create an order and send the payer to solopay's payment page: `pid`, `type` (`wxpay`,
/// `alipay`), `out_trade_no`, `notify_url`, `return_url`, `name`, `money`, optional `param`,
/// `sign`, `sign_type=MD5`.
#[utoipa::path(
    tag = "compat: 易支付",
    params(
        ("pid" = String, Query), ("type" = String, Query), ("out_trade_no" = String, Query),
        ("notify_url" = String, Query), ("return_url" = Option<String>, Query),
        ("name" = String, Query), ("money" = String, Query), ("param" = Option<String>, Query),
        ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 302, description = "To the payment page"),
        (status = 400, description = "A page saying why the order was refused", content_type = "text/html"),
        (status = 404, description = "`not_found`: 易支付 is switched off"),
    )
)]
#[route("/submit.php", method = "GET", method = "POST")]
pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&state.settings, Protocol::Epay)?;
    let fields = read_fields(&req, payload).await?;
    Ok(match create(&state, fields).await {
        Ok(order) => HttpResponse::Found()
            .insert_header((
                LOCATION,
                format!("{}/pay/{}", public_base(&state.settings, &req), order.id),
            ))
            .finish(),
        Err(error) => HttpResponse::BadRequest()
            .content_type("text/html; charset=utf-8")
            .body(crate::compat::page::message_page(
                "无法创建订单",
                &message(&error),
            )),
    })
}

/// `/mapi.php`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpayCreated {
    /// 1 success, -1 failure.
    pub code: i8,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    /// solopay's payment page: send the payer there (it shows what to pay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payurl: Option<String>,
    /// The QR code's text, for plugins that draw their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qrcode: Option<String>,
    /// What the payer must send: `money` plus or minus a few fen. A plugin that draws its own
    /// page must show this, not `money`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_money: Option<String>,
}

/// Create an order (JSON answer): the fields of `/submit.php` plus `clientip`, `device`.
#[utoipa::path(
    tag = "compat: 易支付",
    params(
        ("pid" = String, Query), ("type" = String, Query), ("out_trade_no" = String, Query),
        ("notify_url" = String, Query), ("return_url" = Option<String>, Query),
        ("name" = String, Query), ("money" = String, Query), ("param" = Option<String>, Query),
        ("clientip" = Option<String>, Query), ("device" = Option<String>, Query),
        ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 200, description = "`{code: 1, trade_no, payurl, qrcode, real_money}`, or `{code: -1, msg}`", body = EpayCreated),
        (status = 404, description = "`not_found`: 易支付 is switched off"),
    )
)]
#[route("/mapi.php", method = "GET", method = "POST")]
pub async fn mapi(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&state.settings, Protocol::Epay)?;
    let fields = read_fields(&req, payload).await?;
    Ok(HttpResponse::Ok().json(match create(&state, fields).await {
        Ok(order) => EpayCreated {
            code: 1,
            msg: "succ".into(),
            payurl: Some(format!(
                "{}/pay/{}",
                public_base(&state.settings, &req),
                order.id
            )),
            qrcode: Some(order.qr_code.clone()),
            real_money: Some(Amount::from_stored(order.payable_amount).to_string()),
            trade_no: Some(order.id),
        },
        Err(error) => EpayCreated {
            code: -1,
            msg: message(&error),
            trade_no: None,
            payurl: None,
            qrcode: None,
            real_money: None,
        },
    }))
}

/// `/api.php?act=order`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpayOrder {
    pub code: i8,
    pub msg: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub order: Option<serde_json::Value>,
}

/// Query an order: `act=order`, `pid`, `key` (the merchant's md5 key), and `out_trade_no` or
/// `trade_no`.
#[utoipa::path(
    tag = "compat: 易支付",
    params(
        ("act" = String, Query, description = "`order`"), ("pid" = String, Query),
        ("key" = String, Query), ("out_trade_no" = Option<String>, Query),
        ("trade_no" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "`{code: 1, msg: \"succ\", trade_no, out_trade_no, type, pid, addtime, endtime, name, money, status}`, or `{code: -1, msg}`", body = EpayOrder),
        (status = 404, description = "`not_found`: 易支付 is switched off"),
    )
)]
#[route("/api.php", method = "GET", method = "POST")]
pub async fn api(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&state.settings, Protocol::Epay)?;
    let fields = read_fields(&req, payload).await?;
    let outcome = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            if fields.text("act") != "order" {
                return Err(ApiError::InvalidRequest("act must be order".into()));
            }
            let merchant = merchant_by_pid(conn, merchant_number(fields.text("pid"))?)?;
            if !constant_time_eq(
                merchant.md5_key.expose().as_bytes(),
                fields.text("key").as_bytes(),
            ) {
                return Err(ApiError::Unauthorized("商户密钥错误 (wrong key)".into()));
            }
            let lookup = match (fields.get("trade_no"), fields.get("out_trade_no")) {
                (Some(trade_no), _) => Some(OrderLookup::ById(trade_no)),
                (None, Some(out_trade_no)) => Some(OrderLookup::ByMerchantOrderId(out_trade_no)),
                (None, None) => None,
            };
            let order = match lookup {
                Some(lookup) => order_rules::read_merchant_order(conn, &merchant.id, lookup)?,
                None => None,
            }
            .ok_or_else(|| ApiError::not_found("order"))?;
            Ok((order, merchant.pid))
        })
        .await;
    Ok(HttpResponse::Ok().json(match outcome {
        Ok((order, pid)) => EpayOrder {
            code: 1,
            msg: "succ".into(),
            order: Some(serde_json::json!({
                "trade_no": order.id,
                "out_trade_no": order.merchant_order_id,
                "type": epay_type(order.channel),
                "pid": pid,
                "addtime": epay_time(order.created_at),
                "endtime": order.paid_at.map(epay_time),
                "name": order.subject.clone().unwrap_or_default(),
                "money": Amount::from_stored(order.amount).to_string(),
                "real_money": Amount::from_stored(order.payable_amount).to_string(),
                "status": u8::from(order.status == OrderStatus::Paid),
            })),
        },
        Err(error) => EpayOrder {
            code: -1,
            msg: message(&error),
            order: None,
        },
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::epay_order_request;
    use crate::compat::fuzz::fields;
    use crate::money::Amount;

    proptest! {
        #[test]
        fn reading_an_order_from_any_fields_never_panics(fields in fields()) {
            let _ = epay_order_request(&fields, Amount::storage_limit());
        }
    }
}
