//! Every route of the service in one place, native and old protocols alike, with its rate limit
//! attached where it is declared, and the OpenAPI document they make. Routes that take a
//! merchant's or the operator's bearer token, and the few that touch neither the database nor a
//! body, are declared first; every other route is declared in [`public`], a scope wrapped in the
//! per-address limit that also catches every path no route serves, so a route added there, or a
//! path nobody declared, is limited (see [`crate::http::limits`]).

use actix_web::middleware::from_fn;
use actix_web::web;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::api::extract::require_operator;
use crate::api::{admin, devices, ops, orders, qr};
use crate::compat::{cashier, epay, epay2, epusdt, forwarder, page, vmq, vpay};
use crate::error::Problem;
use crate::http::middleware;

/// Every route of the service, in the order the router tries them: the documented ones, then
/// `served` (what is served beside them, such as the API documents), then the limited scope
/// that catches everything else.
fn routes(cfg: &mut ServiceConfig, served: impl FnOnce(&mut web::ServiceConfig)) {
    authenticated(cfg);
    cfg.service(ops::healthz);
    cfg.map(|cfg| {
        served(cfg);
        cfg
    });
    cfg.service(
        utoipa_actix_web::scope("")
            .wrap(from_fn(middleware::limit_per_address))
            .configure(public),
    );
}

/// The routes, as the OpenAPI document describes them.
pub fn configure(cfg: &mut ServiceConfig) {
    routes(cfg, |_| {});
}

/// The routes, with the OpenAPI document and its Swagger UI served beside them (unlimited: they
/// touch neither the database nor a body). The document is given as its JSON, serialized once
/// and shared by every worker: held as a document by each, it cost about 10 MB a worker.
pub fn configure_served(cfg: &mut ServiceConfig, document: web::Bytes) {
    routes(cfg, move |cfg| {
        cfg.service(
            utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                .config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )
        .route(
            "/openapi.json",
            web::get().to(move || {
                let document = document.clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type(actix_web::http::header::ContentType::json())
                        .body(document)
                }
            }),
        )
        .route("/docs", web::get().to(redirect_to_docs));
    });
}

/// What a merchant's API key or the operator token opens: not limited per address (who holds
/// one is no anonymous flood).
fn authenticated(cfg: &mut ServiceConfig) {
    cfg.service(orders::create_order)
        .service(orders::find_order)
        .service(orders::close_order)
        .service(
            utoipa_actix_web::scope("/admin")
                .wrap(from_fn(require_operator))
                .service(admin::merchants::create_merchant)
                .service(admin::merchants::list_merchants)
                .service(admin::devices::create_device)
                .service(admin::devices::list_devices)
                .service(admin::devices::update_device)
                .service(admin::payees::create_payee)
                .service(admin::merchants::rotate_webhook_secret)
                .service(admin::merchants::update_merchant)
                .service(admin::merchants::rotate_api_key)
                .service(admin::merchants::platform_key)
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
                .service(admin::alerts::create_alert_channel)
                .service(admin::alerts::list_alert_channels)
                .service(admin::alerts::update_alert_channel)
                .service(admin::alerts::test_alert_channel)
                .service(admin::alerts::list_alerts)
                .service(admin::summary::summary),
        );
}

/// What anyone can call: limited per address.
fn public(cfg: &mut ServiceConfig) {
    cfg.service(orders::get_order)
        .service(qr::order_qr_svg)
        .service(qr::order_qr_png)
        .service(qr::en_qrcode)
        .service(devices::heartbeat)
        .service(devices::notify)
        .service(forwarder::forward)
        .service(epusdt::check_status)
        .service(cashier::cashier)
        .service(cashier::choose)
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
        .service(epay2::pay::submit)
        .service(epay2::pay::create_order)
        .service(epay2::pay::query)
        .service(epay2::pay::close)
        .service(epay2::pay::refund)
        .service(epay2::merchant::merchant_info)
        .service(epay2::merchant::merchant_orders)
        .service(epusdt::create_transaction)
        .service(epusdt::cancel_transaction)
        .service(vpay::create_order)
        .service(vpay::get_order)
        .service(ops::readyz)
        .service(ops::metrics)
        // The operator console: HTML pages, not part of the API document.
        .map(|cfg| {
            crate::console::configure(cfg);
            cfg
        });
}

async fn redirect_to_docs() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
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
        (name = "compat: 易支付 V2", description = "The 易支付 V2 merchant API (RSA signs)."),
        (name = "compat: epusdt", description = "The epusdt / BEpusdt merchant API."),
        (name = "compat: VPay", description = "dreamncn VPay's merchant API (card-system's VPay gateway)."),
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
                 with `X-Solopay-Device: <device id>` and `X-Solopay-Timestamp: <unix seconds>` by \
                 the phone's own clock (the one `posted_at` and `received_at` come from, never \
                 corrected to the server's); a timestamp more than 300 s from the server clock is \
                 refused.",
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
    let mut document = document_of(configure);
    document_common_responses(&mut document);
    document
}

fn document_of(routes: impl FnOnce(&mut ServiceConfig)) -> utoipa::openapi::OpenApi {
    actix_web::App::new()
        .into_utoipa_app()
        .openapi(base_openapi())
        .configure(routes)
        .split_for_parts()
        .1
}

/// Adds the answers any operation may give besides its own: `429 rate_limited` where the
/// per-IP limit applies (the operations declared in [`public`]), `408 request_timeout` where a
/// body is read, `503 service_unavailable` wherever the database is involved.
fn document_common_responses(document: &mut utoipa::openapi::OpenApi) {
    let limited = document_of(public);
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
            let limited = limited
                .paths
                .paths
                .get(path)
                .is_some_and(|item| is_declared(item, &method));
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

/// Whether a path item declares an operation for `method`.
fn is_declared(
    item: &utoipa::openapi::path::PathItem,
    method: &utoipa::openapi::path::HttpMethod,
) -> bool {
    use utoipa::openapi::path::HttpMethod;
    match method {
        HttpMethod::Get => item.get.is_some(),
        HttpMethod::Post => item.post.is_some(),
        HttpMethod::Patch => item.patch.is_some(),
        HttpMethod::Put => item.put.is_some(),
        HttpMethod::Delete => item.delete.is_some(),
        HttpMethod::Head => item.head.is_some(),
        HttpMethod::Options => item.options.is_some(),
        HttpMethod::Trace => item.trace.is_some(),
    }
}
