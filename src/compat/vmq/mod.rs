//! V免签: the listener app's `/appHeart` and `/appPush`, and the merchant API (`/createOrder`,
//! `/getOrder`, `/checkOrder`, `/closeOrder`, `/getState`), at the service root, GET or POST,
//! answering `{code, msg, data}` (code 1 success, -1 failure). Signs are lowercase hex MD5 of the
//! fields concatenated as sent, then the key: a device's secret for the app, the md5 key of the
//! merchant `SOLOPAY_VMQ_MERCHANT` names for the merchant API.
//!
//! This module holds what both sides share (the answer, its words for failures, the sign);
//! [`listener`] serves the app, [`merchant`] the merchant API.

pub mod listener;
pub mod merchant;

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::compat::Fields;
use crate::core::signing::verify_md5_sign;
use crate::error::ApiError;
use crate::money::Amount;

/// Every V免签 answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VmqAnswer {
    /// 1 success, -1 failure.
    pub code: i8,
    pub msg: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Box<RawValue>>,
}

pub(super) fn vmq_response(code: i8, msg: &str, data: Option<Box<RawValue>>) -> HttpResponse {
    HttpResponse::Ok().json(VmqAnswer {
        code,
        msg: msg.to_string(),
        data,
    })
}

/// A failure in V免签's words where it has words for it.
pub(super) fn failure(error: &ApiError) -> HttpResponse {
    let msg = match error {
        ApiError::Unauthorized(_) => "签名错误".to_string(),
        ApiError::NoPayeeAvailable => "监控端状态异常，请检查".to_string(),
        ApiError::AmountsExhausted => "订单超出负荷，请稍后重试".to_string(),
        ApiError::IdempotencyConflict(_) => "商户订单号已存在".to_string(),
        ApiError::NotFound(_) => "云端订单编号不存在".to_string(),
        other => other.to_string(),
    };
    vmq_response(-1, &msg, None)
}

pub(super) fn json(value: &impl Serialize) -> Option<Box<RawValue>> {
    serde_json::to_string(value)
        .ok()
        .and_then(|text| RawValue::from_string(text).ok())
}

/// An amount as a JSON number written exactly (`10.02`).
#[allow(clippy::unreachable)] // an Amount prints as digits, a point and two digits: valid JSON
pub(super) fn number(amount: Amount) -> Box<RawValue> {
    RawValue::from_string(amount.to_string())
        .unwrap_or_else(|_| unreachable!("an amount prints as a JSON number"))
}

pub(super) fn check_sign(message: &str, key: &str, fields: &Fields) -> Result<(), ApiError> {
    if verify_md5_sign(message, key, fields.text("sign")) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("bad sign".into()))
    }
}
