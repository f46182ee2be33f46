//! What runs around the handlers: the body limit and the request log with its metrics (around
//! every route), and the per-address rate limit (around the routes that [`crate::routes`]
//! declares public).

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web;
use actix_web::{HttpMessage, ResponseError};

use crate::error::ApiError;
use crate::http::limits::client_address;
use crate::http::{AppState, MAX_BODY_BYTES, read_body_up_to};
use crate::metrics::RequestLabels;

/// Refuses a body over [`MAX_BODY_BYTES`] with `413 payload_too_large` before any route sees the
/// request, whether or not the route reads a body: a declared length over the limit at once, a
/// body of unknown length once it passes the limit (it is read here, within
/// [`crate::http::BODY_TIMEOUT`], and handed on whole).
pub async fn limit_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refuse = |req: ServiceRequest, error: ApiError| {
        let response = error.error_response();
        Ok(req.into_response(response).map_into_right_body())
    };
    // The console's upload forms take photos of QR codes: their own, larger limit.
    let upload = crate::console::setup::is_upload(req.method(), req.path());
    let limit = if upload {
        crate::console::setup::UPLOAD_BYTES
    } else {
        MAX_BODY_BYTES
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).map(|length| {
        length
            .to_str()
            .ok()
            .and_then(|length| length.trim().parse::<u64>().ok())
    });
    match declared {
        Some(Some(length)) if usize::try_from(length).map_or(true, |l| l > limit) => {
            return refuse(req, ApiError::PayloadTooLarge(limit));
        }
        Some(None) => {
            return refuse(
                req,
                ApiError::InvalidRequest("Content-Length is not a number".into()),
            );
        }
        Some(Some(_)) => {}
        // A body of unknown length (chunked): read it now, up to the limit. Except an upload's:
        // the form reads it as a stream once the session is checked, counting to its limit, so
        // a stranger cannot make the service hold megabytes.
        None if req.headers().contains_key(header::TRANSFER_ENCODING) && !upload => {
            match read_body_up_to(req.take_payload(), limit).await {
                Ok(body) => req.set_payload(Payload::from(body)),
                Err(error) => return refuse(req, error),
            }
        }
        None => {}
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Refuses a request over its address's rate with `429 rate_limited`.
pub async fn limit_per_address(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = req.app_data::<web::Data<AppState>>().and_then(|state| {
        let address = client_address(
            req.headers(),
            req.peer_addr(),
            state.settings.trust_forwarded_for,
        )?;
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

/// The 易支付 paths a plugin reaches with a doubled slash: plugins join a configured base URL
/// and a path with `/`, so a base ending in `/` makes `//submit.php`.
const EPAY_PATHS: [&str; 3] = ["submit.php", "mapi.php", "api.php"];

/// Sends `//submit.php`, `//mapi.php` and `//api.php` (any number of leading slashes) to the
/// handlers of `/submit.php`, `/mapi.php` and `/api.php`, query kept. No other path is
/// rewritten: `//orders` or `/admin//x` still reach nothing, so no guard or limit can be
/// walked around through a spelling of its path.
pub async fn join_epay_slashes(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path();
    let name = path.trim_start_matches('/');
    if path.starts_with("//") && EPAY_PATHS.contains(&name) {
        let joined = match req.query_string() {
            "" => format!("/{name}"),
            query => format!("/{name}?{query}"),
        };
        if let Ok(uri) = joined.parse::<actix_web::http::Uri>() {
            req.match_info_mut().get_mut().update(&uri);
            req.head_mut().uri = uri;
        }
    }
    next.call(req).await
}
