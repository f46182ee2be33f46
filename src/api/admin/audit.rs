//! `/admin/audit`: the append-only record of operator actions.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::admin::{into_page, page_size};
use crate::api::extract::OperatorAuth;
use crate::db::audit::{self as audit_rows, AuditEntry as AuditRow};
use crate::error::ApiError;
use crate::http::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// The name of the operator token used.
    pub operator: String,
    #[schema(example = "payment.assign")]
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub note: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

pub fn entry(row: &AuditRow) -> AuditEntry {
    AuditEntry {
        id: row.id,
        operator: row.operator.clone(),
        action: row.action.clone(),
        target_type: row.target_type.clone(),
        target_id: row.target_id.clone(),
        note: row.note.clone(),
        details: row.details.clone(),
        created_at: row.created_at,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub data: Vec<AuditEntry>,
    /// More entries follow: ask again with `starting_after` set to the last id.
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only actions on this object (an order, payment, merchant, device, payee, delivery id).
    pub target_id: Option<String>,
    /// Page size, 1–100 (default 50).
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub starting_after: Option<i64>,
}

/// List operator actions, newest first.
#[utoipa::path(
    tag = "operator",
    params(AuditQuery),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditList),
        (status = 400, description = "`invalid_request`"),
        (status = 401, description = "`unauthorized`"),
    )
)]
#[get("/audit")]
pub async fn list_audit(
    state: web::Data<AppState>,
    _operator: OperatorAuth,
    query: web::Query<AuditQuery>,
) -> Result<web::Json<AuditList>, ApiError> {
    let query = query.into_inner();
    let limit = page_size(query.limit)?;
    let rows = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            Ok(audit_rows::list(
                conn,
                query.target_id.as_deref(),
                query.starting_after,
                limit + 1,
            )?)
        })
        .await?;
    let (rows, has_more) = into_page(rows, limit);
    Ok(web::Json(AuditList {
        data: rows.iter().map(entry).collect(),
        has_more,
    }))
}
