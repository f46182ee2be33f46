//! 易支付 V2 (彩虹易支付 "Pro", mpay_v2, dujiao-next's `v2`): the same orders as 易支付 V1,
//! signed with RSA. A request carries `pid`, `timestamp` (within 300 s of the server clock),
//! `sign_type=RSA` and `sign`: SHA256withRSA with the merchant's private key over the sorted
//! `k=v&…` of its non-empty fields but `sign` and `sign_type`, base64; solopay verifies it with
//! the merchant's public key (set by the operator). Every JSON answer is signed the same way
//! with the platform's key (`GET /admin/epay-v2/platform-key` shows its public half), with a
//! `timestamp`; so are the notifications.
//!
//! [`pay`] serves `/api/pay/submit` (a page, the cashier page without `type`),
//! `/api/pay/create`, `/api/pay/query`, `/api/pay/close` and `/api/pay/refund` (refused);
//! [`merchant`] `/api/merchant/info` and `/api/merchant/orders`. This module holds what they
//! share: the request, its authentication, the signed answer. `code` 0 is success, 1 failure.

pub mod merchant;
pub mod pay;

use actix_web::{HttpRequest, HttpResponse, web};
use diesel::PgConnection;
use serde_json::{Map, Value, json};

use crate::compat::epay::failure_message;
use crate::compat::epay::merchant_number;
use crate::compat::epay::submit::{EpayOrderFields, EpayOutcome, create_for};
use crate::compat::{Fields, read_request};
use crate::config::Protocol;
use crate::core::compat::epay2::TIMESTAMP_WINDOW_SECS;
use crate::core::compat::{channel_of_epay_type, compat_field, epay_time, epay_type};
use crate::core::merchants::{EpayV2Signature, Merchant, epay_v2_merchant};
use crate::core::orders::{Order, OrderLookup, OrderRules};
use crate::core::platform_keys::epay_v2_key;
use crate::core::rsa_signing::PlatformKey;
use crate::core::signing::{SignSpelling, joinable, sorted_fields_text};
use crate::domain::{OrderProtocol, OrderStatus};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// V2's success and failure codes.
pub(crate) const OK: i64 = 0;
pub(crate) const FAILED: i64 = 1;

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
    pub(crate) method: String,
    pub(crate) trade_no: String,
    pub(crate) out_trade_no: String,
    pub(crate) offset: String,
    pub(crate) limit: String,
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

    pub(crate) fn lookup(&self) -> Option<OrderLookup<'_>> {
        match (self.trade_no.trim(), self.out_trade_no.trim()) {
            ("", "") => None,
            ("", number) => Some(OrderLookup::ByMerchantOrderId(number)),
            (id, _) => Some(OrderLookup::ById(id)),
        }
    }
}

/// An answer signed with the platform's key: `timestamp`, then `sign` over the sorted scalar
/// fields (numbers as digits, nested values left out, as the SDKs read them), `sign_type`.
/// Every merchant's answers and notifies are signed with that one key, so no text in them may
/// be cut into other fields: each string is [`joinable`], but `pay_info`, the payment page's URL
/// or the payee's code, which the service or the operator sets.
fn signed(key: &PlatformKey, now: i64, mut fields: Map<String, Value>) -> Value {
    for (name, value) in &mut fields {
        if let Value::String(text) = value
            && name != "pay_info"
        {
            *text = joinable(text);
        }
    }
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

pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// An order as V2 answers it (`status` 1 paid, 0 not; `pid` a number).
pub(crate) fn order_fields(order: &Order, pid: i64) -> Map<String, Value> {
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
pub(crate) async fn serve(
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
    pub(crate) fn order_type(&self) -> String {
        self.fields
            .iter()
            .find(|(k, _)| k == "type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// Creates the order (or checkout) of a signed V2 request.
pub(crate) fn create(
    conn: &mut PgConnection,
    request: &Epay2Request,
    merchant: &Merchant,
    rules: &OrderRules,
    max_amount: Amount,
) -> Result<EpayOutcome, ApiError> {
    let order_request = request.order.request(max_amount, OrderProtocol::Epay2)?;
    create_for(conn, merchant, &order_request, rules)
}
