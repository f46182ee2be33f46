//! Operations: liveness, readiness and metrics.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::startup::is_ready;
use crate::db::{orders as order_rows, webhooks as delivery_rows};
use crate::domain::OrderStatus;
use crate::error::ApiError;
use crate::http::AppState;
use crate::metrics::{Metrics, Snapshot};

/// How long `/readyz` may take.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(900);

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
        (status = 503, description = "`service_unavailable`"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Within a second, whatever the pool's timeout: a health checker's own timeout is short.
    let ready = tokio::time::timeout(
        READY_WITHIN,
        state
            .db
            .run_within(READY_WITHIN, |conn| -> Result<_, ApiError> {
                Ok(is_ready(conn)?)
            }),
    )
    .await
    .map_err(|_| ApiError::Unavailable("the database did not answer within a second".into()))??;
    if !ready {
        return Err(ApiError::Unavailable(
            "database migrations are pending".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(Health {
        status: "ready".into(),
    }))
}

/// How long a count of every order by status serves the scrapes after it.
const ORDER_COUNTS_EVERY: Duration = Duration::from_secs(300);

/// Orders by status, every status (0 where there is none): pending orders counted at every
/// scrape (a few, through their index), the others as of a count of the whole table made at
/// most every [`ORDER_COUNTS_EVERY`] (it reads every order: about a second at 10 million, which a
/// scrape every 15 s would spend on each). An order that leaves `pending` shows under its new
/// status from the next whole count.
fn orders_by_status(
    conn: &mut diesel::PgConnection,
    registry: &Metrics,
) -> diesel::QueryResult<Vec<(String, i64)>> {
    let pending = order_rows::count_pending(conn)?;
    let counts = match registry.order_counts(ORDER_COUNTS_EVERY) {
        Some(counts) => counts,
        None => {
            let counts = order_rows::count_by_status(conn)?;
            registry.keep_order_counts(&counts);
            counts
        }
    };
    Ok(OrderStatus::ALL
        .iter()
        .map(|status| {
            let n = if *status == OrderStatus::Pending {
                pending
            } else {
                counts
                    .iter()
                    .find(|(counted, _)| counted == status.as_str())
                    .map_or(0, |(_, n)| *n)
            };
            (status.as_str().to_owned(), n)
        })
        .collect())
}

/// Prometheus metrics of this instance: requests, notifications by result, webhook attempts by
/// outcome and latency; orders by status, webhook queue depth and pool usage as of now.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 503, description = "`service_unavailable`"),
    )
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pool = state.db.pool().state();
    let max = i64::from(state.db.pool().max_size());
    let registry = state.metrics.clone();
    let (orders_by_status, webhook_queue_depth, summary_kept_behind_seconds) = state
        .db
        .run(move |conn| -> Result<_, ApiError> {
            Ok((
                orders_by_status(conn, &registry)?,
                delivery_rows::pending_count(conn)?,
                crate::db::summary::kept_behind_secs(conn)?,
            ))
        })
        .await?;
    state.metrics.set_snapshot(&Snapshot {
        orders_by_status,
        webhook_queue_depth,
        pool_idle: i64::from(pool.idle_connections),
        pool_in_use: i64::from(pool.connections - pool.idle_connections),
        pool_max: max,
        listener_connected: state.watch.is_listening(),
        long_poll_orders: i64::try_from(state.watch.watched_orders()).unwrap_or(i64::MAX),
        summary_kept_behind_seconds,
    });
    let text = state.metrics.render().map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
