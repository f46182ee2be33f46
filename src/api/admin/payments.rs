//! `/admin/payments`: every payment a device reported, and assigning one that paid nothing to an
//! order.

use actix_web::{get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::admin::orders::{AdminOrder, admin_order};
use crate::api::admin::{into_page, page_size};
use crate::api::extract::OperatorAuth;
use crate::api::{AppState, check_text, parse_json};
use crate::core::reconciliation::assign_payment;
use crate::db::payments::{self as payment_rows, Payment, PaymentFilter};
use crate::domain::{Channel, PaymentResult};
use crate::error::{ApiError, Problem};
use crate::money::Amount;

/// A payment as the operator sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminPayment {
    #[schema(example = "pay_5d1f0e2c3b4a59687766554433221100")]
    pub id: String,
    pub device_id: String,
    pub notification_id: String,
    pub channel: Option<Channel>,
    /// `null` when no amount could be read.
    pub amount: Option<Amount>,
    pub package: Option<String>,
    pub title: Option<String>,
    pub text: Option<String>,
    /// When the phone saw it, as the phone says.
    pub reported_at: Option<DateTime<Utc>>,
    /// When solopay received it.
    pub received_at: DateTime<Utc>,
    pub payee_id: Option<String>,
    pub result: PaymentResult,
    /// Why it was not read, trusted or matched.
    pub reason: Option<String>,
    pub order_id: Option<String>,
    /// For a `duplicate`: the first report of the same payment (the payment that paid the
    /// order, or an earlier report kept), when there is one.
    pub duplicate_of: Option<String>,
    /// For an `ambiguous` text: every payment amount it mentions, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amounts_read: Vec<Amount>,
}

pub fn payment(row: &Payment) -> AdminPayment {
    AdminPayment {
        id: row.id.clone(),
        device_id: row.device_id.clone(),
        notification_id: row.notification_id.clone(),
        channel: row.channel,
        amount: row.amount.map(Amount::from_stored),
        package: row.package.clone(),
        title: row.title.clone(),
        text: row.text.clone(),
        reported_at: row.reported_at,
        received_at: row.created_at,
        payee_id: row.payee_id.clone(),
        result: row.result,
        reason: row.reason.clone(),
        order_id: row.order_id.clone(),
        duplicate_of: row.duplicate_of.clone(),
        amounts_read: row
            .amounts_read
            .iter()
            .flatten()
            .flatten()
            .map(|a| Amount::from_stored(*a))
            .collect(),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminPaymentList {
    pub data: Vec<AdminPayment>,
    /// More payments follow: ask again with `starting_after` set to the last id.
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PaymentQuery {
    pub result: Option<PaymentResult>,
    pub device_id: Option<String>,
    /// Received at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Received before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Page size, 1–100 (default 50).
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub starting_after: Option<String>,
}

/// List payments, newest first, filtered by result (`matched`, `unmatched`, `unparsed`,
/// `untrusted`, `ambiguous`, `contradicted`, `duplicate`), device and time.
#[utoipa::path(
    tag = "operator",
    params(PaymentQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of payments", body = AdminPaymentList),
        (status = 400, description = "`invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/payments")]
pub async fn list_payments(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    query: web::Query<PaymentQuery>,
) -> Result<web::Json<AdminPaymentList>, ApiError> {
    let query = query.into_inner();
    let limit = page_size(query.limit)?;
    let filter = PaymentFilter {
        result: query.result,
        device_id: query.device_id,
        from: query.from,
        to: query.to,
        starting_after: query.starting_after,
        limit: limit + 1,
    };
    let rows = state
        .db
        .run(move |conn| Ok(payment_rows::list(conn, &filter)?))
        .await?;
    let (rows, has_more) = into_page(rows, limit);
    Ok(web::Json(AdminPaymentList {
        data: rows.iter().map(payment).collect(),
        has_more,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// The order this payment pays (pending, expired or closed).
    #[schema(example = "ord_3f2a9c1d8e7b4a6f9c0d1e2f3a4b5c6d")]
    pub order_id: String,
    /// Why, for the audit log.
    pub note: Option<String>,
    /// Required (`true`) to assign a `duplicate` of a payment that paid an order: it credits
    /// what may be one payment a second time, so only when the payer really paid twice.
    #[serde(default)]
    pub second_payment: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssignResponse {
    pub payment: AdminPayment,
    pub order: AdminOrder,
}

/// Pay an order with a payment that paid nothing (the wrong amount, after the grace, while the
/// listener was offline…). Once: the payment then pays that order, and an order is paid only
/// once.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The payment id (`pay_…`)")),
    request_body = AssignRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The payment and the order it now pays", body = AssignResponse),
        (status = 400, description = "`invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such payment or order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`: the payment already pays an order, the order is paid, or the payment is a duplicate of one that paid an order and `second_payment` is not set", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/payments/{id}/assign")]
pub async fn assign(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<AssignResponse>, ApiError> {
    let request = parse_json::<AssignRequest>(payload).await?;
    if let Some(note) = &request.note {
        check_text("note", note, 500)?;
    }
    let id = id.into_inner();
    let rules = state.rules.clone();
    let (paid_by, order) = state
        .db
        .run(move |conn| {
            assign_payment(
                conn,
                &rules,
                &operator.name,
                &id,
                &request.order_id,
                request.note.as_deref(),
                request.second_payment,
            )
        })
        .await?;
    Ok(web::Json(AssignResponse {
        payment: payment(&paid_by),
        order: admin_order(&order),
    }))
}
