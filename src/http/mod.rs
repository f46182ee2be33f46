//! What the native API (`api/`) and the old protocols (`compat/`) share: the state every
//! handler reads, reading and checking request bodies and fields, the rate limit, and receiving a
//! notification. Neither of them reaches into the other.

pub mod html;
pub mod limits;
pub mod middleware;
pub mod receive;

use std::sync::Arc;

use actix_web::error::{PathError, QueryPayloadError};
use actix_web::web;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::config::Settings;
use crate::core::orders::OrderRules;
use crate::db::Db;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::watch::OrderWatch;

/// Request bodies over this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    pub rules: OrderRules,
    pub watch: OrderWatch,
    pub metrics: Arc<Metrics>,
    /// Per-IP limit of the routes [`crate::routes`] declares public, if any.
    pub limiter: Option<limits::RateLimiter>,
    /// Becomes `true` when the instance begins to shut down: long-polls answer at once.
    pub shutdown: watch::Receiver<bool>,
}

/// Reads a JSON body of at most 64 KiB (any or no content type). Handlers call this after
/// their credentials checked out, so a caller without them learns nothing about the body rules.
pub async fn parse_json<T: serde::de::DeserializeOwned>(
    payload: web::Payload,
) -> Result<T, ApiError> {
    let body = read_body(payload).await?;
    let parsed: T = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?;
    // U+0000 can only arrive escaped; look closer only when the escape is there.
    if body.windows(6).any(|w| w == b"\\u0000")
        && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| contains_nul(&v))
    {
        return Err(ApiError::InvalidRequest(
            "JSON strings must not contain NUL (\\u0000) characters".into(),
        ));
    }
    Ok(parsed)
}

/// Whether any string or key in a JSON value holds U+0000, which Postgres text cannot store.
pub fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        _ => false,
    }
}

/// Reads a request's query string, where a handler must check credentials first (extractors run
/// together, and whichever fails first would answer).
pub fn parse_query<T: serde::de::DeserializeOwned>(
    req: &actix_web::HttpRequest,
) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|error| ApiError::InvalidRequest(format!("invalid query string: {error}")))
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _| {
        ApiError::InvalidRequest(format!("invalid query string: {error}")).into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error: PathError, _| {
        ApiError::InvalidRequest(format!("invalid path: {error}")).into()
    })
}

/// How long a request's body may take to arrive.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a whole body of at most [`MAX_BODY_BYTES`] within [`BODY_TIMEOUT`], for handlers that
/// need the exact bytes (to verify a signature over them, or to store them as received).
pub async fn read_body(
    payload: impl futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>
    + Unpin,
) -> Result<web::Bytes, ApiError> {
    read_body_up_to(payload, MAX_BODY_BYTES).await
}

/// [`read_body`] with another limit (the console's uploads).
pub async fn read_body_up_to(
    payload: impl futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>
    + Unpin,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, read_whole(payload, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

async fn read_whole(
    mut payload: impl futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>
    + Unpin,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge(limit),
            other => ApiError::InvalidRequest(format!("cannot read the body: {other}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Checks a free-text field: trimmed length within bounds, no control characters.
pub fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if value.trim().is_empty() || chars > max_chars || value.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must be 1 to {max_chars} characters without control characters"
        )));
    }
    Ok(())
}

/// Checks a URL field: absolute `http` or `https`, at most 2048 characters, no control
/// characters (the URL parser would drop tabs and line breaks silently, and the URL goes into
/// headers such as `Location` later).
pub fn check_url(field: &str, value: &str) -> Result<(), ApiError> {
    let refused = || ApiError::InvalidRequest(format!("{field} must be an absolute http(s) URL"));
    if value.len() > 2048 {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must be at most 2048 characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must not contain control characters (such as line breaks)"
        )));
    }
    let url = url::Url::parse(value).map_err(|_| refused())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refused());
    }
    Ok(())
}
