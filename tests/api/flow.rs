//! The whole payment: create → poll → notify → paid, and the long-poll that wakes on it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_the_payable_amount_marks_the_order_paid_and_wakes_the_long_poll() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;

    let response = app
        .create_order(
            &merchant,
            &json!({"merchant_order_id": "A1001", "amount": "10.00", "channel": "wechat",
                    "subject": "VIP, 1 month", "metadata": {"user": 7},
                    "return_url": "https://shop.example/orders/A1001"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ord_"));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["amount"], "10.00");
    assert_eq!(order["payable_amount"], "10.00");
    assert_eq!(order["metadata"], json!({"user": 7}));
    assert_eq!(order["qr_fixed_amount"], false);

    // The shop page polls without credentials and sees neither merchant_order_id nor metadata.
    let polled = app.get_order(&id).await;
    assert_eq!(polled["status"], "pending");
    assert!(polled.get("merchant_order_id").is_none() && polled.get("metadata").is_none());

    let long_poll = {
        let (client, url) = (
            app.client.clone(),
            app.url(&format!("/orders/{id}?wait=20")),
        );
        tokio::spawn(async move {
            let answer: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            (answer, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let notified_at = Instant::now();
    let result = app.pay(&listener.device, "wechat", "10.00").await;
    assert_eq!(result["result"], "matched");
    assert_eq!(result["order_id"], id.as_str());
    assert!(result["payment_id"].as_str().unwrap().starts_with("pay_"));

    let (answer, answered_at) = long_poll.await.unwrap();
    assert_eq!(answer["status"], "paid");
    assert_eq!(answer["paid_late"], false);
    assert!(answer["paid_at"].is_string());
    let wake = answered_at.duration_since(notified_at);
    assert!(
        wake < Duration::from_secs(1),
        "long-poll answered {wake:?} after the notify"
    );

    // The merchant finds it by its own number; exactly one order.paid event was written.
    let found: Value = app
        .client
        .get(app.url("/orders?merchant_order_id=A1001"))
        .bearer_auth(&merchant.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["status"], "paid");
    assert_eq!(found["metadata"], json!({"user": 7}));
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM events WHERE order_id = '{id}' AND type = 'order.paid' \
             AND data->>'status' = 'paid' AND data->>'merchant_order_id' = 'A1001'"
        ))
        .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_when_another_instance_records_the_payment() {
    let TestEnv { app: first, db } = spawn_app().await;
    let second = spawn_instance(&db, |_| {}).await;
    let merchant = first.create_merchant("shop").await;
    let listener = first.online_listener("alipay").await;
    let order = first.order(&merchant, "5.00", "alipay").await;
    let id = order["id"].as_str().unwrap().to_string();

    let long_poll = {
        let (client, url) = (
            first.client.clone(),
            first.url(&format!("/orders/{id}?wait=20")),
        );
        tokio::spawn(async move {
            let answer: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            (answer, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notified_at = Instant::now();
    let result = second.pay(&listener.device, "alipay", "5.00").await;
    assert_eq!(result["result"], "matched");

    let (answer, answered_at) = long_poll.await.unwrap();
    assert_eq!(answer["status"], "paid");
    let wake = answered_at.duration_since(notified_at);
    assert!(
        wake < Duration::from_secs(1),
        "long-poll answered {wake:?} after the notify"
    );
    // Woken through LISTEN, not by the once-a-second fallback of a broken listener.
    for app in [&first, &second] {
        let metrics = app.metrics().await;
        assert!(
            metrics.contains("solopay_order_listener_connected 1"),
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_without_a_change_answers_pending_after_its_wait() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "1.00", "wechat").await;
    let id = order["id"].as_str().unwrap();

    let started = Instant::now();
    let answer: Value = app
        .client
        .get(app.url(&format!("/orders/{id}?wait=1")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "pending");
    assert!(started.elapsed() >= Duration::from_secs(1));

    for wait in ["0", "31", "-1", "soon"] {
        let response = app
            .client
            .get(app.url(&format!("/orders/{id}?wait={wait}")))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let response = app
        .client
        .get(app.url("/orders/ord_unknown"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_create_returns_the_same_order_and_changed_parameters_conflict() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let body = json!({"merchant_order_id": "R-1", "amount": 12.5, "channel": "wechat",
                      "metadata": {"b": 1, "a": [1, 2]}, "expires_in": 600});

    let first = app.create_order(&merchant, &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("location").is_some());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["amount"], "12.50");

    // Same parameters, keys in another order: the same order, 200, nothing created.
    let again = app
        .create_order(
            &merchant,
            &json!({"channel": "wechat", "amount": "12.50", "merchant_order_id": "R-1",
                    "expires_in": 600, "metadata": {"a": [1, 2], "b": 1}}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["payable_amount"], first["payable_amount"]);

    for changed in [
        json!({"merchant_order_id": "R-1", "amount": "12.51", "channel": "wechat",
               "metadata": {"b": 1, "a": [1, 2]}, "expires_in": 600}),
        json!({"merchant_order_id": "R-1", "amount": "12.50", "channel": "wechat",
               "metadata": {"b": 2, "a": [1, 2]}, "expires_in": 600}),
        json!({"merchant_order_id": "R-1", "amount": "12.50", "channel": "wechat",
               "metadata": {"b": 1, "a": [1, 2]}}),
    ] {
        let response = app.create_order(&merchant, &changed).await;
        assert_problem(response, StatusCode::CONFLICT, "idempotency_conflict").await;
    }
    assert_eq!(db.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_creates_make_one_order() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let body = json!({"merchant_order_id": "SAME", "amount": "3.00", "channel": "wechat"});

    let requests = (0..16).map(|_| {
        let (client, url, key, body) = (
            app.client.clone(),
            app.url("/orders"),
            merchant.api_key.clone(),
            body.clone(),
        );
        tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap()["id"].clone(),
            )
        })
    });
    let answers: Vec<(StatusCode, Value)> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count(),
        1
    );
    assert!(
        answers
            .iter()
            .all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::OK)
    );
    assert!(answers.iter().all(|(_, id)| *id == answers[0].1));
    assert_eq!(db.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_pending_order_closes_it_once() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "2.00", "wechat").await;
    let id = order["id"].as_str().unwrap();

    let closed = app.close_order(&merchant, id).await;
    assert_eq!(closed.status(), StatusCode::OK);
    let closed: Value = closed.json().await.unwrap();
    assert_eq!(closed["status"], "closed");
    // Closing again is a no-op returning it.
    let again = app.close_order(&merchant, id).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "closed");
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE type = 'order.closed'")
            .await,
        1
    );
    assert_eq!(app.get_order(id).await["status"], "closed");
}
