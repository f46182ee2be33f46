//! 易支付 V2's merchant endpoints: its account and a page of its orders.

use actix_web::{HttpRequest, HttpResponse, route, web};
use serde_json::{Value, json};

use super::{OK, object, order_fields, serve};
use crate::core::orders::{merchant_orders_page, merchant_totals};
use crate::domain::MerchantId;
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// The merchant: its number, state, and orders counted.
#[utoipa::path(
    tag = "compat: 易支付 V2",
    params(
        ("pid" = String, Query), ("timestamp" = String, Query),
        ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 200, description = "Signed `{code: 0, pid, status, pay_status, settle_status, money, order_num, order_num_today, order_num_lastday, order_money_today, order_money_lastday}`", body = Object),
        (status = 404, description = "`not_found`: 易支付 V2 is switched off"),
    )
)]
#[route("/api/merchant/info", method = "GET", method = "POST")]
pub async fn merchant_info(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, |conn, _, merchant| {
        let totals = merchant_totals(conn, MerchantId(&merchant.id))?;
        Ok(object(json!({
            "code": OK,
            "msg": "success",
            "pid": merchant.pid,
            "status": i64::from(merchant.enabled),
            "pay_status": 1,
            "settle_status": 0,
            "money": "0.00",
            "settle_type": 0,
            "settle_account": "",
            "settle_name": "",
            "order_num": totals.orders,
            "order_num_today": totals.orders_today,
            "order_num_lastday": totals.orders_yesterday,
            "order_money_today": Amount::from_stored(totals.paid_today).to_string(),
            "order_money_lastday": Amount::from_stored(totals.paid_yesterday).to_string(),
        })))
    })
    .await
}

/// A page of the merchant's orders: `offset`, `limit` (1 to 50, 20 by default).
#[utoipa::path(
    tag = "compat: 易支付 V2",
    params(
        ("pid" = String, Query), ("offset" = Option<String>, Query),
        ("limit" = Option<String>, Query), ("timestamp" = String, Query),
        ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 200, description = "Signed `{code: 0, msg, data: [orders]}` (`data` is not signed, as the SDKs leave arrays out)", body = Object),
        (status = 404, description = "`not_found`: 易支付 V2 is switched off"),
    )
)]
#[route("/api/merchant/orders", method = "GET", method = "POST")]
pub async fn merchant_orders(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, |conn, request, merchant| {
        let number = |text: &str, default: i64| text.trim().parse::<i64>().unwrap_or(default);
        let (offset, limit) = (number(&request.offset, 0), number(&request.limit, 20));
        let page =
            merchant_orders_page(conn, MerchantId(&merchant.id), offset, limit.clamp(1, 50))?;
        let data: Vec<Value> = page
            .iter()
            .map(|order| Value::Object(order_fields(order, merchant.pid)))
            .collect();
        Ok(object(
            json!({ "code": OK, "msg": "success", "data": data }),
        ))
    })
    .await
}
