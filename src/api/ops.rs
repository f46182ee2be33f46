//! Operations: liveness and readiness.

use actix_web::{HttpResponse, get, web};
use diesel::RunQueryDsl;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::AppState;
use crate::db::migrations_applied;
use crate::error::{ApiError, Problem};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// The process is up.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Up", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health {
        status: "ok".into(),
    })
}

/// The database is reachable and every migration is applied.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "`service_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let ready = state
        .db
        .run(|conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            migrations_applied(conn)
        })
        .await?;
    if !ready {
        return Err(ApiError::Unavailable(
            "database migrations are pending".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(Health {
        status: "ready".into(),
    }))
}
