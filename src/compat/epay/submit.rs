//! 易支付's order creation: `/submit.php` sends the payer to solopay's payment page (or, without
//! `type`, to the cashier page where the payer picks the channel), `/mapi.php` answers in JSON.
//! Both read the same signed fields and create the order through the same core call as
//! `POST /orders`; 易支付 V2 reads the same order fields ([`EpayOrderFields`]).

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, route, web};
use diesel::PgConnection;
use serde::Serialize;
use utoipa::ToSchema;

use super::{EpaySign, failure_message, merchant_number};
use crate::compat::page::refusal_page;
use crate::compat::{
    Fields, check_joined_value, check_param, optional_url, public_base, read_request,
};
use crate::config::Protocol;
use crate::core::checkouts::{
    Checkout, CheckoutCreation, CheckoutRequest, create_checkout, online_channels,
};
use crate::core::compat::{channel_of_epay_type, epay::unsupported_type};
use crate::core::error::RuleError;
use crate::core::merchants::{Merchant, merchant_by_pid};
use crate::core::orders::{self as order_rules, Creator, Order, OrderRequest, OrderRules};
use crate::core::signing::SignSpelling;
use crate::domain::{MerchantId, MerchantOrderId, OrderProtocol};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// The order fields 易支付 V1 and V2 requests share, as sent.
pub(crate) struct EpayOrderFields {
    /// `wxpay` or `alipay`; absent or empty: the payer picks on the cashier page.
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
}

/// What a request asks for: an order on its channel, or a checkout whose payer picks one.
pub(crate) enum EpayRequest {
    Order(OrderRequest),
    Checkout(CheckoutRequest),
}

/// Where the payer is sent.
pub(crate) enum EpayOutcome {
    Order(Order),
    Checkout(Checkout),
}

impl EpayOrderFields {
    pub(crate) fn read(fields: &Fields) -> EpayOrderFields {
        EpayOrderFields {
            pay_type: fields.text("type").to_string(),
            out_trade_no: fields.text("out_trade_no").to_string(),
            notify_url: fields.get("notify_url").map(str::to_string),
            return_url: fields.get("return_url").map(str::to_string),
            name: fields.text("name").to_string(),
            money: fields.text("money").to_string(),
            param: fields.text("param").to_string(),
        }
    }

    /// The fields a sign that skipped PHP-falsy values did not cover (those equal to `"0"`),
    /// taken as absent: nothing unsigned reaches the order.
    fn without_unsigned_zeros(mut self, spelling: SignSpelling) -> EpayOrderFields {
        if spelling == SignSpelling::SkipFalsy {
            for text in [
                &mut self.pay_type,
                &mut self.out_trade_no,
                &mut self.name,
                &mut self.money,
                &mut self.param,
            ] {
                if text == "0" {
                    text.clear();
                }
            }
            for url in [&mut self.notify_url, &mut self.return_url] {
                if url.as_deref() == Some("0") {
                    *url = None;
                }
            }
        }
        self
    }

    /// The native request, each field checked in the order 易支付 clients have seen.
    pub(crate) fn request(
        &self,
        max_amount: Amount,
        protocol: OrderProtocol,
    ) -> Result<EpayRequest, ApiError> {
        let merchant_order_id = MerchantOrderId::parse(&self.out_trade_no, protocol)?;
        let pay_type = self.pay_type.trim();
        let channel = match pay_type {
            "" => None,
            code => Some(
                channel_of_epay_type(code)
                    .ok_or_else(|| ApiError::InvalidRequest(unsupported_type(code)))?,
            ),
        };
        let amount = Amount::parse(self.money.trim(), max_amount)?;
        let name = self.name.trim();
        if name.chars().count() > 256 || name.chars().any(char::is_control) {
            return Err(ApiError::InvalidRequest(
                "name must be at most 256 characters".into(),
            ));
        }
        check_param(&self.param)?;
        check_joined_value("param", &self.param)?;
        // A name may hold `&` and `=` (shops name products "A&B"): signed, it is `joinable`.
        let subject = Some(name.to_string()).filter(|n| !n.is_empty());
        let notify_url = optional_url("notify_url", self.notify_url.as_deref())?;
        let return_url = optional_url("return_url", self.return_url.as_deref())?;
        // The payer's address and device are not parameters of the order: a re-post from
        // another browser is the same order.
        let compat = Some(serde_json::json!({ "param": self.param }));
        Ok(match channel {
            Some(channel) => EpayRequest::Order(OrderRequest {
                merchant_order_id,
                amount,
                channel,
                subject,
                notify_url,
                return_url,
                expires_in: None,
                metadata: None,
                protocol,
                compat,
            }),
            None => EpayRequest::Checkout(CheckoutRequest {
                merchant_order_id,
                amount,
                subject,
                notify_url,
                return_url,
                protocol,
                compat,
            }),
        })
    }
}

/// Creates the order (or checkout) an authenticated merchant's request asks for, or returns
/// the same earlier one. Reusing an `out_trade_no` with other parameters is refused.
pub(crate) fn create_for(
    conn: &mut PgConnection,
    merchant: &Merchant,
    request: &EpayRequest,
    rules: &OrderRules,
) -> Result<EpayOutcome, ApiError> {
    let reused = |error: RuleError| match error {
        RuleError::IdempotencyConflict(_) => ApiError::IdempotencyConflict(
            "订单号已存在，且参数不同 (out_trade_no was used with other parameters)".into(),
        ),
        other => other.into(),
    };
    match request {
        EpayRequest::Order(order_request) => {
            let creator = Creator::Merchant(&merchant.id);
            order_rules::create_order(conn, creator, order_request, rules)
                .map(|creation| EpayOutcome::Order(creation.into_order()))
                .map_err(reused)
        }
        EpayRequest::Checkout(checkout_request) => {
            if online_channels(conn, rules)?.is_empty() {
                return Err(ApiError::NoPayeeAvailable);
            }
            let merchant_id = MerchantId(&merchant.id);
            match create_checkout(conn, merchant_id, checkout_request, rules.default_ttl) {
                Ok(CheckoutCreation::Open(checkout)) => Ok(EpayOutcome::Checkout(checkout)),
                Ok(CheckoutCreation::Chosen(order)) => Ok(EpayOutcome::Order(order)),
                Err(error) => Err(reused(error)),
            }
        }
    }
}

impl EpayOutcome {
    /// Where the payer pays: solopay's payment page, or its cashier page.
    pub(crate) fn page_url(&self, base: &str) -> String {
        match self {
            EpayOutcome::Order(order) => format!("{base}/pay/{}", order.id),
            EpayOutcome::Checkout(checkout) => format!("{base}/pay/checkout/{}", checkout.id),
        }
    }

    /// The `trade_no` the merchant is told: the order's id, or the checkout's.
    pub(crate) fn trade_no(&self) -> &str {
        match self {
            EpayOutcome::Order(order) => &order.id,
            EpayOutcome::Checkout(checkout) => &checkout.id,
        }
    }
}

/// A page request's answer: to the payment (or cashier) page, or a page saying why not.
pub(crate) fn to_page(outcome: Result<EpayOutcome, ApiError>, base: &str) -> HttpResponse {
    match outcome {
        Ok(outcome) => HttpResponse::Found()
            .insert_header((LOCATION, outcome.page_url(base)))
            .finish(),
        Err(error) => refusal_page(
            StatusCode::BAD_REQUEST,
            "无法创建订单",
            &failure_message(&error),
        ),
    }
}

/// `/submit.php`'s and `/mapi.php`'s fields, as sent.
pub struct EpaySubmit {
    /// The merchant's number.
    pid: String,
    order: EpayOrderFields,
    signed: EpaySign,
}

impl From<Fields> for EpaySubmit {
    fn from(fields: Fields) -> EpaySubmit {
        EpaySubmit {
            pid: fields.text("pid").to_string(),
            order: EpayOrderFields::read(&fields),
            signed: EpaySign::read(&fields),
        }
    }
}

/// Checks a signed request and creates what it asks for.
async fn create_epay_order(state: &AppState, request: EpaySubmit) -> Result<EpayOutcome, ApiError> {
    let (rules, max_amount) = (state.rules.clone(), state.settings.max_amount);
    // Which channel's allocation slots to take; a type no channel has is refused below.
    let channel = channel_of_epay_type(&request.order.pay_type);
    state
        .db
        .run_allocating(channel, move |conn| -> Result<_, ApiError> {
            let merchant = merchant_by_pid(conn, merchant_number(&request.pid)?)?;
            let spelling = request.signed.check(merchant.md5_key.expose())?;
            let fields = request.order.without_unsigned_zeros(spelling);
            let order_request = fields.request(max_amount, OrderProtocol::Epay)?;
            create_for(conn, &merchant, &order_request, &rules)
        })
        .await
}

/// Create an order and send the payer to solopay's payment page: `pid`, `type` (`wxpay`,
/// `alipay`; absent: the cashier page, where the payer picks among the channels with an online
/// listener), `out_trade_no`, `notify_url`, `return_url`, `name`, `money`, optional `param`,
/// `sign`, `sign_type=MD5`. Also served at `//submit.php` (a base URL ending in `/` joined
/// with `/submit.php`).
#[utoipa::path(
    tag = "compat: 易支付",
    params(
        ("pid" = String, Query), ("type" = Option<String>, Query), ("out_trade_no" = String, Query),
        ("notify_url" = String, Query), ("return_url" = Option<String>, Query),
        ("name" = String, Query), ("money" = String, Query), ("param" = Option<String>, Query),
        ("sign" = String, Query), ("sign_type" = String, Query),
    ),
    responses(
        (status = 302, description = "To the payment page, or to the cashier page"),
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
    let base = public_base(&state.settings, &req);
    Ok(to_page(create_epay_order(&state, request).await, &base))
}

/// `/mapi.php`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpayCreated {
    /// 1 success, -1 failure.
    pub code: i8,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    /// solopay's payment page (or cashier page): send the payer there (it shows what to pay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payurl: Option<String>,
    /// The QR code's text, for plugins that draw their own (not before the channel is chosen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qrcode: Option<String>,
    /// What the payer must send: `money` plus or minus a few fen. A plugin that draws its own
    /// page must show this, not `money`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_money: Option<String>,
}

impl EpayCreated {
    fn refusal(msg: String) -> EpayCreated {
        EpayCreated {
            code: -1,
            msg,
            trade_no: None,
            payurl: None,
            qrcode: None,
            real_money: None,
        }
    }
}

/// Create an order (JSON answer): the fields of `/submit.php` plus `clientip`, `device`. Without
/// `type`, `payurl` is the cashier page and there is no `qrcode` yet.
#[utoipa::path(
    tag = "compat: 易支付",
    params(
        ("pid" = String, Query), ("type" = Option<String>, Query), ("out_trade_no" = String, Query),
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
    let created = match create_epay_order(&state, request).await {
        Ok(outcome) => {
            let payurl = Some(outcome.page_url(&public_base(&state.settings, &req)));
            match outcome {
                EpayOutcome::Order(order) => EpayCreated {
                    code: 1,
                    msg: "succ".into(),
                    payurl,
                    qrcode: Some(order.qr_code.clone()),
                    real_money: Some(Amount::from_stored(order.payable_amount).to_string()),
                    trade_no: Some(order.id),
                },
                EpayOutcome::Checkout(checkout) => EpayCreated {
                    code: 1,
                    msg: "succ".into(),
                    payurl,
                    trade_no: Some(checkout.id),
                    qrcode: None,
                    real_money: None,
                },
            }
        }
        Err(error) => EpayCreated::refusal(failure_message(&error)),
    };
    Ok(HttpResponse::Ok().json(created))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::EpaySubmit;
    use crate::compat::fuzz::fields;
    use crate::core::signing::SignSpelling;
    use crate::domain::OrderProtocol;
    use crate::money::Amount;

    proptest! {
        #[test]
        fn reading_an_order_from_any_fields_never_panics(fields in fields()) {
            let order = EpaySubmit::from(fields).order.without_unsigned_zeros(SignSpelling::SkipFalsy);
            let _ = order.request(Amount::storage_limit(), OrderProtocol::Epay);
        }
    }
}
