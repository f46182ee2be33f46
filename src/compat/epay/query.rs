//! 易支付's order query: `/api.php?act=order`, authenticated by the merchant's key itself (the
//! protocol signs nothing here).

use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::{failure_message, merchant_number};
use crate::compat::{Fields, read_request};
use crate::config::Protocol;
use crate::core::compat::{epay_time, epay_type};
use crate::core::merchants::merchant_by_pid;
use crate::core::orders::{self as order_rules, Order, OrderLookup};
use crate::core::secrets::constant_time_eq;
use crate::domain::MerchantId;
use crate::domain::OrderStatus;
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// `/api.php`'s fields, as sent.
pub struct EpayQuery {
    /// `order`, the only act solopay serves.
    act: String,
    /// The merchant's number.
    pid: String,
    /// The merchant's md5 key.
    key: String,
    /// solopay's order id; looked up first when present.
    trade_no: Option<String>,
    /// The merchant's order number.
    out_trade_no: Option<String>,
}

impl From<Fields> for EpayQuery {
    fn from(fields: Fields) -> EpayQuery {
        EpayQuery {
            act: fields.text("act").to_string(),
            pid: fields.text("pid").to_string(),
            key: fields.text("key").to_string(),
            trade_no: fields.get("trade_no").map(str::to_string),
            out_trade_no: fields.get("out_trade_no").map(str::to_string),
        }
    }
}

impl EpayQuery {
    /// The order asked for, as the native lookup names it.
    fn lookup(&self) -> Option<OrderLookup<'_>> {
        match (&self.trade_no, &self.out_trade_no) {
            (Some(trade_no), _) => Some(OrderLookup::ById(trade_no)),
            (None, Some(out_trade_no)) => Some(OrderLookup::ByMerchantOrderId(out_trade_no)),
            (None, None) => None,
        }
    }
}

/// `/api.php?act=order`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpayOrder {
    pub code: i8,
    pub msg: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub order: Option<EpayOrderFields>,
}

/// An order as 易支付 shows it (fields in the order the answer has always had them).
#[derive(Debug, Serialize)]
pub struct EpayOrderFields {
    /// Created, China Standard Time.
    addtime: String,
    /// Paid, China Standard Time (`null` while unpaid).
    endtime: Option<String>,
    /// The order's amount.
    money: String,
    name: String,
    out_trade_no: String,
    pid: i64,
    /// What the payer must send.
    real_money: String,
    /// 1 paid, 0 otherwise.
    status: u8,
    trade_no: String,
    /// `wxpay` or `alipay`.
    #[serde(rename = "type")]
    pay_type: &'static str,
}

impl EpayOrderFields {
    fn new(order: Order, pid: i64) -> EpayOrderFields {
        EpayOrderFields {
            addtime: epay_time(order.created_at),
            endtime: order.paid_at.map(epay_time),
            money: Amount::from_stored(order.amount).to_string(),
            name: order.subject.unwrap_or_default(),
            out_trade_no: order.merchant_order_id,
            pid,
            real_money: Amount::from_stored(order.payable_amount).to_string(),
            status: u8::from(order.status == OrderStatus::Paid),
            trade_no: order.id,
            pay_type: epay_type(order.channel),
        }
    }
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
    let query: EpayQuery = read_request(&state.settings, Protocol::Epay, &req, payload).await?;
    let order_fields = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            if query.act != "order" {
                return Err(ApiError::InvalidRequest("act must be order".into()));
            }
            let merchant = merchant_by_pid(conn, merchant_number(&query.pid)?)?;
            if !constant_time_eq(merchant.md5_key.expose().as_bytes(), query.key.as_bytes()) {
                return Err(ApiError::Unauthorized("商户密钥错误 (wrong key)".into()));
            }
            let order = match query.lookup() {
                Some(lookup) => {
                    order_rules::read_merchant_order(conn, MerchantId(&merchant.id), lookup)?
                }
                None => None,
            }
            .ok_or_else(|| ApiError::not_found("order"))?;
            Ok(EpayOrderFields::new(order, merchant.pid))
        })
        .await;
    Ok(HttpResponse::Ok().json(match order_fields {
        Ok(fields) => EpayOrder {
            code: 1,
            msg: "succ".into(),
            order: Some(fields),
        },
        Err(error) => EpayOrder {
            code: -1,
            msg: failure_message(&error),
            order: None,
        },
    }))
}
