//! What runs around the handlers: the per-address rate limit (wrapped around the routes that
//! [`crate::routes`] declares public) and the request log with its metrics (around all of them).

use std::time::Instant;

use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::error::ApiError;
use crate::http::AppState;
use crate::http::limits::forwarded_client;
use crate::metrics::RequestLabels;

/// Refuses a request over its address's rate with `429 rate_limited`.
pub async fn limit_per_address(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = req.app_data::<web::Data<AppState>>().and_then(|state| {
        let forwarded = || {
            let header = req.headers().get_all("x-forwarded-for").last()?;
            forwarded_client(Some(header.as_bytes()))
        };
        // Without a usable forwarded address, the proxy's own: never no limit at all.
        let address = state
            .settings
            .trust_forwarded_for
            .then(forwarded)
            .flatten()
            .or_else(|| req.peer_addr().map(|a| a.ip()))?;
        state.limiter.as_ref()?.check(address, Instant::now()).err()
    });
    match refused {
        Some(wait) => {
            let response = ApiError::RateLimited(wait).error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

/// Logs every request with its status and time, and counts it in the metrics by route.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(req).await?;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(
        %method,
        %path,
        status,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if let Some(state) = state {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        state.metrics.record_request(
            RequestLabels {
                method: method.to_string(),
                route,
                status,
            },
            elapsed,
        );
    }
    Ok(response)
}
