//! `/admin/summary`: per day and channel, what was ordered, paid, expired and left unmatched.

use actix_web::{get, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::extract::OperatorAuth;
use crate::core::reconciliation::{DayTotals, daily_summary};
use crate::error::ApiError;
use crate::http::AppState;
use crate::money::Amount;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DaySummary {
    pub date: NaiveDate,
    /// `null` for payments from apps of no channel.
    pub channel: Option<String>,
    pub orders_created: i64,
    pub orders_paid: i64,
    /// Orders whose expiry fell on this day (an order paid late counts too).
    pub orders_expired: i64,
    /// The payable amounts of the orders paid this day.
    #[schema(value_type = String, example = "120.04")]
    pub amount_paid: String,
    /// Payments that paid nothing, by result.
    pub payments_unmatched: i64,
    pub payments_unparsed: i64,
    pub payments_ambiguous: i64,
    pub payments_untrusted: i64,
    pub payments_contradicted: i64,
    pub payments_duplicate: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    pub timezone: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Days with activity, by date then channel.
    pub days: Vec<DaySummary>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// The first day (`YYYY-MM-DD`).
    pub from: NaiveDate,
    /// The last day, included (at most 366 days after `from`).
    pub to: NaiveDate,
    /// The time zone days are counted in (an IANA name); default `Asia/Shanghai`.
    pub tz: Option<String>,
}

/// Daily totals per channel: orders created, paid and expired, the amount paid, and the
/// payments that paid nothing.
#[utoipa::path(
    tag = "operator",
    params(SummaryQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The days of the range", body = Summary),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/summary")]
pub async fn summary(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    query: web::Query<SummaryQuery>,
) -> Result<web::Json<Summary>, ApiError> {
    let query = query.into_inner();
    let days = (query.to - query.from).num_days();
    if !(0..=366).contains(&days) {
        return Err(ApiError::InvalidRequest(
            "to must be from 0 to 366 days after from".into(),
        ));
    }
    let timezone = query.tz.unwrap_or_else(|| "Asia/Shanghai".to_string());
    let (from, to, zone) = (query.from, query.to, timezone.clone());
    let totals = state
        .db
        .run(move |conn| daily_summary(conn, from, to, &zone))
        .await?;
    Ok(web::Json(Summary {
        timezone,
        from,
        to,
        days: totals.into_iter().map(day).collect(),
    }))
}

fn day(totals: DayTotals) -> DaySummary {
    DaySummary {
        date: totals.date,
        channel: totals.channel,
        orders_created: totals.orders_created,
        orders_paid: totals.orders_paid,
        orders_expired: totals.orders_expired,
        amount_paid: Amount::from_stored(totals.amount_paid).to_string(),
        payments_unmatched: totals.payments_unmatched,
        payments_unparsed: totals.payments_unparsed,
        payments_ambiguous: totals.payments_ambiguous,
        payments_untrusted: totals.payments_untrusted,
        payments_contradicted: totals.payments_contradicted,
        payments_duplicate: totals.payments_duplicate,
    }
}
