//! `/admin/orders`: every order, with everything that happened to it, and paying one by hand.

use actix_web::{get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::admin::audit::{AuditEntry, entry};
use crate::api::admin::views::{AdminOrder, AdminPayment, admin_order, payment};
use crate::api::admin::webhooks::{WebhookDelivery, delivery};
use crate::api::admin::{into_page, page_size};
use crate::api::extract::OperatorAuth;
use crate::core::reconciliation::mark_paid as pay_by_hand;
use crate::db::orders::{self as order_rows, OrderFilter};
use crate::db::webhooks::{self as delivery_rows, DeliveryFilter};
use crate::db::{audit as audit_rows, events as event_rows, payments as payment_rows};
use crate::domain::OrderId;
use crate::domain::{Channel, EventType, OrderStatus};
use crate::error::ApiError;
use crate::http::{AppState, check_text, parse_json};
use crate::money::Amount;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminOrderList {
    pub data: Vec<AdminOrder>,
    /// More orders follow: ask again with `starting_after` set to the last id.
    pub has_more: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub created_at: DateTime<Utc>,
}

/// An order with everything that happened to it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdminOrderDetail {
    #[serde(flatten)]
    pub order: AdminOrder,
    /// The payment that paid it, if one did.
    pub payments: Vec<AdminPayment>,
    /// Payments to the same payee of its payable amount that paid nothing (late, while closed,
    /// doubtful): what to look at when a payer says they paid.
    pub unmatched_payments: Vec<AdminPayment>,
    pub events: Vec<OrderEvent>,
    pub webhook_deliveries: Vec<WebhookDelivery>,
    /// Operator actions on it.
    pub audit: Vec<AuditEntry>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OrderQuery {
    pub status: Option<OrderStatus>,
    pub merchant_id: Option<String>,
    pub channel: Option<Channel>,
    pub payee_id: Option<String>,
    pub merchant_order_id: Option<String>,
    /// The base amount, e.g. `10.00`.
    pub amount: Option<String>,
    /// What the payer had to send, e.g. `10.02`.
    pub payable_amount: Option<String>,
    /// Created at or after (RFC 3339).
    pub created_from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub created_to: Option<DateTime<Utc>>,
    pub paid_from: Option<DateTime<Utc>>,
    pub paid_to: Option<DateTime<Utc>>,
    /// Page size, 1–100 (default 50).
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub starting_after: Option<String>,
}

fn amount_filter(text: Option<&str>) -> Result<Option<rust_decimal::Decimal>, ApiError> {
    text.map(|t| Amount::parse(t, Amount::storage_limit()).map(|a| a.as_decimal()))
        .transpose()
        .map_err(ApiError::from)
}

/// List orders, newest first, filtered.
#[utoipa::path(
    tag = "operator",
    params(OrderQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of orders", body = AdminOrderList),
        (status = 400, description = "`invalid_request` or `invalid_amount`"),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/orders")]
pub async fn list_orders(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    query: web::Query<OrderQuery>,
) -> Result<web::Json<AdminOrderList>, ApiError> {
    let query = query.into_inner();
    let limit = page_size(query.limit)?;
    let filter = OrderFilter {
        status: query.status,
        merchant_id: query.merchant_id,
        channel: query.channel,
        payee_id: query.payee_id,
        merchant_order_id: query.merchant_order_id,
        amount: amount_filter(query.amount.as_deref())?,
        payable_amount: amount_filter(query.payable_amount.as_deref())?,
        created_from: query.created_from,
        created_to: query.created_to,
        paid_from: query.paid_from,
        paid_to: query.paid_to,
        starting_after: query.starting_after,
        limit: limit + 1,
    };
    let rows = state
        .db
        .run(move |conn| -> Result<_, ApiError> { Ok(order_rows::list(conn, &filter)?) })
        .await?;
    let (rows, has_more) = into_page(rows, limit);
    Ok(web::Json(AdminOrderList {
        data: rows.iter().map(admin_order).collect(),
        has_more,
    }))
}

/// An order with its payments, events, webhook deliveries and the operator actions on it.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The order id (`ord_…`)")),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The order and its history", body = AdminOrderDetail),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/orders/{id}")]
pub async fn get_order(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    id: web::Path<String>,
) -> Result<web::Json<AdminOrderDetail>, ApiError> {
    let id = id.into_inner();
    let detail = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            let order = crate::core::orders::read_order(conn, &id)?
                .ok_or_else(|| ApiError::not_found("order"))?;
            let payments = payment_rows::of_order(conn, &id)?;
            let unmatched =
                payment_rows::unmatched_like(conn, &order.payee_id, order.payable_amount)?;
            let events = event_rows::of_order(conn, &id)?;
            let deliveries = delivery_rows::list(
                conn,
                &DeliveryFilter {
                    order_id: Some(id.clone()),
                    limit: 100,
                    ..DeliveryFilter::default()
                },
            )?;
            let audit = audit_rows::list(conn, Some(&id), None, 100)?;
            Ok(AdminOrderDetail {
                order: admin_order(&order),
                payments: payments.iter().map(payment).collect(),
                unmatched_payments: unmatched.iter().map(payment).collect(),
                events: events
                    .iter()
                    .map(|e| OrderEvent {
                        id: e.id.clone(),
                        event_type: e.event_type,
                        created_at: e.created_at,
                    })
                    .collect(),
                webhook_deliveries: deliveries
                    .iter()
                    .map(|(d, kind)| delivery(d, *kind))
                    .collect(),
                audit: audit.iter().map(entry).collect(),
            })
        })
        .await?;
    Ok(web::Json(detail))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPaidRequest {
    /// Why the operator confirms the payment (1–500 characters), kept in the audit log.
    #[schema(example = "payer showed a screenshot of the transfer, 10.00 instead of 10.02")]
    pub note: String,
}

/// Pay an order by hand (a pending, expired or closed one): it emits `order.paid` like an
/// automatic payment, and the note goes to the audit log.
#[utoipa::path(
    tag = "operator",
    params(("id" = String, Path, description = "The order id (`ord_…`)")),
    request_body = MarkPaidRequest,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The paid order", body = AdminOrder),
        (status = 400, description = "`invalid_request` (the note is required)"),
        (status = 401, description = "`unauthorized`"),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`invalid_state`: already paid"),
    )
)]
#[post("/orders/{id}/mark-paid")]
pub async fn mark_paid(
    state: web::Data<AppState>,
    operator: OperatorAuth,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<web::Json<AdminOrder>, ApiError> {
    let request = parse_json::<MarkPaidRequest>(payload).await?;
    check_text("note", &request.note, 500)?;
    let id = id.into_inner();
    let rules = state.rules.clone();
    let order = state
        .db
        .run(move |conn| {
            pay_by_hand(
                conn,
                &rules,
                operator.operator(),
                OrderId(&id),
                &request.note,
            )
        })
        .await?;
    Ok(web::Json(admin_order(&order)))
}
