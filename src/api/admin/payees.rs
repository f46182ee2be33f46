//! `/admin/payees`: the owner's collection codes and the device that listens for each.

use actix_web::{HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::OperatorAuth;
use crate::core::payees::{PayeeRequest, create_payee as create, update_payee as update};
use crate::db::payees::{self as payee_rows, FixedCode, Payee as PayeeRow, PayeeChanges};
use crate::domain::Channel;
use crate::error::ApiError;
use crate::http::{AppState, check_text, parse_json};
use crate::money::{Amount, AmountInput};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedAmountCodeInput {
    #[schema(value_type = AmountInput)]
    pub amount: AmountInput,
    /// A collection code that already carries this amount.
    #[schema(example = "wxp://f2f1fixed1002")]
    pub qr_code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayeeRequest {
    pub channel: Channel,
    #[schema(example = "Shop WeChat")]
    pub name: String,
    /// The text of the payee's collection QR code (the payer types the amount).
    #[schema(example = "wxp://f2f0abcdef")]
    pub qr_code: String,
    /// The device that listens for this payee's payments (one payee per device and channel).
    pub device_id: String,
    /// Codes that already carry an amount; preferred when an order's payable amount has one.
    #[serde(default)]
    pub fixed_amount_codes: Vec<FixedAmountCodeInput>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FixedAmountCode {
    pub amount: Amount,
    pub qr_code: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Payee {
    #[schema(example = "pye_7a8b9c0d1e2f30415263748596a7b8c9")]
    pub id: String,
    pub channel: Channel,
    pub name: String,
    pub qr_code: String,
    pub device_id: String,
    pub fixed_amount_codes: Vec<FixedAmountCode>,
    pub enabled: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PayeeList {
    pub data: Vec<Payee>,
}

fn payee(row: &PayeeRow, codes: &[FixedCode]) -> Payee {
    Payee {
        id: row.id.clone(),
        channel: row.channel,
        name: row.name.clone(),
        qr_code: row.qr_code.clone(),
        device_id: row.device_id.clone(),
        fixed_amount_codes: codes
            .iter()
            .map(|c| FixedAmountCode {
                amount: Amount::from_stored(c.amount),
                qr_code: c.qr_code.clone(),
            })
            .collect(),
        enabled: row.enabled,
        last_used_at: row.last_used_at,
        created_at: row.created_at,
    }
}

const MAX_QR_CHARS: usize = 2048;
const MAX_FIXED_CODES: usize = 1000;

/// Validates fixed-amount codes: valid amounts, each at most once.
fn fixed_codes(input: &[FixedAmountCodeInput]) -> Result<Vec<(Amount, String)>, ApiError> {
    if input.len() > MAX_FIXED_CODES {
        return Err(ApiError::InvalidRequest(format!(
            "at most {MAX_FIXED_CODES} fixed_amount_codes"
        )));
    }
    let mut codes: Vec<(Amount, String)> = Vec::with_capacity(input.len());
    for code in input {
        let amount = code.amount.parse(Amount::storage_limit())?;
        check_text("fixed_amount_codes[].qr_code", &code.qr_code, MAX_QR_CHARS)?;
        if codes.iter().any(|(a, _)| *a == amount) {
            return Err(ApiError::InvalidRequest(format!(
                "fixed_amount_codes lists {amount} twice"
            )));
        }
        codes.push((amount, code.qr_code.clone()));
    }
    Ok(codes)
}

impl CreatePayeeRequest {
    fn validate(self) -> Result<PayeeRequest, ApiError> {
        check_text("name", &self.name, 128)?;
        check_text("qr_code", &self.qr_code, MAX_QR_CHARS)?;
        let codes = fixed_codes(&self.fixed_amount_codes)?;
        Ok(PayeeRequest {
            channel: self.channel,
            name: self.name,
            qr_code: self.qr_code,
            device_id: self.device_id,
            fixed_amount_codes: codes,
            enabled: self.enabled,
        })
    }
}

/// Create a payee: a collection code, the channel it belongs to and the device listening for it.
#[utoipa::path(
    tag = "operator",
    request_body = CreatePayeeRequest,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created", body = Payee),
        (status = 400, description = "`invalid_request`, `invalid_amount`, or an unknown `device_id`"),
        (status = 401, description = "`unauthorized`"),
        (status = 409, description = "`conflict`: the device already listens for a payee of this channel, or another payee has this collection code"),
    )
)]
#[post("/payees")]
pub async fn create_payee(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = parse_json::<CreatePayeeRequest>(payload)
        .await?
        .validate()?;
    let (row, codes) = state
        .db
        .run(move |conn| create(conn, operator.operator(), &request))
        .await?;
    Ok(HttpResponse::Created().json(payee(&row, &codes)))
}

/// List payees with their fixed-amount codes.
#[utoipa::path(
    tag = "operator",
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Every payee", body = PayeeList),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/payees")]
pub async fn list_payees(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
) -> Result<web::Json<PayeeList>, ApiError> {
    let rows = state
        .db
        .run(|conn| -> Result<_, ApiError> { Ok(payee_rows::list_with_codes(conn)?) })
        .await?;
    Ok(web::Json(PayeeList {
        data: rows.iter().map(|(row, codes)| payee(row, codes)).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePayeeRequest {
    pub name: Option<String>,
    /// A new collection code for new orders (existing orders keep theirs).
    pub qr_code: Option<String>,
    /// A disabled payee gets no new orders; its pending ones can still be paid.
    pub enabled: Option<bool>,
    /// Replaces every fixed-amount code.
    pub fixed_amount_codes: Option<Vec<FixedAmountCodeInput>>,
}

/// Rename a payee, enable or disable it, or change its QR code or fixed-amount codes.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The payee id (`pye_…`)")),
    request_body = UpdatePayeeRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The payee", body = Payee),
        (status = 400, description = "`invalid_request` or `invalid_amount`"),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`conflict`: another payee has this collection code"),
    )
)]
#[patch("/payees/{id}")]
pub async fn update_payee(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<Payee>, ApiError> {
    let request = parse_json::<UpdatePayeeRequest>(payload).await?;
    if let Some(name) = &request.name {
        check_text("name", name, 128)?;
    }
    if let Some(qr_code) = &request.qr_code {
        check_text("qr_code", qr_code, MAX_QR_CHARS)?;
    }
    let codes = request
        .fixed_amount_codes
        .as_deref()
        .map(fixed_codes)
        .transpose()?;
    let id = id.into_inner();
    let (row, codes) = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let changes = PayeeChanges {
                name: request.name.as_deref(),
                qr_code: request.qr_code.as_deref(),
                enabled: request.enabled,
            };
            Ok(update(
                conn,
                operator.operator(),
                &id,
                &changes,
                codes.as_deref(),
            )?)
        })
        .await?;
    Ok(web::Json(payee(&row, &codes)))
}
