//! V免签's merchant orders: `/createOrder`, `/getOrder`, `/checkOrder` and `/closeOrder`, for
//! the merchant `SOLOPAY_VMQ_MERCHANT` names. Each request is read as sent (the sign covers the
//! fields exactly as sent), then converted into the native core call.

use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{VmqAnswer, VmqOutcome, serve, signing_merchant};
use crate::compat::{Fields, check_param, optional_url, public_base};
use crate::core::compat::{
    channel_of_vmq_type, parse_vmq_price, return_location, vmq_state, vmq_type,
};
use crate::core::merchants::{Merchant, vmq_merchant};
use crate::core::orders::{
    self as order_rules, Creation, Creator, Order, OrderLookup, OrderRequest,
};
use crate::domain::{MerchantId, OrderId};
use crate::domain::{MerchantOrderId, OrderProtocol, OrderStatus};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

/// An order as V免签 answers it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VmqOrder {
    pay_id: String,
    order_id: String,
    pay_type: u8,
    price: Box<RawValue>,
    /// What the payer must send.
    really_price: Box<RawValue>,
    /// The QR code's text.
    pay_url: String,
    /// 0 when `payUrl` already carries the amount, 1 when the payer types it.
    is_auto: u8,
    /// 0 unpaid, 1 paid, -1 expired or closed.
    state: i8,
    /// Minutes from creation to expiry.
    time_out: i64,
    /// Creation, seconds since the epoch.
    date: i64,
}

impl From<&Order> for VmqOrder {
    fn from(order: &Order) -> VmqOrder {
        VmqOrder {
            pay_id: order.merchant_order_id.clone(),
            order_id: order.id.clone(),
            pay_type: vmq_type(order.channel),
            price: json_amount(Amount::from_stored(order.amount)),
            really_price: json_amount(Amount::from_stored(order.payable_amount)),
            pay_url: order.qr_code.clone(),
            is_auto: u8::from(!order.qr_fixed_amount),
            state: vmq_state(order),
            time_out: (order.expires_at - order.created_at).num_minutes(),
            date: order.created_at.timestamp(),
        }
    }
}

/// An amount as a JSON number written exactly (`10.02`).
#[allow(clippy::unreachable)] // an Amount prints as digits, a point and two digits: valid JSON
fn json_amount(amount: Amount) -> Box<RawValue> {
    RawValue::from_string(amount.to_string())
        .unwrap_or_else(|_| unreachable!("an amount prints as a JSON number"))
}

/// `/createOrder`'s fields, as sent.
pub struct VmqCreateOrder {
    /// The merchant's order number.
    pay_id: String,
    /// Echoed back in the callback; empty when absent.
    param: String,
    /// 1 WeChat, 2 Alipay.
    pay_type: String,
    price: String,
    notify_url: Option<String>,
    return_url: Option<String>,
    /// `isHtml=1`: answer with a redirect to the payment page.
    to_payment_page: bool,
    /// `md5(payId + param + type + price + key)`.
    sign: String,
}

impl From<Fields> for VmqCreateOrder {
    fn from(fields: Fields) -> VmqCreateOrder {
        VmqCreateOrder {
            pay_id: fields.text("payId").to_string(),
            param: fields.text("param").to_string(),
            pay_type: fields.text("type").to_string(),
            price: fields.text("price").to_string(),
            notify_url: fields.get("notifyUrl").map(str::to_string),
            return_url: fields.get("returnUrl").map(str::to_string),
            to_payment_page: fields.text("isHtml") == "1",
            sign: fields.text("sign").to_string(),
        }
    }
}

impl VmqCreateOrder {
    fn signed_text(&self) -> String {
        format!(
            "{}{}{}{}",
            self.pay_id, self.param, self.pay_type, self.price
        )
    }

    /// The native order request, each field checked in the order V免签 clients have seen.
    fn order_request(&self, max_amount: Amount) -> Result<OrderRequest, ApiError> {
        let merchant_order_id = MerchantOrderId::parse(&self.pay_id, OrderProtocol::Vmq)?;
        check_param(&self.param)?;
        let channel = channel_of_vmq_type(&self.pay_type).ok_or_else(|| {
            ApiError::InvalidRequest("type must be 1 (WeChat) or 2 (Alipay)".into())
        })?;
        let amount = parse_vmq_price(&self.price, max_amount)?;
        Ok(OrderRequest {
            merchant_order_id,
            amount,
            channel,
            subject: None,
            notify_url: optional_url("notifyUrl", self.notify_url.as_deref())?,
            return_url: optional_url("returnUrl", self.return_url.as_deref())?,
            expires_in: None,
            metadata: None,
            protocol: OrderProtocol::Vmq,
            compat: Some(serde_json::json!({ "param": self.param })),
        })
    }
}

/// Create an order: `payId`, `type`, `price`, optional `param`, `notifyUrl`, `returnUrl`,
/// `isHtml`, and `sign = md5(payId + param + type + price + key)`. `reallyPrice` is what the payer
/// must send; with `isHtml=1` the answer redirects to solopay's payment page. A reused `payId` is
/// refused.
#[utoipa::path(
    tag = "compat: V免签",
    params(
        ("payId" = String, Query), ("type" = String, Query), ("price" = String, Query),
        ("param" = Option<String>, Query), ("notifyUrl" = Option<String>, Query),
        ("returnUrl" = Option<String>, Query), ("isHtml" = Option<String>, Query),
        ("sign" = String, Query, description = "md5(payId + param + type + price + key)"),
    ),
    responses(
        (status = 200, description = "`{code: 1, data: {payId, orderId, payType, price, reallyPrice, payUrl, isAuto, state, timeOut, date}}`, or `{code: -1, msg}`", body = VmqAnswer),
        (status = 302, description = "`isHtml=1`: to the payment page"),
        (status = 404, description = "`not_found`: V免签 is switched off"),
    )
)]
#[route("/createOrder", method = "GET", method = "POST")]
pub async fn create_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, async |request: VmqCreateOrder| {
        let to_payment_page = request.to_payment_page;
        let channel = channel_of_vmq_type(&request.pay_type);
        let (merchant_id, rules, max_amount) = (
            state.settings.vmq_merchant.clone(),
            state.rules.clone(),
            state.settings.max_amount,
        );
        let order = state
            .db
            .run_allocating(channel, move |conn| -> Result<_, ApiError> {
                let merchant = signing_merchant(
                    conn,
                    merchant_id.as_deref(),
                    &request.signed_text(),
                    &request.sign,
                )?;
                let order_request = request.order_request(max_amount)?;
                let creator = Creator::Merchant(&merchant.id);
                match order_rules::create_order(conn, creator, &order_request, &rules)? {
                    Creation::Created(order) => Ok(order),
                    Creation::Repeated(_) => Err(ApiError::IdempotencyConflict(String::new())),
                }
            })
            .await?;
        Ok(if to_payment_page {
            let base = public_base(&state.settings, &req);
            VmqOutcome::Redirect(format!("{base}/pay/{}", order.id))
        } else {
            VmqOutcome::success(&VmqOrder::from(&order))
        })
    })
    .await
}

/// `/getOrder`'s and `/checkOrder`'s fields: `orderId`, unsigned (the id is unguessable).
pub struct VmqOrderQuery {
    order_id: String,
}

impl From<Fields> for VmqOrderQuery {
    fn from(fields: Fields) -> VmqOrderQuery {
        VmqOrderQuery {
            order_id: fields.text("orderId").to_string(),
        }
    }
}

impl VmqOrderQuery {
    /// The V免签 merchant's order, with that merchant.
    async fn read(self, state: &AppState) -> Result<(Order, Merchant), ApiError> {
        let merchant_id = state.settings.vmq_merchant.clone();
        state
            .db
            .run(move |conn| -> Result<_, ApiError> {
                let merchant = vmq_merchant(conn, merchant_id.as_deref())?;
                let lookup = OrderLookup::ById(&self.order_id);
                let order =
                    order_rules::read_merchant_order(conn, MerchantId(&merchant.id), lookup)?
                        .ok_or_else(|| ApiError::not_found("order"))?;
                Ok((order, merchant))
            })
            .await
    }
}

/// An order by `orderId` (no sign: the id is unguessable).
#[utoipa::path(
    tag = "compat: V免签",
    params(("orderId" = String, Query)),
    responses(
        (status = 200, description = "`{code: 1, data: {…}}` as `/createOrder`, or `{code: -1, msg}`", body = VmqAnswer),
        (status = 404, description = "`not_found`: V免签 is switched off"),
    )
)]
#[route("/getOrder", method = "GET", method = "POST")]
pub async fn get_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, async |query: VmqOrderQuery| {
        let (order, _) = query.read(&state).await?;
        Ok(VmqOutcome::success(&VmqOrder::from(&order)))
    })
    .await
}

/// Whether an order is paid: `code 1` with the return URL carrying the callback fields, or
/// `-1` with `订单未支付` / `订单已过期`.
#[utoipa::path(
    tag = "compat: V免签",
    params(("orderId" = String, Query)),
    responses(
        (status = 200, description = "`{code: 1, data: \"<return URL>\"}`, or `{code: -1, msg}`", body = VmqAnswer),
        (status = 404, description = "`not_found`: V免签 is switched off"),
    )
)]
#[route("/checkOrder", method = "GET", method = "POST")]
pub async fn check_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, async |query: VmqOrderQuery| {
        let (order, merchant) = query.read(&state).await?;
        Ok(match order.status {
            OrderStatus::Paid => VmqOutcome::success(
                &return_location(&order, &merchant, None, 0).unwrap_or_default(),
            ),
            OrderStatus::Pending => VmqOutcome::Refusal("订单未支付"),
            OrderStatus::Expired | OrderStatus::Closed => VmqOutcome::Refusal("订单已过期"),
        })
    })
    .await
}

/// `/closeOrder`'s fields, as sent.
pub struct VmqCloseOrder {
    order_id: String,
    /// `md5(orderId + key)`.
    sign: String,
}

impl From<Fields> for VmqCloseOrder {
    fn from(fields: Fields) -> VmqCloseOrder {
        VmqCloseOrder {
            order_id: fields.text("orderId").to_string(),
            sign: fields.text("sign").to_string(),
        }
    }
}

/// Close an unpaid order: `orderId` and `sign = md5(orderId + key)`.
#[utoipa::path(
    tag = "compat: V免签",
    params(("orderId" = String, Query), ("sign" = String, Query, description = "md5(orderId + key)")),
    responses(
        (status = 200, description = "`{code: 1}`, or `{code: -1, msg}`", body = VmqAnswer),
        (status = 404, description = "`not_found`: V免签 is switched off"),
    )
)]
#[route("/closeOrder", method = "GET", method = "POST")]
pub async fn close_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    serve(&state, &req, payload, async |request: VmqCloseOrder| {
        let (merchant_id, grace) = (
            state.settings.vmq_merchant.clone(),
            state.rules.late_payment_grace,
        );
        state
            .db
            .run(move |conn| -> Result<_, ApiError> {
                let order_id = &request.order_id;
                let merchant =
                    signing_merchant(conn, merchant_id.as_deref(), order_id, &request.sign)?;
                Ok(order_rules::close_order(
                    conn,
                    MerchantId(&merchant.id),
                    OrderId(order_id),
                    grace,
                )?)
            })
            .await?;
        Ok(VmqOutcome::Success(None))
    })
    .await
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::VmqCreateOrder;
    use crate::compat::fuzz::fields;
    use crate::money::Amount;

    proptest! {
        #[test]
        fn reading_an_order_from_any_fields_never_panics(fields in fields()) {
            let _ = VmqCreateOrder::from(fields).order_request(Amount::storage_limit());
        }
    }
}
