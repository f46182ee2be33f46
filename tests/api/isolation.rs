//! Merchant isolation: a merchant never reads or changes another merchant's orders.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_cannot_read_or_close_another_merchants_order() {
    let TestEnv { app, db } = spawn_app().await;
    let alice = app.create_merchant("alice").await;
    let bob = app.create_merchant("bob").await;
    app.online_listener("wechat").await;
    let body = json!({"merchant_order_id": "SHARED-1", "amount": "9.00", "channel": "wechat"});
    let order: Value = app.create_order(&alice, &body).await.json().await.unwrap();
    let id = order["id"].as_str().unwrap();

    let found = app
        .client
        .get(app.url("/orders?merchant_order_id=SHARED-1"))
        .bearer_auth(&bob.api_key)
        .send()
        .await
        .unwrap();
    assert_problem(found, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(
        app.close_order(&bob, id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(app.get_order(id).await["status"], "pending");

    // The same merchant_order_id is Bob's own, separate order.
    let bobs = app.create_order(&bob, &body).await;
    assert_eq!(bobs.status(), StatusCode::CREATED);
    let bobs: Value = bobs.json().await.unwrap();
    assert_ne!(bobs["id"], order["id"]);
    assert_eq!(bobs["payable_amount"], "9.01");

    let alices = app
        .client
        .get(app.url("/orders?merchant_order_id=SHARED-1"))
        .bearer_auth(&alice.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(alices.json::<Value>().await.unwrap()["id"], order["id"]);
    assert_eq!(db.count("SELECT count(*) FROM events").await, 0);

    let missing = app
        .client
        .get(app.url("/orders"))
        .bearer_auth(&alice.api_key)
        .send()
        .await
        .unwrap();
    assert_problem(missing, StatusCode::BAD_REQUEST, "invalid_request").await;
}
