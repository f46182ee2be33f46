//! Listener notifications: repeated, replayed, forged, unsigned, from unknown devices, for
//! amounts nobody owes, racing each other. Nothing is credited twice and every raw notification
//! is stored.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Sets up a merchant, an online wechat listener and a pending order for `amount`.
async fn pending_order(app: &TestApp, amount: &str) -> (MerchantKeys, Listener, String) {
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, amount, "wechat").await;
    (
        merchant,
        listener,
        order["id"].as_str().unwrap().to_string(),
    )
}

fn payment(notification_id: &str, amount: &str) -> Value {
    json!({"notification_id": notification_id, "channel": "wechat", "amount": amount,
           "received_at": chrono::Utc::now().to_rfc3339(), "package": "com.tencent.mm",
           "title": "微信支付", "text": format!("微信支付收款{amount}元(朋友到店)")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_notification_is_answered_like_the_first_and_credits_once() {
    let TestEnv { app, db } = spawn_app().await;
    let (merchant, listener, id) = pending_order(&app, "10.00").await;
    let body = payment("n-1", "10.00");

    let first: Value = app
        .notify(&listener.device, &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["result"], "matched");
    for _ in 0..3 {
        let again = app.notify(&listener.device, &body).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(again.json::<Value>().await.unwrap(), first);
    }
    // Even with other content, the id decides: the first answer, nothing changed, although
    // another order holds the amount it names.
    let other = app.order(&merchant, "99.00", "wechat").await;
    let altered: Value = app
        .notify(
            &listener.device,
            &payment("n-1", other["payable_amount"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(altered, first);
    assert_eq!(
        app.get_order(other["id"].as_str().unwrap()).await["status"],
        "pending"
    );

    assert_eq!(db.count("SELECT count(*) FROM payments").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE type = 'order.paid'")
            .await,
        1
    );
    assert_eq!(app.get_order(&id).await["status"], "paid");
    // Every request is stored raw, each pointing at the one payment.
    assert_eq!(db.count("SELECT count(*) FROM notifications").await, 5);
    assert_eq!(
        db.count("SELECT count(DISTINCT payment_id) FROM notifications")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_forged_unsigned_and_unknown_notifications_are_stored_and_refused() {
    let TestEnv { app, db } = spawn_app().await;
    let (_, listener, id) = pending_order(&app, "10.00").await;
    let body = payment("n-2", "10.00").to_string();
    let device = &listener.device;

    // A captured request replayed later: the timestamp is outside the 300 s window.
    let replay = app
        .signed_post("/notify", device, now_unix() - 301, body.as_bytes())
        .await;
    assert_problem(replay, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let future = app
        .signed_post("/notify", device, now_unix() + 301, body.as_bytes())
        .await;
    assert_problem(future, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Signed with the wrong secret.
    let forger = DeviceKeys {
        id: device.id.clone(),
        secret: "0".repeat(32),
    };
    let forged = app
        .signed_post("/notify", &forger, now_unix(), body.as_bytes())
        .await;
    assert_problem(forged, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Signed correctly, then the body changed in transit.
    let timestamp = now_unix().to_string();
    let tampered = app
        .client
        .post(app.url("/notify"))
        .header("X-Solopay-Device", &device.id)
        .header("X-Solopay-Timestamp", &timestamp)
        .header(
            "X-Solopay-Signature",
            device_signature(&device.secret, &timestamp, body.as_bytes()),
        )
        .body(body.replace("10.00", "10.01"))
        .send()
        .await
        .unwrap();
    assert_problem(tampered, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // No signature at all; a device that does not exist.
    let unsigned = app
        .client
        .post(app.url("/notify"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(unsigned, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let stranger = DeviceKeys {
        id: "dev_doesnotexist".into(),
        secret: device.secret.clone(),
    };
    let unknown = app
        .signed_post("/notify", &stranger, now_unix(), body.as_bytes())
        .await;
    assert_problem(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // A malformed signature header.
    let garbled = app
        .client
        .post(app.url("/notify"))
        .header("X-Solopay-Device", &device.id)
        .header("X-Solopay-Timestamp", now_unix().to_string())
        .header("X-Solopay-Signature", "sha256=abc")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(garbled, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Nothing was credited, and every one of them is stored with why it was refused.
    assert_eq!(app.get_order(&id).await["status"], "pending");
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 0);
    let stored = |result: &'static str| {
        let db = &db;
        async move {
            db.count(&format!(
                "SELECT count(*) FROM notifications WHERE auth_result = '{result}'"
            ))
            .await
        }
    };
    assert_eq!(stored("stale_timestamp").await, 2);
    assert_eq!(stored("bad_signature").await, 3);
    assert_eq!(stored("missing_credentials").await, 1);
    assert_eq!(stored("unknown_device").await, 1);
    // Stored byte for byte as received.
    let exact = format!(
        "SELECT count(*) FROM notifications WHERE body = convert_to('{}', 'UTF8')",
        body.replace('\'', "''")
    );
    assert_eq!(db.count(&exact).await, 6);
    assert_eq!(db.count("SELECT count(*) FROM notifications").await, 7);

    // The genuine one still pays.
    let genuine = app
        .signed_post("/notify", device, now_unix(), body.as_bytes())
        .await;
    assert_eq!(genuine.json::<Value>().await.unwrap()["result"], "matched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_nobody_owes_is_kept_unmatched_for_the_operator() {
    let TestEnv { app, db } = spawn_app().await;
    let (_, listener, id) = pending_order(&app, "10.00").await;

    let result = app.pay(&listener.device, "wechat", "10.01").await;
    assert_eq!(result["result"], "unmatched");
    assert!(result["payment_id"].as_str().unwrap().starts_with("pay_"));
    assert!(result.get("order_id").is_none());
    // A channel this device has no payee for.
    let other = app.pay(&listener.device, "alipay", "10.00").await;
    assert_eq!(other["result"], "unmatched");

    assert_eq!(app.get_order(&id).await["status"], "pending");
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE result = 'unmatched' AND order_id IS NULL")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_payments_of_one_order_credit_it_once() {
    let TestEnv { app, db } = spawn_app().await;
    let (_, listener, id) = pending_order(&app, "10.00").await;

    // Ten different payments of the same amount at once (two payers, retries, …).
    let racers = (0..10).map(|i| {
        let (app, device) = (app.clone(), listener.device.clone());
        tokio::spawn(async move {
            let response = app
                .notify(&device, &payment(&format!("race-{i}"), "10.00"))
                .await;
            response.json::<Value>().await.unwrap()
        })
    });
    let results: Vec<Value> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let matched: Vec<&Value> = results
        .iter()
        .filter(|r| r["result"] == "matched")
        .collect();
    assert_eq!(matched.len(), 1, "{results:?}");
    assert_eq!(matched[0]["order_id"], id.as_str());
    // The other nine find the order paid: reports of a payment already credited, kept.
    assert_eq!(
        results
            .iter()
            .filter(|r| r["result"] == "duplicate")
            .count(),
        9
    );

    assert_eq!(db.count("SELECT count(*) FROM payments").await, 10);
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE order_id IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE type = 'order.paid'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_one_notification_make_one_payment() {
    let TestEnv { app, db } = spawn_app().await;
    let (_, listener, _) = pending_order(&app, "10.00").await;

    let repeats = (0..10).map(|_| {
        let (app, device) = (app.clone(), listener.device.clone());
        tokio::spawn(async move {
            let response = app.notify(&device, &payment("dup", "10.00")).await;
            response.json::<Value>().await.unwrap()
        })
    });
    let results: Vec<Value> = futures_util::future::join_all(repeats)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(results.iter().all(|r| *r == results[0]), "{results:?}");
    assert_eq!(results[0]["result"], "matched");
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM notifications").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_without_a_usable_amount_is_stored_and_refused() {
    let TestEnv { app, db } = spawn_app().await;
    let (_, listener, id) = pending_order(&app, "10.00").await;

    let no_amount = app
        .notify(
            &listener.device,
            &json!({"notification_id": "t-1", "channel": "wechat",
                    "title": "微信支付", "text": "微信支付收款元(朋友到店)"}),
        )
        .await;
    assert_problem(
        no_amount,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unparseable_notification",
    )
    .await;

    // Amounts as raw JSON text: exponent forms only exist as written.
    for (i, amount) in [r#""0""#, r#""-1""#, r#""1.001""#, r#""1e2""#, "1e2"]
        .into_iter()
        .enumerate()
    {
        let body =
            format!(r#"{{"notification_id": "bad-{i}", "channel": "wechat", "amount": {amount}}}"#);
        let response = app
            .signed_post("/notify", &listener.device, now_unix(), body.as_bytes())
            .await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_amount").await;
    }
    for body in [
        json!({"notification_id": "", "channel": "wechat", "amount": "10.00"}),
        json!({"notification_id": "x".repeat(129), "channel": "wechat", "amount": "10.00"}),
        json!({"notification_id": "u-1", "channel": "paypal", "amount": "10.00"}),
        json!({"notification_id": "u-2", "channel": "wechat", "amount": "10.00", "extra": 1}),
        json!({"notification_id": "u-3", "channel": "wechat", "amount": true}),
        json!(["not", "an", "object"]),
    ] {
        let response = app.notify(&listener.device, &body).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let garbage = app
        .signed_post(
            "/notify",
            &listener.device,
            now_unix(),
            b"\xff\xfe not json",
        )
        .await;
    assert_problem(garbage, StatusCode::BAD_REQUEST, "invalid_request").await;

    assert_eq!(app.get_order(&id).await["status"], "pending");
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE result <> 'unparsed'")
            .await,
        0
    );
    // Stored, each with the reason it was refused.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM notifications WHERE auth_result = 'ok' AND rejection IS NOT NULL"
        )
        .await,
        12
    );
    let refused = |code: &'static str| {
        let db = &db;
        async move {
            db.count(&format!(
                "SELECT count(*) FROM notifications WHERE rejection LIKE '{code}:%'"
            ))
            .await
        }
    };
    // The unreadable one is a payment kept for the operator, not a refused body.
    assert_eq!(refused("unparseable_notification").await, 0);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM payments WHERE result = 'unparsed' AND notification_id = 't-1'"
        )
        .await,
        1
    );
    assert_eq!(refused("invalid_amount").await, 5);
    assert_eq!(refused("invalid_request").await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_need_a_valid_signature_and_mark_the_device_online() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let device = app.create_device("phone").await;
    let listed: Value = app.admin_get("/admin/devices").await.json().await.unwrap();
    assert_eq!(listed["data"][0]["online"], false);

    let forger = DeviceKeys {
        id: device.id.clone(),
        secret: "f".repeat(32),
    };
    let forged = app
        .signed_post("/heartbeat", &forger, now_unix(), b"{}")
        .await;
    assert_problem(forged, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let stale = app
        .signed_post("/heartbeat", &device, now_unix() - 400, b"{}")
        .await;
    assert_problem(stale, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let bad = app
        .signed_post("/heartbeat", &device, now_unix(), br#"{"battery": 101}"#)
        .await;
    assert_problem(bad, StatusCode::BAD_REQUEST, "invalid_request").await;
    let listed: Value = app.admin_get("/admin/devices").await.json().await.unwrap();
    assert_eq!(listed["data"][0]["online"], false);

    let ok = app
        .signed_post(
            "/heartbeat",
            &device,
            now_unix(),
            br#"{"app_version": "2.1", "battery": 55}"#,
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let empty = app
        .signed_post("/heartbeat", &device, now_unix(), b"")
        .await;
    assert_eq!(empty.status(), StatusCode::OK);
    let listed: Value = app.admin_get("/admin/devices").await.json().await.unwrap();
    assert_eq!(listed["data"][0]["online"], true);
    assert_eq!(listed["data"][0]["app_version"], "2.1");
    assert_eq!(listed["data"][0]["battery"], 55);
}
