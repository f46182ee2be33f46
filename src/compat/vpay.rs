//! dreamncn VPay's merchant API, as card-system's "VPay" gateway speaks it: `POST /CreateOrder`
//! and `POST /GetOrder`, answering `{code: 0, data}` (`code` -1 and `msg` on failure). The
//! merchant is named by `appid` (its `pid`) and signs with its md5 key as VPay's communication
//! key: every field but `sign`, sorted by name, `k=v&…&key=<key>`, SHA-256, upper-case hex.
//! Paths are case-sensitive: V免签's `/createOrder` and `/getOrder` are other endpoints.
//!
//! VPay has no per-order callback URL (its apps have one): the callback goes to the merchant's
//! `notify_url`, with `{payId}` and `{orderId}` filled in, and is accepted when the answer is
//! JSON with `state` 0 (card-system answers `{"state":0,"msg":"okok"}`).

use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::compat::epay::merchant_number;
use crate::compat::{Fields, check_joined_value, check_param, public_base, read_request};
use crate::config::Protocol;
use crate::core::compat::vpay::vpay_state;
use crate::core::compat::{channel_of_vmq_type, php_number, vmq_type};
use crate::core::merchants::merchant_by_pid;
use crate::core::orders::{
    self as order_rules, Creator, Order, OrderLookup, OrderRequest, callback_answered,
};
use crate::core::signing::{sign_matches, vpay_sign};
use crate::domain::{MerchantId, MerchantOrderId, OrderProtocol};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// VPay's success and failure codes.
const OK: i8 = 0;
const FAILED: i8 = -1;

/// `/CreateOrder`'s fields, as sent.
pub struct VpayCreateOrder {
    /// The merchant's number.
    appid: String,
    /// The merchant's order number.
    pay_id: String,
    /// 1 WeChat, 2 Alipay.
    pay_type: String,
    /// As PHP prints a float (`10`, `10.5`).
    price: String,
    param: String,
    /// `1`: answer with a page that sends the payer to solopay's payment page.
    to_payment_page: bool,
    /// Every field as sent, for the sign.
    fields: Vec<(String, String)>,
    sign: String,
}

impl From<Fields> for VpayCreateOrder {
    fn from(fields: Fields) -> VpayCreateOrder {
        VpayCreateOrder {
            appid: fields.text("appid").to_string(),
            pay_id: fields.text("payId").to_string(),
            pay_type: fields.text("type").to_string(),
            price: fields.text("price").to_string(),
            param: fields.text("param").to_string(),
            to_payment_page: fields.text("isHtml").trim() == "1",
            fields: fields
                .pairs()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            sign: fields.text("sign").to_string(),
        }
    }
}

impl VpayCreateOrder {
    /// Whether the sign verifies: over every field as sent, or over the fields dreamncn's
    /// server signs (`appid, isHtml, param, payId, price, type[, explain]`, absent ones as it
    /// reads them: `isHtml` 0, `param` empty).
    fn sign_holds(&self, key: &str) -> bool {
        let as_sent = self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let field = |name: &str| {
            self.fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut server: Vec<(&str, &str)> = vec![
            ("appid", field("appid").unwrap_or_default()),
            ("isHtml", field("isHtml").unwrap_or("0")),
            ("param", field("param").unwrap_or_default()),
            ("payId", field("payId").unwrap_or_default()),
            ("price", field("price").unwrap_or_default()),
            ("type", field("type").unwrap_or_default()),
        ];
        if let Some(explain) = field("explain") {
            server.push(("explain", explain));
        }
        sign_matches(&vpay_sign(as_sent, key), &self.sign)
            | sign_matches(&vpay_sign(server, key), &self.sign)
    }

    fn order_request(&self, max_amount: Amount) -> Result<OrderRequest, ApiError> {
        let merchant_order_id = MerchantOrderId::parse(&self.pay_id, OrderProtocol::Vpay)?;
        let channel = channel_of_vmq_type(&self.pay_type)
            .ok_or_else(|| ApiError::InvalidRequest("支付方式错误=>1|微信 2|支付宝".into()))?;
        let amount = Amount::parse(self.price.trim(), max_amount)?;
        check_param(&self.param)?;
        check_joined_value("param", &self.param)?;
        Ok(OrderRequest {
            merchant_order_id,
            amount,
            channel,
            subject: None,
            notify_url: None,
            return_url: None,
            expires_in: None,
            metadata: None,
            protocol: OrderProtocol::Vpay,
            compat: Some(json!({ "param": self.param })),
        })
    }
}

/// Every VPay answer: `{code, msg?, data?}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VpayAnswer {
    /// 0 success, -1 failure.
    pub code: i8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

fn answer(outcome: Result<(Option<&str>, Value), ApiError>) -> HttpResponse {
    HttpResponse::Ok().json(match outcome {
        Ok((msg, data)) => VpayAnswer {
            code: OK,
            msg: msg.map(str::to_string),
            data: Some(data),
        },
        Err(error) => VpayAnswer {
            code: FAILED,
            msg: Some(failure_message(&error)),
            data: None,
        },
    })
}

/// A failure in VPay's words where it has words for it.
fn failure_message(error: &ApiError) -> String {
    match error {
        ApiError::Unauthorized(_) => "签名校验失败".into(),
        ApiError::NoPayeeAvailable => "系统错误，暂时不能支付！(no listener online)".into(),
        ApiError::AmountsExhausted => "该时间段订单量过大，请换个时间尝试重试".into(),
        ApiError::IdempotencyConflict(_) => "商户订单号已存在，且参数不同".into(),
        ApiError::NotFound(_) => "云端订单编号不存在".into(),
        other => other.to_string(),
    }
}

/// An amount as VPay's JSON has it: a number, PHP-printed.
fn number(amount: Amount) -> Value {
    serde_json::from_str(&php_number(amount)).unwrap_or(Value::Null)
}

/// Create an order: `appid` (the merchant's `pid`), `payId`, `type` (1 WeChat, 2 Alipay),
/// `price`, `param`, `isHtml`, `sign` (upper-case SHA-256 of the sorted `k=v&…&key=<md5 key>`).
#[utoipa::path(
    tag = "compat: VPay",
    params(
        ("appid" = String, Query), ("payId" = String, Query), ("type" = String, Query),
        ("price" = String, Query), ("param" = Option<String>, Query),
        ("isHtml" = Option<String>, Query), ("sign" = String, Query),
    ),
    responses(
        (status = 200, description = "`{code: 0, data: {code: 0, msg, data: {payId, orderId, payType, price, reallyPrice, payUrl, state, timeOut, date, isAuto}, isHtml: false}}`; with `isHtml=1`, `data` is a page that sends the payer to the payment page; `{code: -1, msg}` on failure", body = VpayAnswer),
        (status = 404, description = "`not_found`: VPay is switched off"),
    )
)]
#[route("/CreateOrder", method = "GET", method = "POST")]
pub async fn create_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request: VpayCreateOrder =
        read_request(&state.settings, Protocol::Vpay, &req, payload).await?;
    let (rules, max_amount) = (state.rules.clone(), state.settings.max_amount);
    let to_payment_page = request.to_payment_page;
    let channel = channel_of_vmq_type(&request.pay_type);
    let created = state
        .db
        .run_allocating(channel, move |conn| -> Result<Order, ApiError> {
            let merchant = merchant_by_pid(conn, merchant_number(&request.appid)?)
                .map_err(|_| ApiError::InvalidRequest("该应用id不存在 (no such appid)".into()))?;
            if !request.sign_holds(merchant.md5_key.expose()) {
                return Err(ApiError::Unauthorized("bad sign".into()));
            }
            let order_request = request.order_request(max_amount)?;
            let creator = Creator::Merchant(&merchant.id);
            Ok(order_rules::create_order(conn, creator, &order_request, &rules)?.into_order())
        })
        .await;
    let base = public_base(&state.settings, &req);
    Ok(answer(created.map(|order| {
        if to_payment_page {
            let url = format!("{base}/pay/{}", order.id);
            let page = format!(
                "<html lang=''><head><title></title><meta http-equiv='refresh' \
                 content='0;url={url}'></head><body></body></html>"
            );
            return (None, Value::String(page));
        }
        let created = json!({
            "payId": order.merchant_order_id,
            "orderId": order.id,
            "payType": vmq_type(order.channel),
            "price": number(Amount::from_stored(order.amount)),
            "reallyPrice": Amount::from_stored(order.payable_amount).to_string(),
            "payUrl": order.qr_code,
            "state": 0,
            "timeOut": order.expires_at.timestamp(),
            "date": order.created_at.timestamp(),
            "isAuto": !order.qr_fixed_amount,
        });
        (
            None,
            json!({ "code": OK, "msg": "success", "data": created, "isHtml": false }),
        )
    })))
}

/// An order by `orderId` (solopay's id; no sign: it is unguessable), every value a string as
/// VPay reads them from MySQL. `state`: -1 expired or closed, 0 waiting, 1 paid, 2 paid and the
/// callback not answered yet, 3 paid and the callback answered.
#[utoipa::path(
    tag = "compat: VPay",
    params(("orderId" = String, Query)),
    responses(
        (status = 200, description = "`{code: 0, msg, data: {payId, orderId, payType, price, reallyPrice, state, timeOut, date, appid, payUrl, isAuto}}` (strings), or `{code: -1, msg}`", body = VpayAnswer),
        (status = 404, description = "`not_found`: VPay is switched off"),
    )
)]
#[route("/GetOrder", method = "GET", method = "POST")]
pub async fn get_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let fields: Fields = read_request(&state.settings, Protocol::Vpay, &req, payload).await?;
    let order_id = fields.text("orderId").to_string();
    let found = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let order = order_rules::read_order(conn, &order_id)?
                .filter(|order| order.protocol == OrderProtocol::Vpay)
                .ok_or_else(|| ApiError::not_found("order"))?;
            let merchant = crate::core::merchants::order_merchant(conn, &order)?;
            let answered = callback_answered(conn, &order.id)?;
            let lookup = OrderLookup::ById(&order.id);
            // Read again as the merchant's, as every merchant lookup does.
            let order = order_rules::read_merchant_order(conn, MerchantId(&merchant.id), lookup)?
                .ok_or_else(|| ApiError::not_found("order"))?;
            Ok((order, merchant.pid, answered))
        })
        .await;
    Ok(answer(found.map(|(order, pid, answered)| {
        let minutes = (order.expires_at - order.created_at).num_minutes();
        let data = json!({
            "payId": order.merchant_order_id,
            "orderId": order.id,
            "payType": vmq_type(order.channel).to_string(),
            "price": php_number(Amount::from_stored(order.amount)),
            "reallyPrice": php_number(Amount::from_stored(order.payable_amount)),
            "state": vpay_state(&order, answered).to_string(),
            "timeOut": minutes.to_string(),
            "date": order.created_at.timestamp().to_string(),
            "appid": pid.to_string(),
            "payUrl": order.qr_code,
            "isAuto": u8::from(!order.qr_fixed_amount).to_string(),
        });
        (Some("获取成功！"), data)
    })))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::VpayCreateOrder;
    use crate::compat::fuzz::fields;
    use crate::money::Amount;

    proptest! {
        #[test]
        fn reading_an_order_from_any_fields_never_panics(fields in fields()) {
            let request = VpayCreateOrder::from(fields);
            let _ = request.sign_holds("key");
            let _ = request.order_request(Amount::storage_limit());
        }
    }
}
