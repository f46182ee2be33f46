//! 易支付 V2's payments: page and API creation, query, close, and refunds (refused).

use actix_web::{HttpRequest, HttpResponse, route, web};
use serde_json::json;

use super::{Epay2Request, OK, create, object, order_fields, serve};
use crate::compat::epay::submit::{EpayOutcome, to_page};
use crate::compat::{public_base, read_request};
use crate::config::Protocol;
use crate::core::checkouts::{OrderOrCheckout, merchant_order_or_checkout};
use crate::core::compat::{channel_of_epay_type, epay_time};
use crate::core::orders as order_rules;
use crate::domain::{MerchantId, OrderId};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// Page payment: the V1 order fields, signed for V2; to the payment page (or the cashier page
/// without `type`).
#[utoipa::path(
    tag = "compat: 易支付 V2",
    params(
        ("pid" = String, Query), ("type" = Option<String>, Query), ("out_trade_no" = String, Query),
        ("notify_url" = String, Query), ("return_url" = Option<String>, Query),
        ("name" = String, Query), ("money" = String, Query), ("param" = Option<String>, Query),
        ("timestamp" = String, Query), ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 302, description = "To the payment page, or the cashier page"),
        (status = 400, description = "A page saying why the order was refused", content_type = "text/html"),
        (status = 404, description = "`not_found`: 易支付 V2 is switched off"),
    )
)]
#[route("/api/pay/submit", method = "GET", method = "POST")]
pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request: Epay2Request =
        read_request(&state.settings, Protocol::Epay2, &req, payload).await?;
    let (rules, max_amount) = (state.rules.clone(), state.settings.max_amount);
    let base = public_base(&state.settings, &req);
    let channel = channel_of_epay_type(&request.order_type());
    let outcome = state
        .db
        .run_allocating(channel, move |conn| -> Result<EpayOutcome, ApiError> {
            let (merchant, _) = request.authenticate(conn)?;
            create(conn, &request, &merchant, &rules, max_amount)
        })
        .await;
    Ok(to_page(outcome, &base))
}

/// API payment: `{code: 0, trade_no, pay_type: "jump", pay_info: <payment page>, real_money}`.
/// `method` `web` or `jump` (absent: `web`); the others (`jsapi`, `app`, `scan`, `applet`) need
/// a merchant contract and are refused.
#[utoipa::path(
    tag = "compat: 易支付 V2",
    params(
        ("pid" = String, Query), ("type" = String, Query), ("method" = Option<String>, Query),
        ("out_trade_no" = String, Query), ("notify_url" = String, Query),
        ("return_url" = Option<String>, Query), ("name" = String, Query),
        ("money" = String, Query), ("param" = Option<String>, Query),
        ("clientip" = Option<String>, Query), ("device" = Option<String>, Query),
        ("timestamp" = String, Query), ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 200, description = "Signed `{code: 0, msg, trade_no, pay_type, pay_info, real_money, timestamp, sign, sign_type}`, or `{code: 1, msg, …}`", body = Object),
        (status = 404, description = "`not_found`: 易支付 V2 is switched off"),
    )
)]
#[route("/api/pay/create", method = "GET", method = "POST")]
pub async fn create_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (rules, max_amount) = (state.rules.clone(), state.settings.max_amount);
    let base = public_base(&state.settings, &req);
    serve(&state, &req, payload, move |conn, request, merchant| {
        match request.method.trim() {
            "" | "web" | "jump" => {}
            other => {
                return Err(ApiError::InvalidRequest(format!(
                    "不支持的接口类型 {other:?}：本站只支持 web 和 jump (a personal collection \
                     code cannot serve {other})"
                )));
            }
        }
        let outcome = create(conn, request, merchant, &rules, max_amount)?;
        let (trade_no, url) = (outcome.trade_no().to_string(), outcome.page_url(&base));
        let real_money = match &outcome {
            EpayOutcome::Order(order) => Amount::from_stored(order.payable_amount).to_string(),
            EpayOutcome::Checkout(_) => String::new(),
        };
        Ok(object(json!({
            "code": OK,
            "msg": "success",
            "trade_no": trade_no,
            "pay_type": "jump",
            "pay_info": url,
            "real_money": real_money,
        })))
    })
    .await
}

/// One order, by `trade_no` or `out_trade_no`.
#[utoipa::path(
    tag = "compat: 易支付 V2",
    params(
        ("pid" = String, Query), ("trade_no" = Option<String>, Query),
        ("out_trade_no" = Option<String>, Query), ("timestamp" = String, Query),
        ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 200, description = "Signed `{code: 0, trade_no, out_trade_no, type, status, pid, addtime, endtime, name, money, …}`, or `{code: 1, msg}`", body = Object),
        (status = 404, description = "`not_found`: 易支付 V2 is switched off"),
    )
)]
#[route("/api/pay/query", method = "GET", method = "POST")]
pub async fn query(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, |conn, request, merchant| {
        let merchant_id = MerchantId(&merchant.id);
        let lookup = request
            .lookup()
            .ok_or_else(|| ApiError::not_found("order"))?;
        let mut fields = match merchant_order_or_checkout(conn, merchant_id, lookup)? {
            Some(OrderOrCheckout::Order(order)) => order_fields(&order, merchant.pid),
            Some(OrderOrCheckout::Checkout(checkout)) => object(json!({
                "trade_no": checkout.id,
                "out_trade_no": checkout.merchant_order_id,
                "type": "",
                "status": 0,
                "pid": merchant.pid,
                "addtime": epay_time(checkout.created_at),
                "money": Amount::from_stored(checkout.amount).to_string(),
            })),
            None => return Err(ApiError::not_found("order")),
        };
        fields.insert("code".into(), json!(OK));
        fields.insert("msg".into(), json!("success"));
        Ok(fields)
    })
    .await
}

/// Close an unpaid order (a closed one stays closed); a paid or expired one cannot be closed.
#[utoipa::path(
    tag = "compat: 易支付 V2",
    params(
        ("pid" = String, Query), ("trade_no" = Option<String>, Query),
        ("out_trade_no" = Option<String>, Query), ("timestamp" = String, Query),
        ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 200, description = "Signed `{code: 0, msg}`, or `{code: 1, msg}`", body = Object),
        (status = 404, description = "`not_found`: 易支付 V2 is switched off"),
    )
)]
#[route("/api/pay/close", method = "GET", method = "POST")]
pub async fn close(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let grace = state.rules.late_payment_grace;
    serve(&state, &req, payload, move |conn, request, merchant| {
        let merchant_id = MerchantId(&merchant.id);
        let lookup = request
            .lookup()
            .ok_or_else(|| ApiError::not_found("order"))?;
        let order = order_rules::read_merchant_order(conn, merchant_id, lookup)?
            .ok_or_else(|| ApiError::not_found("order"))?;
        order_rules::close_order(conn, merchant_id, OrderId(&order.id), grace)?;
        Ok(object(json!({ "code": OK, "msg": "success" })))
    })
    .await
}

/// Refunds are refused: a personal collection code cannot refund through an API.
#[utoipa::path(
    tag = "compat: 易支付 V2",
    responses(
        (status = 200, description = "Signed `{code: 1, msg}`", body = Object),
        (status = 404, description = "`not_found`: 易支付 V2 is switched off"),
    )
)]
#[route("/api/pay/refund", method = "GET", method = "POST")]
pub async fn refund(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, |_, _, _| {
        Err(ApiError::InvalidRequest(
            "不支持退款：个人收款码无法通过接口退款 (refunds are not possible through a \
             personal collection code)"
                .into(),
        ))
    })
    .await
}
