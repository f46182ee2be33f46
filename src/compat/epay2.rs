//! 易支付 V2 (彩虹易支付 "Pro", mpay_v2, dujiao-next's `v2`): the same orders as 易支付 V1,
//! signed with RSA. A request carries `pid`, `timestamp` (within 300 s of the server clock),
//! `sign_type=RSA` and `sign`: SHA256withRSA with the merchant's private key over the sorted
//! `k=v&…` of its non-empty fields but `sign` and `sign_type`, base64; solopay verifies it with
//! the merchant's public key (set by the operator). Every JSON answer is signed the same way
//! with the platform's key (`GET /admin/epay-v2/platform-key` shows its public half), with a
//! `timestamp`; so are the notifications.
//!
//! `/api/pay/submit` (a page, the cashier page without `type`), `/api/pay/create`,
//! `/api/pay/query`, `/api/pay/close`, `/api/pay/refund` (refused), `/api/merchant/info`,
//! `/api/merchant/orders`. `code` 0 is success, 1 failure.

use actix_web::{HttpRequest, HttpResponse, route, web};
use diesel::PgConnection;
use serde_json::{Map, Value, json};

use crate::compat::epay::failure_message;
use crate::compat::epay::merchant_number;
use crate::compat::epay::submit::{EpayOrderFields, EpayOutcome, create_for, to_page};
use crate::compat::{Fields, public_base, read_request};
use crate::config::Protocol;
use crate::core::checkouts::{OrderOrCheckout, merchant_order_or_checkout};
use crate::core::compat::epay2::TIMESTAMP_WINDOW_SECS;
use crate::core::compat::{channel_of_epay_type, compat_field, epay_time, epay_type};
use crate::core::merchants::{EpayV2Signature, Merchant, epay_v2_merchant};
use crate::core::orders::{
    self as order_rules, Order, OrderLookup, OrderRules, merchant_orders_page, merchant_totals,
};
use crate::core::platform_keys::epay_v2_key;
use crate::core::rsa_signing::PlatformKey;
use crate::core::signing::{SignSpelling, sorted_fields_text};
use crate::domain::{MerchantId, OrderId, OrderProtocol, OrderStatus};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// V2's success and failure codes.
const OK: i64 = 0;
const FAILED: i64 = 1;

/// A V2 request's fields, as sent.
pub struct Epay2Request {
    pid: String,
    timestamp: String,
    sign_type: String,
    sign: String,
    /// Every field as sent, for the signature.
    fields: Vec<(String, String)>,
    order: EpayOrderFields,
    /// `web` or `jump` (the others need a merchant contract).
    method: String,
    trade_no: String,
    out_trade_no: String,
    offset: String,
    limit: String,
}

impl From<Fields> for Epay2Request {
    fn from(fields: Fields) -> Epay2Request {
        Epay2Request {
            pid: fields.text("pid").to_string(),
            timestamp: fields.text("timestamp").to_string(),
            sign_type: fields.text("sign_type").to_string(),
            sign: fields.text("sign").to_string(),
            order: EpayOrderFields::read(&fields),
            method: fields.text("method").to_string(),
            trade_no: fields.text("trade_no").to_string(),
            out_trade_no: fields.text("out_trade_no").to_string(),
            offset: fields.text("offset").to_string(),
            limit: fields.text("limit").to_string(),
            fields: fields
                .pairs()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl Epay2Request {
    /// The merchant whose key signed the request, and the database clock (unix seconds).
    fn authenticate(&self, conn: &mut PgConnection) -> Result<(Merchant, i64), ApiError> {
        let pairs = || self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let signature = EpayV2Signature {
            contents: vec![
                sorted_fields_text(pairs(), SignSpelling::SkipBlank),
                sorted_fields_text(pairs(), SignSpelling::SkipEmpty),
            ],
            sign: &self.sign,
            sign_type: &self.sign_type,
            timestamp: &self.timestamp,
        };
        let window = std::time::Duration::from_secs(TIMESTAMP_WINDOW_SECS.unsigned_abs());
        let (merchant, now) =
            epay_v2_merchant(conn, merchant_number(&self.pid)?, &signature, window)?;
        Ok((merchant, now.timestamp()))
    }

    fn lookup(&self) -> Option<OrderLookup<'_>> {
        match (self.trade_no.trim(), self.out_trade_no.trim()) {
            ("", "") => None,
            ("", number) => Some(OrderLookup::ByMerchantOrderId(number)),
            (id, _) => Some(OrderLookup::ById(id)),
        }
    }
}

/// An answer signed with the platform's key: `timestamp`, then `sign` over the sorted scalar
/// fields (numbers as digits, nested values left out, as the SDKs read them), `sign_type`.
fn signed(key: &PlatformKey, now: i64, mut fields: Map<String, Value>) -> Value {
    fields.insert("timestamp".into(), Value::String(now.to_string()));
    let scalars: Vec<(String, String)> = fields
        .iter()
        .filter_map(|(name, value)| match value {
            Value::String(text) => Some((name.clone(), text.clone())),
            Value::Number(number) => Some((name.clone(), number.to_string())),
            Value::Bool(true) => Some((name.clone(), "1".into())),
            _ => None,
        })
        .collect();
    let content = sorted_fields_text(
        scalars.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignSpelling::SkipBlank,
    );
    match key.sign(&content) {
        Ok(sign) => {
            fields.insert("sign".into(), Value::String(sign));
            fields.insert("sign_type".into(), Value::String("RSA".into()));
        }
        Err(error) => tracing::error!(%error, "cannot sign a 易支付 V2 answer"),
    }
    Value::Object(fields)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// An order as V2 answers it (`status` 1 paid, 0 not; `pid` a number).
fn order_fields(order: &Order, pid: i64) -> Map<String, Value> {
    object(json!({
        "trade_no": order.id,
        "out_trade_no": order.merchant_order_id,
        "api_trade_no": "",
        "type": epay_type(order.channel),
        "status": i64::from(order.status == OrderStatus::Paid),
        "pid": pid,
        "addtime": epay_time(order.created_at),
        "endtime": order.paid_at.map(epay_time).unwrap_or_default(),
        "name": order.subject.clone().unwrap_or_default(),
        "money": Amount::from_stored(order.amount).to_string(),
        "real_money": Amount::from_stored(order.payable_amount).to_string(),
        "refundmoney": "0.00",
        "param": compat_field(order, "param"),
        "buyer": "",
        "clientip": "",
    }))
}

/// Serves one V2 JSON endpoint: `404` when V2 is off; the platform key and the merchant's
/// signature checked; `act` answers; everything signed.
async fn serve(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    act: impl FnOnce(
        &mut PgConnection,
        &Epay2Request,
        &Merchant,
    ) -> Result<Map<String, Value>, ApiError>
    + Send
    + 'static,
) -> Result<HttpResponse, ApiError> {
    let request: Epay2Request =
        read_request(&state.settings, Protocol::Epay2, req, payload).await?;
    let channel = channel_of_epay_type(&request.order_type());
    let answer = state
        .db
        .run_allocating(channel, move |conn| -> Result<Value, ApiError> {
            let key = epay_v2_key(conn)?;
            let (body, now) = match request.authenticate(conn) {
                Ok((merchant, now)) => {
                    let body = act(conn, &request, &merchant).unwrap_or_else(|error| {
                        object(json!({ "code": FAILED, "msg": failure_message(&error) }))
                    });
                    (body, now)
                }
                Err(error) => (
                    object(json!({ "code": FAILED, "msg": failure_message(&error) })),
                    crate::db::clock(conn)?.timestamp(),
                ),
            };
            Ok(signed(&key, now, body))
        })
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}

impl Epay2Request {
    fn order_type(&self) -> String {
        self.fields
            .iter()
            .find(|(k, _)| k == "type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// Creates the order (or checkout) of a signed V2 request.
fn create(
    conn: &mut PgConnection,
    request: &Epay2Request,
    merchant: &Merchant,
    rules: &OrderRules,
    max_amount: Amount,
) -> Result<EpayOutcome, ApiError> {
    let order_request = request.order.request(max_amount, OrderProtocol::Epay2)?;
    create_for(conn, merchant, &order_request, rules)
}

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
