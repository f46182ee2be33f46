//! HTTP: every route wired in [`configure`], the OpenAPI document, the shared state handlers
//! read, and the extractor settings that turn bad input into problem+json answers.
//! A handler parses, authenticates (through an extractor), calls one core function and shapes
//! the answer.

pub mod admin;
pub mod devices;
pub mod extract;
pub mod limits;
pub mod ops;
pub mod orders;

use std::sync::Arc;

use actix_web::error::{PathError, QueryPayloadError};
use actix_web::web;
use futures_util::StreamExt;
use tokio::sync::watch;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::config::Settings;
use crate::core::orders::OrderRules;
use crate::db::Db;
use crate::error::{ApiError, Problem};
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
    /// Per-IP limit of the public and unauthenticated endpoints, if any.
    pub limiter: Option<limits::RateLimiter>,
    /// Becomes `true` when the instance begins to shut down: long-polls answer at once.
    pub shutdown: watch::Receiver<bool>,
}

/// Every route of the service, in one place.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(orders::create_order)
        .service(orders::find_order)
        .service(orders::get_order)
        .service(orders::close_order)
        .service(devices::heartbeat)
        .service(devices::notify)
        .service(crate::compat::forwarder::forward)
        .service(crate::compat::page::pay_page)
        .service(crate::compat::page::pay_return)
        .service(crate::compat::vmq::app_heart)
        .service(crate::compat::vmq::app_push)
        .service(crate::compat::vmq::create_order)
        .service(crate::compat::vmq::get_order)
        .service(crate::compat::vmq::check_order)
        .service(crate::compat::vmq::close_order)
        .service(crate::compat::vmq::get_state)
        .service(crate::compat::epay::submit)
        .service(crate::compat::epay::mapi)
        .service(crate::compat::epay::api)
        .service(
            utoipa_actix_web::scope("/admin")
                .service(admin::merchants::create_merchant)
                .service(admin::merchants::list_merchants)
                .service(admin::devices::create_device)
                .service(admin::devices::list_devices)
                .service(admin::devices::update_device)
                .service(admin::payees::create_payee)
                .service(admin::merchants::rotate_webhook_secret)
                .service(admin::merchants::update_merchant)
                .service(admin::merchants::rotate_api_key)
                .service(admin::devices::rotate_device_secret)
                .service(admin::payees::update_payee)
                .service(admin::payees::list_payees)
                .service(admin::webhooks::list_deliveries)
                .service(admin::webhooks::get_delivery)
                .service(admin::webhooks::redeliver)
                .service(admin::orders::list_orders)
                .service(admin::orders::get_order)
                .service(admin::orders::mark_paid)
                .service(admin::payments::list_payments)
                .service(admin::payments::assign)
                .service(admin::audit::list_audit)
                .service(admin::summary::summary),
        )
        .service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics);
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "solopay",
        description = "A payment gateway for personal WeChat Pay and Alipay collection codes: \
            merchants create orders with a unique payable amount, listener devices report the \
            payments they see, solopay matches them and tells the merchant.",
        license(name = "MIT")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(Problem)),
    tags(
        (name = "orders", description = "Merchant backends create and manage orders; shop pages poll them."),
        (name = "listener", description = "Listener apps on the payee's phone report heartbeats and payments."),
        (name = "operator", description = "The owner of the payee accounts sets up merchants, devices and payees."),
        (name = "operations", description = "Health and readiness."),
        (name = "compat: V免签", description = "The V免签 listener app and merchant API, at the service root."),
        (name = "compat: 易支付", description = "The 易支付 merchant API."),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "merchant_api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The merchant's secret API key (`sk_…`)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token (`SOLOPAY_ADMIN_TOKEN`, or the generated one).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "device_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Solopay-Signature",
                "`v1=<lowercase hex HMAC-SHA256(device secret, \"<timestamp>.<raw body>\")>`, sent \
                 with `X-Solopay-Device: <device id>` and `X-Solopay-Timestamp: <unix seconds>`; a \
                 timestamp more than 300 s from the server clock is refused.",
            ))),
        );
    }
}

/// The base OpenAPI document (info, security schemes, tags) that route collection extends.
pub fn base_openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The complete OpenAPI document, as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = actix_web::App::new()
        .into_utoipa_app()
        .openapi(base_openapi())
        .configure(configure)
        .split_for_parts()
        .1;
    document_common_responses(&mut document);
    document
}

/// Adds the answers any operation may give besides its own: `429 rate_limited` where the
/// per-IP limit applies, `408 request_timeout` where a body is read, `503 service_unavailable`
/// wherever the database is involved.
pub fn document_common_responses(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::HttpMethod;
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                Content::new(Some(Ref::from_schema_name("Problem"))),
            )
            .build()
    };
    for (path, item) in document.paths.paths.iter_mut() {
        let operations = [
            (HttpMethod::Get, &mut item.get),
            (HttpMethod::Post, &mut item.post),
            (HttpMethod::Patch, &mut item.patch),
            (HttpMethod::Put, &mut item.put),
            (HttpMethod::Delete, &mut item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let responses = &mut operation.responses.responses;
            let actix_method = match method {
                HttpMethod::Get => actix_web::http::Method::GET,
                HttpMethod::Post => actix_web::http::Method::POST,
                HttpMethod::Patch => actix_web::http::Method::PATCH,
                HttpMethod::Put => actix_web::http::Method::PUT,
                _ => actix_web::http::Method::DELETE,
            };
            if limits::is_limited(&actix_method, path) {
                responses.entry("429".into()).or_insert_with(|| {
                    problem(
                        "`rate_limited`: too many requests from this address (see `Retry-After`)",
                    )
                    .into()
                });
            }
            if matches!(
                method,
                HttpMethod::Post | HttpMethod::Patch | HttpMethod::Put
            ) {
                responses.entry("408".into()).or_insert_with(|| {
                    problem("`request_timeout`: the body did not arrive in time").into()
                });
            }
            if !matches!(path.as_str(), "/healthz" | "/openapi.json") {
                responses.entry("503".into()).or_insert_with(|| {
                    problem("`service_unavailable`: the database is unreachable or too slow; retry")
                        .into()
                });
            }
        }
    }
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
pub async fn read_body(payload: web::Payload) -> Result<web::Bytes, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, read_whole(payload))
        .await
        .map_err(|_| ApiError::RequestTimeout)?
}

async fn read_whole(mut payload: web::Payload) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge(MAX_BODY_BYTES),
            other => ApiError::InvalidRequest(format!("cannot read the body: {other}")),
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
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

/// Checks a URL field: absolute `http` or `https`, at most 2048 characters.
pub fn check_url(field: &str, value: &str) -> Result<(), ApiError> {
    let refused = || ApiError::InvalidRequest(format!("{field} must be an absolute http(s) URL"));
    if value.len() > 2048 {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must be at most 2048 characters"
        )));
    }
    let url = url::Url::parse(value).map_err(|_| refused())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refused());
    }
    Ok(())
}
