//! `/admin/payments`: every payment a device reported, and assigning one that paid nothing to an
//! order.

use actix_web::{get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::admin::views::{AdminOrder, AdminPayment, admin_order, payment};
use crate::api::admin::{into_page, page_size};
use crate::api::extract::OperatorAuth;
use crate::core::error::RuleError;
use crate::core::reconciliation::{Assignment, assign_payment};
use crate::db::payments::{self as payment_rows, PaymentFilter};
use crate::domain::PaymentResult;
use crate::error::ApiError;
use crate::http::{AppState, check_text, parse_json};

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
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
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
        .run(move |conn| -> Result<_, ApiError> { Ok(payment_rows::list(conn, &filter)?) })
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
    /// Required (`true`) to assign a `duplicate`, or a payment another report of which already
    /// paid an order: it credits what may be one payment a second time, so only when the payer
    /// really paid twice.
    #[serde(default)]
    pub second_payment: bool,
    /// Required (`true`) when the payment does not fit the order: another amount (or none
    /// read), channel or payee, or a payment kept as `untrusted`, `contradicted` or `unparsed`
    /// (nothing proves it). The refusal lists the differences; the audit entry records them.
    #[serde(default)]
    pub accept_differences: bool,
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
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`: no such payment or order"),
        (status = 409, description = "`invalid_state`: the payment already pays an order, the order is paid, the payment is a duplicate or another report of it paid an order and `second_payment` is not set, or it does not fit the order and `accept_differences` is not set"),
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
        .run(move |conn| -> Result<_, RuleError> {
            assign_payment(
                conn,
                &rules,
                operator.operator(),
                &Assignment {
                    payment_id: &id,
                    order_id: &request.order_id,
                    note: request.note.as_deref(),
                    second_payment: request.second_payment,
                    accept_differences: request.accept_differences,
                },
            )
        })
        .await?;
    Ok(web::Json(AssignResponse {
        payment: payment(&paid_by),
        order: admin_order(&order),
    }))
}
