//! 易支付's `/api.php`, authenticated by the merchant's key itself (the protocol signs nothing
//! here): `act=order` (one order), `orders` (a page of them), `query` (the merchant), `settle`
//! (settlements: none, solopay holds no money) and `refund` (refused: a personal collection code
//! cannot refund through an API). Values come back as strings where 易支付 sites send them
//! from MySQL (`"status": "1"`, `"pid": "1001"`): plugins compare them strictly.

use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::{failure_message, merchant_number};
use crate::compat::{Fields, read_request};
use crate::config::Protocol;
use crate::core::checkouts::{Checkout, OrderOrCheckout, merchant_order_or_checkout};
use crate::core::compat::{compat_field, epay_time, epay_type};
use crate::core::merchants::{Merchant, merchant_by_pid};
use crate::core::orders::{Order, OrderLookup, merchant_orders_page, merchant_totals};
use crate::core::secrets::constant_time_eq;
use crate::domain::{MerchantId, OrderStatus};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// `/api.php`'s fields, as sent.
pub struct EpayQuery {
    /// `order`, `orders`, `query`, `settle` or `refund`.
    act: String,
    /// The merchant's number.
    pid: String,
    /// The merchant's md5 key.
    key: String,
    /// solopay's order id; looked up first when present.
    trade_no: Option<String>,
    /// The merchant's order number.
    out_trade_no: Option<String>,
    /// `act=orders`: how many (1 to 50, 20 by default) after how many.
    limit: String,
    offset: String,
}

impl From<Fields> for EpayQuery {
    fn from(fields: Fields) -> EpayQuery {
        EpayQuery {
            act: fields.text("act").to_string(),
            pid: fields.text("pid").to_string(),
            key: fields.text("key").to_string(),
            trade_no: fields.get("trade_no").map(str::to_string),
            out_trade_no: fields.get("out_trade_no").map(str::to_string),
            limit: fields.text("limit").to_string(),
            offset: fields.text("offset").to_string(),
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

    /// `limit` and `offset` of `act=orders`.
    fn page(&self) -> Result<(i64, i64), ApiError> {
        let number = |text: &str, default: i64, name: &str| match text.trim() {
            "" => Ok(default),
            digits => digits
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::InvalidRequest(format!("{name} must be a number"))),
        };
        Ok((
            number(&self.offset, 0, "offset")?,
            number(&self.limit, 20, "limit")?.clamp(1, 50),
        ))
    }
}

/// `/api.php`'s answer: `code` 1 and the act's fields, or `code` -1 and `msg`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpayApiAnswer {
    pub code: i8,
    pub msg: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub body: EpayApiBody,
}

/// What an act answers besides `code` and `msg`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EpayApiBody {
    /// `act=order`.
    Order(EpayOrderFields),
    /// `act=orders` and `act=settle`.
    List { data: Vec<EpayOrderFields> },
    /// `act=query`.
    Merchant(EpayMerchantFields),
    /// A refusal.
    Nothing {},
}

/// An order as 易支付 sites show it, every value a string.
#[derive(Debug, Serialize)]
pub struct EpayOrderFields {
    trade_no: String,
    out_trade_no: String,
    api_trade_no: String,
    /// `wxpay` or `alipay` (empty while the payer has not chosen).
    #[serde(rename = "type")]
    pay_type: String,
    pid: String,
    /// Created, China Standard Time.
    addtime: String,
    /// Paid, China Standard Time (`null` while unpaid).
    endtime: Option<String>,
    name: String,
    /// The order's amount.
    money: String,
    /// What the payer must send (empty while the payer has not chosen a channel).
    real_money: String,
    param: String,
    buyer: String,
    /// `"1"` paid, `"0"` otherwise.
    status: String,
}

impl EpayOrderFields {
    pub(crate) fn of_order(order: Order, pid: i64) -> EpayOrderFields {
        EpayOrderFields {
            param: compat_field(&order, "param").to_string(),
            addtime: epay_time(order.created_at),
            endtime: order.paid_at.map(epay_time),
            money: Amount::from_stored(order.amount).to_string(),
            real_money: Amount::from_stored(order.payable_amount).to_string(),
            name: order.subject.unwrap_or_default(),
            out_trade_no: order.merchant_order_id,
            api_trade_no: String::new(),
            pid: pid.to_string(),
            buyer: String::new(),
            status: u8::from(order.status == OrderStatus::Paid).to_string(),
            pay_type: epay_type(order.channel).to_string(),
            trade_no: order.id,
        }
    }

    /// A checkout whose payer has not chosen a channel: an unpaid order without a type.
    fn of_checkout(checkout: Checkout, pid: i64) -> EpayOrderFields {
        EpayOrderFields {
            param: checkout
                .compat
                .as_ref()
                .and_then(|c| c.get("param"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string(),
            addtime: epay_time(checkout.created_at),
            endtime: None,
            money: Amount::from_stored(checkout.amount).to_string(),
            real_money: String::new(),
            name: checkout.subject.unwrap_or_default(),
            out_trade_no: checkout.merchant_order_id,
            api_trade_no: String::new(),
            pid: pid.to_string(),
            buyer: String::new(),
            status: "0".into(),
            pay_type: String::new(),
            trade_no: checkout.id,
        }
    }
}

/// The merchant as `act=query` shows it.
#[derive(Debug, Serialize)]
pub struct EpayMerchantFields {
    pid: String,
    /// `"1"` enabled.
    active: String,
    /// The balance held for the merchant: always `"0.00"` (payers pay the merchant directly).
    money: String,
    account: String,
    username: String,
    orders: String,
    order_today: String,
    order_lastday: String,
    order_money_today: String,
    order_money_lastday: String,
}

/// Answers one act for the merchant the key opens.
fn answer_act(conn: &mut diesel::PgConnection, query: &EpayQuery) -> Result<EpayApiBody, ApiError> {
    let merchant = merchant_by_pid(conn, merchant_number(&query.pid)?)?;
    if !constant_time_eq(merchant.md5_key.expose().as_bytes(), query.key.as_bytes()) {
        return Err(ApiError::Unauthorized("商户密钥错误 (wrong key)".into()));
    }
    let merchant_id = MerchantId(&merchant.id);
    match query.act.as_str() {
        "order" => one_order(conn, &merchant, query).map(EpayApiBody::Order),
        "orders" => {
            let (offset, limit) = query.page()?;
            let page = merchant_orders_page(conn, merchant_id, offset, limit)?;
            Ok(EpayApiBody::List {
                data: page
                    .into_iter()
                    .map(|order| EpayOrderFields::of_order(order, merchant.pid))
                    .collect(),
            })
        }
        "query" => {
            let totals = merchant_totals(conn, merchant_id)?;
            Ok(EpayApiBody::Merchant(EpayMerchantFields {
                pid: merchant.pid.to_string(),
                active: u8::from(merchant.enabled).to_string(),
                money: "0.00".into(),
                account: String::new(),
                username: merchant.name.clone(),
                orders: totals.orders.to_string(),
                order_today: totals.orders_today.to_string(),
                order_lastday: totals.orders_yesterday.to_string(),
                order_money_today: Amount::from_stored(totals.paid_today).to_string(),
                order_money_lastday: Amount::from_stored(totals.paid_yesterday).to_string(),
            }))
        }
        "settle" => Ok(EpayApiBody::List { data: Vec::new() }),
        "refund" => Err(ApiError::InvalidRequest(
            "不支持退款：个人收款码无法通过接口退款，请联系收款人线下退款 \
             (refunds are not possible through a personal collection code)"
                .into(),
        )),
        other => Err(ApiError::InvalidRequest(format!(
            "不支持的 act {other:?} (act: order, orders, query, settle)"
        ))),
    }
}

/// `act=order`: by `trade_no` or `out_trade_no`; a checkout whose payer has not chosen yet
/// reads as an unpaid order without a type.
fn one_order(
    conn: &mut diesel::PgConnection,
    merchant: &Merchant,
    query: &EpayQuery,
) -> Result<EpayOrderFields, ApiError> {
    let lookup = query.lookup().ok_or_else(|| ApiError::not_found("order"))?;
    match merchant_order_or_checkout(conn, MerchantId(&merchant.id), lookup)? {
        Some(OrderOrCheckout::Order(order)) => Ok(EpayOrderFields::of_order(order, merchant.pid)),
        Some(OrderOrCheckout::Checkout(checkout)) => {
            Ok(EpayOrderFields::of_checkout(checkout, merchant.pid))
        }
        None => Err(ApiError::not_found("order")),
    }
}

/// 易支付's merchant API: `act=order` (`out_trade_no` or `trade_no`), `orders` (`limit`,
/// `offset`), `query`, `settle`, `refund` (refused); every act takes `pid` and `key` (the
/// merchant's md5 key). Also served at `//api.php`.
#[utoipa::path(
    tag = "compat: 易支付",
    params(
        ("act" = String, Query, description = "`order`, `orders`, `query`, `settle` or `refund`"),
        ("pid" = String, Query), ("key" = String, Query),
        ("out_trade_no" = Option<String>, Query), ("trade_no" = Option<String>, Query),
        ("limit" = Option<String>, Query), ("offset" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "`{code: 1, msg: \"succ\", …}` with the act's fields as strings (`act=order`: `trade_no, out_trade_no, type, pid, addtime, endtime, name, money, real_money, param, status`; `orders`/`settle`: `data: [...]`), or `{code: -1, msg}`", body = EpayApiAnswer),
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
    let body = state.db.run(move |conn| answer_act(conn, &query)).await;
    Ok(HttpResponse::Ok().json(match body {
        Ok(body) => EpayApiAnswer {
            code: 1,
            msg: "succ".into(),
            body,
        },
        Err(error) => EpayApiAnswer {
            code: -1,
            msg: failure_message(&error),
            body: EpayApiBody::Nothing {},
        },
    }))
}
