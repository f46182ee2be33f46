//! Merchant webhooks: signed with the Standard Webhooks scheme, delivered from the outbox right
//! after the payment commits, retried until a 2xx, never to private addresses unless allowed,
//! redelivered and re-signed on the operator's request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use solopay::config::Settings;

use crate::helpers::*;
use crate::receiver::{Answer, Receiver};

/// Webhooks to 127.0.0.1 allowed, and a retry schedule of fractions of a second.
fn fast_local_webhooks(settings: &mut Settings) {
    settings.allow_private_webhooks = true;
    settings.webhook_retry_schedule = vec![Duration::from_millis(300); 7];
    settings.webhook_poll_interval = Duration::from_millis(100);
}

/// Verifies a received webhook with the reference implementation of the scheme.
fn verify(secret: &str, received: &crate::receiver::Received) {
    standardwebhooks::Webhook::new(secret)
        .expect("secret")
        .verify(&received.body, &received.headers)
        .unwrap_or_else(|e| panic!("signature does not verify with {secret}: {e:?}"));
}

async fn deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    let body: Value = app
        .admin_get(&format!("/admin/webhooks{query}"))
        .await
        .json()
        .await
        .unwrap();
    body["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_reaches_the_merchant_signed_within_a_second() {
    let receiver = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(fast_local_webhooks).await;
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "10.00", "wechat").await;
    let order_id = order["id"].as_str().unwrap();

    let paid_at = Instant::now();
    app.pay(&listener.device, "wechat", "10.00").await;
    let received = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1, "the webhook did not arrive");
    let latency = received[0].at.duration_since(paid_at);
    assert!(
        latency < Duration::from_secs(1),
        "first attempt arrived {latency:?} after the notify"
    );

    let webhook = &received[0];
    verify(&merchant.webhook_secret, webhook);
    assert_eq!(webhook.header("content-type"), "application/json");
    let body = webhook.json();
    assert_eq!(body["type"], "order.paid");
    assert_eq!(webhook.header("webhook-id"), body["id"].as_str().unwrap());
    assert!(body["id"].as_str().unwrap().starts_with("evt_"));
    assert!(body["created_at"].is_string());
    assert_eq!(body["data"]["id"], order_id);
    assert_eq!(body["data"]["status"], "paid");
    assert_eq!(body["data"]["payable_amount"], "10.00");
    assert_eq!(
        body["data"]["merchant_order_id"],
        order["merchant_order_id"]
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM events WHERE id = '{}' AND order_id = '{order_id}'",
            body["id"].as_str().unwrap()
        ))
        .await,
        1
    );

    // Closing and expiring are delivered too; a tampered body no longer verifies.
    let closed = app.order(&merchant, "11.00", "wechat").await;
    app.close_order(&merchant, closed["id"].as_str().unwrap())
        .await;
    let received = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(received[1].json()["type"], "order.closed");
    verify(&merchant.webhook_secret, &received[1]);
    let mut tampered = received[1].clone();
    tampered.body = String::from_utf8(tampered.body)
        .unwrap()
        .replace("closed", "paid")
        .into_bytes();
    assert!(
        standardwebhooks::Webhook::new(&merchant.webhook_secret)
            .unwrap()
            .verify(&tampered.body, &tampered.headers)
            .is_err()
    );

    let query = format!("?order_id={order_id}");
    assert!(
        eventually(Duration::from_secs(5), || {
            let (app, query) = (&app, &query);
            async move { deliveries(app, query).await[0]["status"] == "succeeded" }
        })
        .await
    );
    let listed = deliveries(&app, &query).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["attempts"], 1);
    assert_eq!(listed[0]["event_type"], "order.paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_notify_url_overrides_the_merchants_and_no_url_means_no_delivery() {
    let merchants_receiver = Receiver::start().await;
    let orders_receiver = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(fast_local_webhooks).await;
    let merchant = app.merchant_with_webhooks(&merchants_receiver.url()).await;
    let quiet = app.create_merchant("no webhooks").await;
    let listener = app.online_listener("wechat").await;

    let response = app
        .create_order(
            &merchant,
            &json!({"merchant_order_id": "own-url", "amount": "1.00", "channel": "wechat",
                    "notify_url": orders_receiver.url()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.order(&quiet, "2.00", "wechat").await;
    app.pay(&listener.device, "wechat", "1.00").await;
    app.pay(&listener.device, "wechat", "2.00").await;

    assert_eq!(
        orders_receiver
            .wait_for(1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(merchants_receiver.received().is_empty());
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE type = 'order.paid'")
            .await,
        2
    );
    assert_eq!(db.count("SELECT count(*) FROM webhook_deliveries").await, 1);
}

/// Orders expired together (one batch of the sweep: their events and deliveries written by one
/// statement) each get their own event, delivered to their own URL; none where no URL is, nor
/// for an old protocol's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_expired_in_one_batch_each_reach_their_own_url() {
    let merchants_receiver = Receiver::start().await;
    let orders_receiver = Receiver::start().await;
    // No sweep but the one this test runs.
    let configure = |s: &mut Settings| {
        fast_local_webhooks(s);
        s.sweep_interval = Duration::from_secs(3600);
    };
    let TestEnv { app, db } = spawn_app_with(configure).await;
    let mut settings = test_settings(&db);
    configure(&mut settings);
    let rules = solopay::core::orders::OrderRules::from(&settings);
    let merchant = app.merchant_with_webhooks(&merchants_receiver.url()).await;
    let quiet = app.create_merchant("no webhooks").await;
    app.online_listener("wechat").await;

    let own: Value = app
        .create_order(
            &merchant,
            &json!({"merchant_order_id": "own-url", "amount": "1.00", "channel": "wechat",
                    "notify_url": orders_receiver.url()}),
        )
        .await
        .json()
        .await
        .unwrap();
    let plain = app.order(&merchant, "2.00", "wechat").await;
    let unheard = app.order(&quiet, "3.00", "wechat").await;
    // An order of an old protocol, whose clients expect a callback only when it is paid
    // (made one in SQL: the rule is the statement's, whatever made the order).
    let old_protocol: Value = app
        .create_order(
            &merchant,
            &json!({"merchant_order_id": "old-protocol", "amount": "4.00", "channel": "wechat",
                    "notify_url": orders_receiver.url()}),
        )
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<String> = [&own, &plain, &unheard, &old_protocol]
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    db.execute(&format!(
        "UPDATE orders SET protocol = 'vmq' WHERE id = '{}'",
        ids[3]
    ))
    .await;
    for id in &ids {
        age_order(&db, id, 301).await;
    }

    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        solopay::sweeper::sweep_pass(&mut conn, &rules).unwrap()
    })
    .await
    .unwrap();

    orders_receiver.wait_for(1, Duration::from_secs(5)).await;
    merchants_receiver.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expired = |received: &[crate::receiver::Received]| -> Vec<(String, String)> {
        received
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                (
                    body["type"].as_str().unwrap().to_string(),
                    body["data"]["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        expired(&orders_receiver.received()),
        vec![("order.expired".to_string(), ids[0].clone())]
    );
    assert_eq!(
        expired(&merchants_receiver.received()),
        vec![("order.expired".to_string(), ids[1].clone())]
    );
    for id in &ids {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM events WHERE order_id = '{id}' AND type = 'order.expired'"
            ))
            .await,
            1
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM webhook_deliveries").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_until_it_answers_2xx() {
    let receiver = Receiver::start().await;
    // U+0000 in an answer's body (which Postgres text cannot hold) is recorded as U+FFFD; it
    // once made the recording fail, so a delivered webhook was sent again and again.
    let with_nul = |status: u16| Answer {
        body: format!("answer\0{status}"),
        ..Answer::status(status)
    };
    receiver.answer_with([with_nul(500), Answer::status(302), with_nul(200)]);
    let TestEnv { app, db: _db } = spawn_app_with(fast_local_webhooks).await;
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("wechat").await;
    app.order(&merchant, "10.00", "wechat").await;
    app.pay(&listener.device, "wechat", "10.00").await;

    let received = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3);
    // The same event, the same webhook-id, every time; each attempt signed afresh.
    let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]));
    for webhook in &received {
        verify(&merchant.webhook_secret, webhook);
        assert_eq!(webhook.body, received[0].body);
    }

    // The receiver saw the answer before the service recorded it.
    assert!(
        eventually(Duration::from_secs(5), || {
            let app = &app;
            async move { deliveries(app, "?status=succeeded").await.len() == 1 }
        })
        .await
    );
    let listed = deliveries(&app, "?status=succeeded").await;
    assert_eq!(listed[0]["attempts"], 3);
    let detail: Value = app
        .admin_get(&format!(
            "/admin/webhooks/{}",
            listed[0]["id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    let log = detail["attempt_log"].as_array().unwrap();
    let statuses: Vec<i64> = log
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 302, 200]);
    assert_eq!(log[0]["response_excerpt"], "answer\u{FFFD}500");
    assert_eq!(log[2]["response_excerpt"], "answer\u{FFFD}200");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 3, "delivered once succeeded");
    assert!(log.iter().all(|a| a["latency_ms"].as_i64().unwrap() >= 0));
    assert_eq!(detail["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_longer_than_the_first_retries_still_gets_the_event() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let TestEnv { app, db: _db } = spawn_app_with(fast_local_webhooks).await;
    let merchant = app.merchant_with_webhooks(&url).await;
    let listener = app.online_listener("wechat").await;
    app.order(&merchant, "10.00", "wechat").await;
    app.pay(&listener.device, "wechat", "10.00").await;

    // Connection refused, three times.
    let retried = eventually(Duration::from_secs(10), || {
        let app = &app;
        async move {
            let listed = deliveries(app, "").await;
            listed[0]["attempts"].as_i64().unwrap() >= 3 && listed[0]["status"] == "pending"
        }
    })
    .await;
    assert!(retried, "the delivery was not retried");
    let detail: Value = app
        .admin_get(&format!(
            "/admin/webhooks/{}",
            deliveries(&app, "").await[0]["id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(detail["attempt_log"][0]["status_code"].is_null());
    assert!(
        !detail["attempt_log"][0]["error"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    let receiver = Receiver::start_on(port).await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    verify(&merchant.webhook_secret, &received[0]);
    assert!(
        eventually(Duration::from_secs(5), || {
            let app = &app;
            async move { deliveries(app, "").await[0]["status"] == "succeeded" }
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_fails_after_its_schedule_and_the_operator_can_redeliver_it() {
    let receiver = Receiver::start().await;
    receiver.answer_with([
        Answer::status(500),
        Answer::status(503),
        Answer::status(404),
    ]);
    let TestEnv { app, db: _db } = spawn_app_with(|s| {
        fast_local_webhooks(s);
        s.webhook_retry_schedule = vec![Duration::from_millis(100); 2];
    })
    .await;
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("wechat").await;
    app.order(&merchant, "10.00", "wechat").await;
    app.pay(&listener.device, "wechat", "10.00").await;

    let failed = eventually(Duration::from_secs(10), || {
        let app = &app;
        async move { deliveries(app, "?status=failed").await.len() == 1 }
    })
    .await;
    assert!(failed, "the delivery did not fail after its schedule");
    let delivery = deliveries(&app, "?status=failed").await.remove(0);
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status_code"], 404);
    assert_eq!(receiver.received().len(), 3);

    let id = delivery["id"].as_str().unwrap();
    let redelivered = app
        .admin_post(&format!("/admin/webhooks/{id}/redeliver"), &json!({}))
        .await;
    assert_eq!(redelivered.status(), StatusCode::OK);
    assert_eq!(
        redelivered.json::<Value>().await.unwrap()["status"],
        "pending"
    );
    let received = receiver.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 4);
    assert_eq!(
        received[3].header("webhook-id"),
        received[0].header("webhook-id")
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let app = &app;
            async move { deliveries(app, "?status=succeeded").await.len() == 1 }
        })
        .await
    );

    let unknown = app
        .admin_post("/admin/webhooks/whd_nope/redeliver", &json!({}))
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;
    let anonymous = app
        .client
        .post(app.url(&format!("/admin/webhooks/{id}/redeliver")))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_429() {
    let receiver = Receiver::start().await;
    receiver.answer_with([Answer {
        status: 429,
        headers: vec![("Retry-After", "2".into())],
        body: "slow down".into(),
    }]);
    let TestEnv { app, db: _db } = spawn_app_with(fast_local_webhooks).await;
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("wechat").await;
    app.order(&merchant, "10.00", "wechat").await;
    app.pay(&listener.device, "wechat", "10.00").await;

    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2);
    let gap = received[1].at.duration_since(received[0].at);
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?} despite Retry-After: 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_refused_unless_the_setting_allows_them() {
    let receiver = Receiver::start().await;
    let TestEnv { app, db: _db } = spawn_app_with(|s| {
        s.webhook_retry_schedule = vec![Duration::from_secs(60)];
    })
    .await;
    let listener = app.online_listener("wechat").await;
    let by_address = app.merchant_with_webhooks(&receiver.url()).await;
    let by_name = app
        .merchant_with_webhooks(&format!("http://localhost:{}/hook", receiver.port))
        .await;
    app.order(&by_address, "1.00", "wechat").await;
    app.order(&by_name, "2.00", "wechat").await;
    app.pay(&listener.device, "wechat", "1.00").await;
    app.pay(&listener.device, "wechat", "2.00").await;

    let refused = eventually(Duration::from_secs(10), || {
        let app = &app;
        async move {
            let listed = deliveries(app, "").await;
            listed.len() == 2
                && listed
                    .iter()
                    .all(|d| d["attempts"] == 1 && d["last_error"].is_string())
        }
    })
    .await;
    assert!(refused, "{:?}", deliveries(&app, "").await);
    for delivery in deliveries(&app, "").await {
        let error = delivery["last_error"].as_str().unwrap();
        assert!(error.contains("refused"), "{error}");
        assert!(delivery["last_status_code"].is_null());
    }
    assert!(
        receiver.received().is_empty(),
        "a private address was called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_webhooks_carry_both_signatures() {
    let receiver = Receiver::start().await;
    let TestEnv { app, db: _db } = spawn_app_with(fast_local_webhooks).await;
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("wechat").await;

    let rotated = app
        .admin_post(
            &format!("/admin/merchants/{}/rotate-webhook-secret", merchant.id),
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: Value = rotated.json().await.unwrap();
    let new_secret = rotated["webhook_secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != merchant.webhook_secret);
    assert!(rotated["previous_webhook_secret_expires_at"].is_string());

    app.order(&merchant, "10.00", "wechat").await;
    app.pay(&listener.device, "wechat", "10.00").await;
    let received = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        received[0].header("webhook-signature").split(' ').count(),
        2
    );
    verify(new_secret, &received[0]);
    verify(&merchant.webhook_secret, &received[0]);

    let unknown = app
        .admin_post(
            "/admin/merchants/mch_nope/rotate-webhook-secret",
            &json!({}),
        )
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_every_event_once() {
    let receiver = Receiver::start().await;
    let TestEnv { app: first, db } = spawn_app_with(fast_local_webhooks).await;
    let second = spawn_instance(&db, fast_local_webhooks).await;
    let merchant = first.merchant_with_webhooks(&receiver.url()).await;
    let listener = first.online_listener("wechat").await;

    const ORDERS: usize = 40;
    let mut paid_at = BTreeMap::new();
    for i in 0..ORDERS {
        let app = if i % 2 == 0 { &first } else { &second };
        let order = app
            .order(&merchant, &format!("{}.00", i + 1), "wechat")
            .await;
        paid_at.insert(order["id"].as_str().unwrap().to_string(), Instant::now());
        let result = app
            .pay(&listener.device, "wechat", &format!("{}.00", i + 1))
            .await;
        assert_eq!(result["result"], "matched");
    }
    receiver.wait_for(ORDERS, Duration::from_secs(20)).await;
    // Anything sent twice would arrive within this.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    assert_eq!(received.len(), ORDERS, "every event exactly once");
    let ids: std::collections::BTreeSet<&str> =
        received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), ORDERS);
    assert_eq!(
        db.count("SELECT count(*) FROM webhook_attempts").await,
        ORDERS as i64
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded' AND attempts = 1"
        )
        .await,
        ORDERS as i64
    );

    let mut latencies: Vec<Duration> = received
        .iter()
        .map(|r| {
            r.at.duration_since(paid_at[r.json()["data"]["id"].as_str().unwrap()])
        })
        .collect();
    latencies.sort();
    println!(
        "payment-to-webhook latency over {ORDERS} orders on two instances: median {:?}, max {:?}",
        latencies[ORDERS / 2],
        latencies[ORDERS - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_notifications_and_webhook_outcomes() {
    let receiver = Receiver::start().await;
    receiver.answer_with([Answer::status(500)]);
    let TestEnv { app, db: _db } = spawn_app_with(fast_local_webhooks).await;
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("wechat").await;
    app.order(&merchant, "10.00", "wechat").await;
    app.order(&merchant, "20.00", "wechat").await;
    app.pay(&listener.device, "wechat", "10.00").await;
    app.pay(&listener.device, "wechat", "99.00").await;
    receiver.wait_for(2, Duration::from_secs(10)).await;

    // The receiver has the second attempt; the service records it a moment later (on a loaded
    // machine, hundreds of milliseconds): the figures are read until they are all there.
    let expected = [
        r#"solopay_orders{status="paid"} 1"#,
        r#"solopay_orders{status="pending"} 1"#,
        r#"solopay_orders{status="closed"} 0"#,
        r#"solopay_notifications_total{result="matched"} 1"#,
        r#"solopay_notifications_total{result="unmatched"} 1"#,
        r#"solopay_webhook_attempts_total{outcome="retrying"} 1"#,
        r#"solopay_webhook_attempts_total{outcome="succeeded"} 1"#,
        "solopay_webhook_queue_depth 0",
        r#"solopay_http_requests_total{method="POST",route="/orders",status="201"} 2"#,
        "solopay_webhook_attempt_duration_seconds_count 2",
        r#"solopay_db_connections{state="max"} 8"#,
    ];
    let scrape = || async {
        let response = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    };
    let complete = eventually(Duration::from_secs(10), || async {
        let text = scrape().await;
        expected.iter().all(|line| text.lines().any(|l| l == *line))
    })
    .await;
    let text = scrape().await;
    for line in expected {
        assert!(
            complete && text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }

    // Pending orders are counted at every scrape; the other statuses come from a count of the
    // whole table made at most every five minutes (it reads every order).
    app.order(&merchant, "30.00", "wechat").await;
    app.order(&merchant, "40.00", "wechat").await;
    assert_eq!(
        app.pay(&listener.device, "wechat", "20.00").await["result"],
        "matched"
    );
    let text = scrape().await;
    for line in [
        r#"solopay_orders{status="pending"} 2"#,
        r#"solopay_orders{status="paid"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_between_the_payment_and_its_delivery_delivers_after_restart() {
    let db = TestDb::fresh();
    let dir = temp_dir();
    let receiver_port = free_port();
    let port = free_port();
    let start = || {
        let mut command = solopay(&db, &dir, port);
        command
            .env("SOLOPAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SOLOPAY_ALLOW_PRIVATE_WEBHOOKS", "true")
            .env("SOLOPAY_WEBHOOK_RETRY_SCHEDULE", "0.5,1,1,1,1,1,1")
            // An attempt cut short by the kill holds its lease for timeout + 10 s.
            .env("SOLOPAY_WEBHOOK_TIMEOUT_SECS", "1")
            .arg("serve");
        Service::spawn(&mut command)
    };

    let mut first = start();
    wait_until_up(port).await;
    let app = TestApp::at_port(port);
    let merchant = app
        .merchant_with_webhooks(&format!("http://127.0.0.1:{receiver_port}/hook"))
        .await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "10.00", "wechat").await;
    // The receiver is down: the payment commits, its delivery cannot succeed yet.
    assert_eq!(
        app.pay(&listener.device, "wechat", "10.00").await["result"],
        "matched"
    );

    // Killed uncleanly, no chance to finish anything.
    first.kill().await;
    assert_eq!(
        db.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
            .await,
        1
    );

    let receiver = Receiver::start_on(receiver_port).await;
    let second = start();
    wait_until_up(port).await;
    let received = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 1, "the event was lost with the process");
    verify(&merchant.webhook_secret, &received[0]);
    let body = received[0].json();
    assert_eq!(body["type"], "order.paid");
    assert_eq!(body["data"]["id"], order["id"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "delivered exactly once");
    assert_eq!(
        db.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
            .await,
        1
    );

    let (status, _) = second.terminate().await;
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_cannot_be_loaded_does_not_hold_up_the_others_claimed_with_it() {
    let receiver = Receiver::start().await;
    // Both first attempts fail, so that both deliveries wait for their next one.
    receiver.answer_with([Answer::status(500), Answer::status(500)]);
    let TestEnv { app, db } = spawn_app_with(fast_local_webhooks).await;
    let broken = app.merchant_with_webhooks(&receiver.url()).await;
    let sound = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("wechat").await;
    app.order(&broken, "3.00", "wechat").await;
    app.order(&sound, "4.00", "wechat").await;
    app.pay(&listener.device, "wechat", "3.00").await;
    app.pay(&listener.device, "wechat", "4.00").await;
    assert_eq!(receiver.wait_for(2, Duration::from_secs(5)).await.len(), 2);
    assert!(
        eventually(Duration::from_secs(5), || {
            let db = &db;
            async move {
                db.count("SELECT count(*) FROM webhook_deliveries WHERE attempts = 1 AND leased_until IS NULL")
                    .await
                    == 2
            }
        })
        .await
    );

    // One merchant's secret no longer opens (restored from another key's backup, say), and
    // both deliveries fall due at the same moment, to be claimed together.
    db.execute(&format!(
        "UPDATE merchants SET webhook_secret = 'sealed:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' \
          WHERE id = '{}'",
        broken.id
    ))
    .await;
    db.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = date_trunc('second', now()) + interval '2 seconds'",
    )
    .await;

    let received = receiver.wait_for(3, Duration::from_secs(6)).await;
    assert_eq!(
        received.len(),
        3,
        "the sound merchant's webhook was held up"
    );
    verify(&sound.webhook_secret, &received[2]);
    // The failure is recorded by the same pass, which may still be at it.
    let failed_to_load = eventually(Duration::from_secs(5), || {
        let db = &db;
        async move {
            db.count(
                "SELECT count(*) FROM webhook_attempts WHERE attempt = 2 \
                 AND error LIKE 'cannot load the delivery%'",
            )
            .await
                == 1
        }
    })
    .await;
    assert!(failed_to_load, "the failure to load was not recorded");
}

/// A merchant's endpoint that accepts connections and never answers; counts the connections
/// open at once.
struct HangingReceiver {
    port: u16,
    most_at_once: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HangingReceiver {
    async fn start() -> HangingReceiver {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(AtomicUsize::new(0));
        let most_at_once = std::sync::Arc::new(AtomicUsize::new(0));
        let (open_count, most) = (open, most_at_once.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let now = open_count.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let open_count = open_count.clone();
                tokio::spawn(async move {
                    // Read whatever comes, answer nothing, until the client gives up.
                    let mut buffer = [0u8; 4096];
                    use tokio::io::AsyncReadExt;
                    while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
                    open_count.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        HangingReceiver { port, most_at_once }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn most_at_once(&self) -> usize {
        self.most_at_once.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Fair delivery: with 40 of merchant X's deliveries hanging, merchant Y's webhook still comes
/// within a second, on one instance and on two: X holds no more than its share of the slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_does_not_hold_up_another_merchants_webhook() {
    for instances in [1, 2] {
        let hanging = HangingReceiver::start().await;
        let healthy = Receiver::start().await;
        let settings = |s: &mut Settings| {
            fast_local_webhooks(s);
            s.webhook_timeout = Duration::from_secs(30);
            s.webhook_concurrency = 8;
            s.webhook_per_destination = 3;
        };
        let TestEnv { app, db } = spawn_app_with(settings).await;
        let second = match instances {
            2 => Some(spawn_instance(&db, settings).await),
            _ => None,
        };
        let slow = app.merchant_with_webhooks(&hanging.url()).await;
        let fine = app.merchant_with_webhooks(&healthy.url()).await;
        let listener = app.online_listener("wechat").await;
        for i in 0..40 {
            let order = app.order(&slow, "1.00", "wechat").await;
            let paid = app
                .pay(
                    &listener.device,
                    "wechat",
                    order["payable_amount"].as_str().unwrap(),
                )
                .await;
            assert_eq!(paid["result"], "matched", "{i}: {paid}");
        }
        // X's attempts are in flight, as many as it may have.
        let waited = Instant::now();
        while db
            .count(
                "SELECT count(*) FROM webhook_deliveries \
                 WHERE status = 'pending' AND leased_until > now()",
            )
            .await
            < 3
        {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "X was never attempted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let order = app.order(&fine, "2.00", "wechat").await;
        let paid_at = Instant::now();
        let on = second.as_ref().unwrap_or(&app);
        let paid = on
            .pay(
                &listener.device,
                "wechat",
                order["payable_amount"].as_str().unwrap(),
            )
            .await;
        assert_eq!(paid["result"], "matched");
        let received = healthy.wait_for(1, Duration::from_secs(40)).await;
        assert_eq!(received.len(), 1, "Y's webhook never came");
        let latency = received[0].at.duration_since(paid_at);
        println!("{instances} instance(s): Y's webhook after {latency:?} with X hanging");
        assert!(
            latency < Duration::from_secs(1),
            "{instances} instance(s): Y's webhook came {latency:?} after its payment"
        );
        assert!(
            hanging.most_at_once() <= 3,
            "X had {} attempts in flight at once",
            hanging.most_at_once()
        );
    }
}

/// The webhook workers are woken by what writes a delivery (a payment, an expiry by the
/// sweep), and by nothing else: with no polling during the test, the webhooks arrive at once
/// all the same, and a payment to a merchant without a webhook URL wakes nobody (each wake-up
/// is a claim, a transaction, which most payments made for nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_workers_are_woken_by_what_writes_a_delivery_and_by_nothing_else() {
    let receiver = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(|settings| {
        fast_local_webhooks(settings);
        settings.webhook_poll_interval = Duration::from_secs(3600);
    })
    .await;
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let quiet = app.create_merchant("no webhooks").await;
    let listener = app.online_listener("wechat").await;
    let (_due_session, mut due) = listen(&db, solopay::db::webhooks::DELIVERY_DUE_CHANNEL).await;
    let (_changed_session, mut changed) =
        listen(&db, solopay::db::events::ORDER_CHANGED_CHANNEL).await;

    // Paid, no delivery: its order's waiters are woken, the webhook workers are not.
    app.order(&quiet, "2.00", "wechat").await;
    app.pay(&listener.device, "wechat", "2.00").await;
    let heard = tokio::time::timeout(Duration::from_secs(5), changed.recv()).await;
    assert!(
        matches!(heard, Ok(Some(_))),
        "the order's change was not announced"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        due.try_recv().is_err(),
        "a payment without a delivery woke the workers"
    );

    // Paid, with a delivery: woken, and delivered although nothing polls.
    let order = app.order(&merchant, "3.00", "wechat").await;
    app.pay(&listener.device, "wechat", "3.00").await;
    let received = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1, "the payment's webhook waited for a poll");
    assert_eq!(received[0].json()["data"]["id"], order["id"]);
    let heard = tokio::time::timeout(Duration::from_secs(5), due.recv()).await;
    assert!(
        matches!(heard, Ok(Some(_))),
        "the delivery was not announced"
    );

    // Expired by the sweep (the batch statement), with a delivery: the same.
    let late = app.order(&merchant, "4.00", "wechat").await;
    age_order(&db, late["id"].as_str().unwrap(), 3600).await;
    let received = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 2, "the expiry's webhook waited for a poll");
    assert_eq!(received[1].json()["type"], "order.expired");
    assert_eq!(received[1].json()["data"]["id"], late["id"]);
}
