//! V免签: the listener app's `/appHeart` and `/appPush`, and the merchant API (`/createOrder`,
//! `/getOrder`, `/checkOrder`, `/closeOrder`, `/getState`), at the service root, GET or POST,
//! answering `{code, msg, data}` (code 1 success, -1 failure). Signs are lowercase hex MD5 of the
//! fields concatenated as sent, then the key: a device's secret for the app, the md5 key of the
//! merchant `SOLOPAY_VMQ_MERCHANT` names for the merchant API.
//!
//! This module holds what every endpoint shares: `serve`, the envelope that reads a typed
//! request and answers in V免签's words, and the merchant's sign. [`listener`] serves the app;
//! [`orders`] and [`state`] serve the merchant.

pub mod listener;
pub mod orders;
pub mod state;

use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel::PgConnection;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::compat::{Fields, read_request};
use crate::config::Protocol;
use crate::core::merchants::{Merchant, vmq_merchant};
use crate::core::signing::verify_md5_sign;
use crate::error::ApiError;
use crate::http::AppState;

/// Every V免签 answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VmqAnswer {
    /// 1 success, -1 failure.
    pub code: i8,
    pub msg: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Box<RawValue>>,
}

/// How an endpoint's work came out, before it is put in V免签's answer.
enum VmqOutcome {
    /// `{code: 1, msg: "成功", data}`.
    Success(Option<Box<RawValue>>),
    /// `{code: -1, msg}`: an outcome V免签 reports as a failure (`订单未支付`).
    Refusal(&'static str),
    /// To a page (`createOrder` with `isHtml=1`).
    Redirect(String),
}

impl VmqOutcome {
    /// Success with `data` as the answer's `data`.
    fn success(data: &impl Serialize) -> VmqOutcome {
        VmqOutcome::Success(
            serde_json::to_string(data)
                .ok()
                .and_then(|text| RawValue::from_string(text).ok()),
        )
    }
}

/// Every V免签 endpoint: `404` when V免签 is not served, the request read from its fields as
/// `R`, handled, and answered as `{code, msg, data}`, a failure in V免签's words. A body that
/// cannot be read is answered as a problem, as before any protocol is spoken.
async fn serve<R: From<Fields>>(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    handle: impl AsyncFnOnce(R) -> Result<VmqOutcome, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let request = read_request(&state.settings, Protocol::Vmq, req, payload).await?;
    Ok(match handle(request).await {
        Ok(VmqOutcome::Success(data)) => vmq_answer(1, "成功", data),
        Ok(VmqOutcome::Refusal(msg)) => vmq_answer(-1, msg, None),
        Ok(VmqOutcome::Redirect(location)) => HttpResponse::Found()
            .insert_header((LOCATION, location))
            .finish(),
        Err(error) => vmq_answer(-1, &failure_message(&error), None),
    })
}

fn vmq_answer(code: i8, msg: &str, data: Option<Box<RawValue>>) -> HttpResponse {
    HttpResponse::Ok().json(VmqAnswer {
        code,
        msg: msg.to_string(),
        data,
    })
}

/// A failure in V免签's words where it has words for it.
fn failure_message(error: &ApiError) -> String {
    match error {
        ApiError::Unauthorized(_) => "签名错误".to_string(),
        ApiError::NoPayeeAvailable => "监控端状态异常，请检查".to_string(),
        ApiError::AmountsExhausted => "订单超出负荷，请稍后重试".to_string(),
        ApiError::IdempotencyConflict(_) => "商户订单号已存在".to_string(),
        ApiError::NotFound(_) => "云端订单编号不存在".to_string(),
        other => other.to_string(),
    }
}

/// The V免签 merchant, once `sign = md5(signed_text + its key)` checks out, `signed_text` being
/// the signed fields as sent.
fn signing_merchant(
    conn: &mut PgConnection,
    merchant_id: Option<&str>,
    signed_text: &str,
    sign: &str,
) -> Result<Merchant, ApiError> {
    let merchant = vmq_merchant(conn, merchant_id)?;
    if verify_md5_sign(signed_text, merchant.md5_key.expose(), sign) {
        Ok(merchant)
    } else {
        Err(ApiError::Unauthorized("bad sign".into()))
    }
}
