//! The OpenAPI document: the committed copy is what the code generates, and the service serves
//! it with its Swagger UI from the binary.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const REGENERATE: &str = "cargo run -- openapi --output openapi/openapi.json";

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = solopay::routes::openapi().to_pretty_json().unwrap() + "\n";
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap_or_default();
    assert!(
        generated == committed,
        "openapi/openapi.json is out of date with the code: regenerate it with `{REGENERATE}` and commit it"
    );
}

/// The closed vocabularies are documented with the names that go over the wire.
#[test]
fn documented_enums_list_the_wire_names() {
    use solopay::domain::{Channel, DeliveryStatus, EventType, OrderStatus, PaymentResult};
    let document: Value =
        serde_json::from_str(&solopay::routes::openapi().to_json().unwrap()).unwrap();
    for (name, names) in [
        ("Channel", serde_json::to_value(Channel::ALL)),
        ("OrderStatus", serde_json::to_value(OrderStatus::ALL)),
        ("PaymentResult", serde_json::to_value(PaymentResult::ALL)),
        ("EventType", serde_json::to_value(EventType::ALL)),
        ("DeliveryStatus", serde_json::to_value(DeliveryStatus::ALL)),
    ] {
        let documented = &document["components"]["schemas"][name]["enum"];
        assert_eq!(documented, &names.unwrap(), "{name}");
    }
    assert_eq!(
        document["components"]["schemas"]["EventType"]["enum"][0],
        "order.paid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_its_openapi_document_and_swagger_ui() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let served: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let generated: Value =
        serde_json::from_str(&solopay::routes::openapi().to_json().unwrap()).unwrap();
    assert_eq!(served, generated);
    for path in [
        "/orders",
        "/orders/{id}",
        "/orders/{id}/close",
        "/notify",
        "/heartbeat",
        "/admin/payees",
    ] {
        assert!(
            served["paths"].get(path).is_some(),
            "{path} is not documented"
        );
    }

    let redirect = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger"));
    let initializer = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert!(initializer.text().await.unwrap().contains("/openapi.json"));
}
