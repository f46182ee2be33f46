//! V免签's merchant API: `/createOrder`, `/getOrder`, `/checkOrder`, `/closeOrder` and
//! `/getState`, for the merchant `SOLOPAY_VMQ_MERCHANT` names, signed with its md5 key.

use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, route, web};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{VmqAnswer, check_sign, failure, json, number, vmq_response};
use crate::compat::{Fields, public_base, read_fields, require};
use crate::config::Protocol;
use crate::core::compat::{
    channel_of_vmq_type, parse_vmq_price, return_location, unix_or_zero, vmq_state, vmq_type,
};
use crate::core::devices::{ListenerStatus, listener_state};
use crate::core::merchants::{Merchant, vmq_merchant};
use crate::core::orders::{
    self as order_rules, Creation, Creator, Order, OrderLookup, OrderRequest,
};
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

fn vmq_order(order: &Order) -> VmqOrder {
    VmqOrder {
        pay_id: order.merchant_order_id.clone(),
        order_id: order.id.clone(),
        pay_type: vmq_type(order.channel),
        price: number(Amount::from_stored(order.amount)),
        really_price: number(Amount::from_stored(order.payable_amount)),
        pay_url: order.qr_code.clone(),
        is_auto: u8::from(!order.qr_fixed_amount),
        state: vmq_state(order),
        time_out: (order.expires_at - order.created_at).num_minutes(),
        date: order.created_at.timestamp(),
    }
}

fn vmq_order_request(fields: &Fields, max_amount: Amount) -> Result<OrderRequest, ApiError> {
    let merchant_order_id = MerchantOrderId::parse(fields.text("payId"), OrderProtocol::Vmq)?;
    let param = fields.text("param");
    if param.chars().count() > 1024 || param.contains('\0') {
        return Err(ApiError::InvalidRequest(
            "param must be at most 1024 characters".into(),
        ));
    }
    let channel = channel_of_vmq_type(fields.text("type"))
        .ok_or_else(|| ApiError::InvalidRequest("type must be 1 (WeChat) or 2 (Alipay)".into()))?;
    let amount = parse_vmq_price(fields.text("price"), max_amount)?;
    Ok(OrderRequest {
        merchant_order_id,
        amount,
        channel,
        subject: None,
        notify_url: fields.url("notifyUrl")?,
        return_url: fields.url("returnUrl")?,
        expires_in: None,
        metadata: None,
        protocol: OrderProtocol::Vmq,
        compat: Some(serde_json::json!({ "param": param })),
    })
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
    require(&state.settings, Protocol::Vmq)?;
    let fields = read_fields(&req, payload).await?;
    let html = fields.text("isHtml") == "1";
    let (merchant_id, rules, max) = (
        state.settings.vmq_merchant.clone(),
        state.rules.clone(),
        state.settings.max_amount,
    );
    let outcome = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let merchant = vmq_merchant(conn, merchant_id.as_deref())?;
            let message = format!(
                "{}{}{}{}",
                fields.text("payId"),
                fields.text("param"),
                fields.text("type"),
                fields.text("price")
            );
            check_sign(&message, merchant.md5_key.expose(), &fields)?;
            let request = vmq_order_request(&fields, max)?;
            match order_rules::create_order(
                conn,
                Creator::Merchant(&merchant.id),
                &request,
                &rules,
            )? {
                Creation::Created(order) => Ok(order),
                Creation::Repeated(_) => Err(ApiError::IdempotencyConflict(String::new())),
            }
        })
        .await;
    Ok(match outcome {
        Ok(order) if html => HttpResponse::Found()
            .insert_header((
                LOCATION,
                format!("{}/pay/{}", public_base(&state.settings, &req), order.id),
            ))
            .finish(),
        Ok(order) => vmq_response(1, "成功", json(&vmq_order(&order))),
        Err(error) => failure(&error),
    })
}

/// One of the V免签 merchant's orders by `orderId`.
async fn merchant_order(state: &AppState, order_id: String) -> Result<(Order, Merchant), ApiError> {
    let merchant_id = state.settings.vmq_merchant.clone();
    state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let merchant = vmq_merchant(conn, merchant_id.as_deref())?;
            let order =
                order_rules::read_merchant_order(conn, &merchant.id, OrderLookup::ById(&order_id))?
                    .ok_or_else(|| ApiError::not_found("order"))?;
            Ok((order, merchant))
        })
        .await
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
    require(&state.settings, Protocol::Vmq)?;
    let fields = read_fields(&req, payload).await?;
    Ok(
        match merchant_order(&state, fields.text("orderId").to_string()).await {
            Ok((order, _)) => vmq_response(1, "成功", json(&vmq_order(&order))),
            Err(error) => failure(&error),
        },
    )
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
    require(&state.settings, Protocol::Vmq)?;
    let fields = read_fields(&req, payload).await?;
    Ok(
        match merchant_order(&state, fields.text("orderId").to_string()).await {
            Ok((order, merchant)) => match order.status {
                OrderStatus::Paid => {
                    let location = return_location(&order, &merchant).unwrap_or_default();
                    vmq_response(1, "成功", json(&location))
                }
                OrderStatus::Pending => vmq_response(-1, "订单未支付", None),
                OrderStatus::Expired | OrderStatus::Closed => vmq_response(-1, "订单已过期", None),
            },
            Err(error) => failure(&error),
        },
    )
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
    require(&state.settings, Protocol::Vmq)?;
    let fields = read_fields(&req, payload).await?;
    let (merchant_id, grace) = (
        state.settings.vmq_merchant.clone(),
        state.rules.late_payment_grace,
    );
    let outcome = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let merchant = vmq_merchant(conn, merchant_id.as_deref())?;
            let order_id = fields.text("orderId");
            check_sign(order_id, merchant.md5_key.expose(), &fields)?;
            order_rules::close_order(conn, &merchant.id, order_id, grace)
        })
        .await;
    Ok(match outcome {
        Ok(_) => vmq_response(1, "成功", None),
        Err(error) => failure(&error),
    })
}

#[derive(Debug, Serialize)]
struct ListenerState {
    /// The last heartbeat of any listening device, seconds since the epoch (0: never).
    lastheart: i64,
    /// The last payment received, seconds since the epoch (0: never).
    lastpay: i64,
    /// 1 a listener is online, 0 none is, -1 none was ever seen.
    state: i8,
}

/// Whether a listener is online: `t` and `sign = md5(t + key)`.
#[utoipa::path(
    tag = "compat: V免签",
    params(("t" = String, Query), ("sign" = String, Query, description = "md5(t + key)")),
    responses(
        (status = 200, description = "`{code: 1, data: {lastheart, lastpay, state}}`, or `{code: -1, msg}`", body = VmqAnswer),
        (status = 404, description = "`not_found`: V免签 is switched off"),
    )
)]
#[route("/getState", method = "GET", method = "POST")]
pub async fn get_state(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&state.settings, Protocol::Vmq)?;
    let fields = read_fields(&req, payload).await?;
    let (merchant_id, offline_after) = (
        state.settings.vmq_merchant.clone(),
        state.settings.device_offline_after,
    );
    let outcome = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let merchant = vmq_merchant(conn, merchant_id.as_deref())?;
            check_sign(fields.text("t"), merchant.md5_key.expose(), &fields)?;
            let listeners = listener_state(conn, offline_after)?;
            Ok(ListenerState {
                lastheart: unix_or_zero(listeners.last_heartbeat_at),
                lastpay: unix_or_zero(listeners.last_payment_at),
                state: match listeners.status {
                    ListenerStatus::Online => 1,
                    ListenerStatus::Offline => 0,
                    ListenerStatus::NeverSeen => -1,
                },
            })
        })
        .await;
    Ok(match outcome {
        Ok(listener) => vmq_response(1, "成功", json(&listener)),
        Err(error) => failure(&error),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::vmq_order_request;
    use crate::compat::fuzz::fields;
    use crate::money::Amount;

    proptest! {
        #[test]
        fn reading_an_order_from_any_fields_never_panics(fields in fields()) {
            let _ = vmq_order_request(&fields, Amount::storage_limit());
        }
    }
}
