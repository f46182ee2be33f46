//! 易支付's order creation: `/submit.php` sends the payer to solopay's payment page, `/mapi.php`
//! answers in JSON. Both read the same signed fields and create the order through the same core
//! call as `POST /orders`.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::{EpaySign, failure_message, merchant_number};
use crate::compat::page::refusal_page;
use crate::compat::{Fields, check_param, optional_url, public_base, read_request};
use crate::config::Protocol;
use crate::core::compat::channel_of_epay_type;
use crate::core::error::RuleError;
use crate::core::merchants::merchant_by_pid;
use crate::core::orders::{self as order_rules, Creation, Creator, Order, OrderRequest};
use crate::domain::{MerchantOrderId, OrderProtocol};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// `/submit.php`'s and `/mapi.php`'s fields, as sent.
pub struct EpaySubmit {
    /// The merchant's number.
    pid: String,
    /// `wxpay` or `alipay`.
    pay_type: String,
    /// The merchant's order number.
    out_trade_no: String,
    notify_url: Option<String>,
    return_url: Option<String>,
    /// What the payer buys.
    name: String,
    /// The order's amount.
    money: String,
    /// Echoed back in the notify; empty when absent.
    param: String,
    signed: EpaySign,
}

impl From<Fields> for EpaySubmit {
    fn from(fields: Fields) -> EpaySubmit {
        EpaySubmit {
            pid: fields.text("pid").to_string(),
            pay_type: fields.text("type").to_string(),
            out_trade_no: fields.text("out_trade_no").to_string(),
            notify_url: fields.get("notify_url").map(str::to_string),
            return_url: fields.get("return_url").map(str::to_string),
            name: fields.text("name").to_string(),
            money: fields.text("money").to_string(),
            param: fields.text("param").to_string(),
            signed: EpaySign::read(&fields),
        }
    }
}

impl EpaySubmit {
    /// The native order request, each field checked in the order 易支付 clients have seen.
    fn order_request(&self, max_amount: Amount) -> Result<OrderRequest, ApiError> {
        let merchant_order_id = MerchantOrderId::parse(&self.out_trade_no, OrderProtocol::Epay)?;
        let channel = channel_of_epay_type(&self.pay_type).ok_or_else(|| {
            ApiError::InvalidRequest("不支持的支付方式 (type: wxpay or alipay)".into())
        })?;
        let amount = Amount::parse(self.money.trim(), max_amount)?;
        let name = self.name.trim();
        if name.chars().count() > 256 || name.chars().any(char::is_control) {
            return Err(ApiError::InvalidRequest(
                "name must be at most 256 characters".into(),
            ));
        }
        check_param(&self.param)?;
        Ok(OrderRequest {
            merchant_order_id,
            amount,
            channel,
            subject: Some(name.to_string()).filter(|n| !n.is_empty()),
            notify_url: optional_url("notify_url", self.notify_url.as_deref())?,
            return_url: optional_url("return_url", self.return_url.as_deref())?,
            expires_in: None,
            metadata: None,
            protocol: OrderProtocol::Epay,
            // The payer's address and device are not parameters of the order: a re-post from
            // another browser is the same order.
            compat: Some(serde_json::json!({ "param": self.param })),
        })
    }
}

/// Creates the order a signed request describes, or returns the same earlier one. Re-posting an
/// unpaid `out_trade_no` with other parameters is refused.
async fn create_epay_order(state: &AppState, request: EpaySubmit) -> Result<Order, ApiError> {
    let (rules, max_amount) = (state.rules.clone(), state.settings.max_amount);
    let channel = channel_of_epay_type(&request.pay_type);
    state
        .db
        .run_allocating(channel, move |conn| -> Result<_, ApiError> {
            let merchant = merchant_by_pid(conn, merchant_number(&request.pid)?)?;
            request.signed.check(merchant.md5_key.expose())?;
            let order_request = request.order_request(max_amount)?;
            let creator = Creator::Merchant(&merchant.id);
            match order_rules::create_order(conn, creator, &order_request, &rules) {
                Ok(Creation::Created(order) | Creation::Repeated(order)) => Ok(order),
                Err(RuleError::IdempotencyConflict(_)) => Err(ApiError::IdempotencyConflict(
                    "订单号已存在，且参数不同 (out_trade_no was used with other parameters)".into(),
                )),
                Err(other) => Err(other.into()),
            }
        })
        .await
}

/// Where the payer pays an order: solopay's payment page.
fn payment_page_url(state: &AppState, req: &HttpRequest, order: &Order) -> String {
    format!("{}/pay/{}", public_base(&state.settings, req), order.id)
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
    let request = read_request(&state.settings, Protocol::Epay, &req, payload).await?;
    Ok(match create_epay_order(&state, request).await {
        Ok(order) => HttpResponse::Found()
            .insert_header((LOCATION, payment_page_url(&state, &req, &order)))
            .finish(),
        Err(error) => refusal_page(
            StatusCode::BAD_REQUEST,
            "无法创建订单",
            &failure_message(&error),
        ),
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
    let request = read_request(&state.settings, Protocol::Epay, &req, payload).await?;
    Ok(
        HttpResponse::Ok().json(match create_epay_order(&state, request).await {
            Ok(order) => EpayCreated {
                code: 1,
                msg: "succ".into(),
                payurl: Some(payment_page_url(&state, &req, &order)),
                qrcode: Some(order.qr_code.clone()),
                real_money: Some(Amount::from_stored(order.payable_amount).to_string()),
                trade_no: Some(order.id),
            },
            Err(error) => EpayCreated {
                code: -1,
                msg: failure_message(&error),
                trade_no: None,
                payurl: None,
                qrcode: None,
                real_money: None,
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::EpaySubmit;
    use crate::compat::fuzz::fields;
    use crate::money::Amount;

    proptest! {
        #[test]
        fn reading_an_order_from_any_fields_never_panics(fields in fields()) {
            let _ = EpaySubmit::from(fields).order_request(Amount::storage_limit());
        }
    }
}
