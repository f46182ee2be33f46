//! Every route of the service in one place, native and old protocols alike, and the OpenAPI
//! document they make. Each route's rate limit follows from its declaration: operations that
//! take a merchant's or the operator's bearer token are not limited per address; every other
//! route is (see [`crate::http::limits`]).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::api::{admin, devices, ops, orders};
use crate::compat::{epay, forwarder, page, vmq};
use crate::error::Problem;
use crate::http::limits;

/// Every route of the service, in one place.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(orders::create_order)
        .service(orders::find_order)
        .service(orders::get_order)
        .service(orders::close_order)
        .service(devices::heartbeat)
        .service(devices::notify)
        .service(forwarder::forward)
        .service(page::pay_page)
        .service(page::pay_return)
        .service(vmq::listener::app_heart)
        .service(vmq::listener::app_push)
        .service(vmq::orders::create_order)
        .service(vmq::orders::get_order)
        .service(vmq::orders::check_order)
        .service(vmq::orders::close_order)
        .service(vmq::state::get_state)
        .service(epay::submit::submit)
        .service(epay::submit::mapi)
        .service(epay::query::api)
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
            let limited = !limits::takes_a_bearer_token(operation)
                && !limits::UNMETERED.contains(&path.as_str());
            let responses = &mut operation.responses.responses;
            // Every error answer is a problem document: the routes declare their error statuses
            // and codes, and the body is the same for all.
            for (status, response) in responses.iter_mut() {
                if let utoipa::openapi::RefOr::T(response) = response
                    && status.starts_with(['4', '5'])
                    && response.content.is_empty()
                {
                    *response = problem(&response.description);
                }
            }
            if limited {
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
