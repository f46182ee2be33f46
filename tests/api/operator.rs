//! The operator's API: finding orders and payments, paying by hand, assigning payments,
//! changing merchants, devices and payees, the daily summary, and the audit log behind it all.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn get(app: &TestApp, path: &str) -> Value {
    let response = app.admin_get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

async fn patch(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .patch(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn audit_actions(app: &TestApp, target: &str) -> Vec<String> {
    let audit = get(app, &format!("/admin/audit?target_id={target}")).await;
    audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_orders_neither_repeats_nor_skips_while_new_ones_arrive() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let mut existing = BTreeSet::new();
    for i in 0..23 {
        let order = app
            .order(&merchant, &format!("{}.00", i + 1), "wechat")
            .await;
        existing.insert(order["id"].as_str().unwrap().to_string());
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(after) => format!("/admin/orders?limit=5&starting_after={after}"),
            None => "/admin/orders?limit=5".to_string(),
        };
        let page = get(&app, &path).await;
        // New orders keep arriving between pages.
        app.order(&merchant, "99.00", "wechat").await;
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|o| o["id"].as_str().unwrap().to_string()));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        cursor = data.last().map(|o| o["id"].as_str().unwrap().to_string());
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an order was listed twice");
    assert_eq!(
        unique, existing,
        "every order that existed was listed, none that came later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_can_be_filtered_and_seen_with_their_whole_history() {
    let receiver = crate::receiver::Receiver::start().await;
    let TestEnv { app, db: _db } = spawn_app_with(|s| s.allow_private_webhooks = true).await;
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let other = app.create_merchant("other").await;
    let listener = app.online_listener("wechat").await;
    let paid = app.order(&merchant, "10.00", "wechat").await;
    app.order(&merchant, "11.00", "wechat").await;
    app.order(&other, "10.00", "wechat").await;
    app.pay(&listener.device, "wechat", "10.00").await;
    app.pay(&listener.device, "wechat", "10.01").await;

    // 10.00 paid the first order, 10.01 the other merchant's.
    let by_status = get(&app, "/admin/orders?status=paid").await;
    assert_eq!(by_status["data"].as_array().unwrap().len(), 2);
    let pending = get(&app, "/admin/orders?status=pending&channel=wechat").await;
    assert_eq!(pending["data"][0]["amount"], "11.00");
    let by_merchant = get(&app, &format!("/admin/orders?merchant_id={}", other.id)).await;
    assert_eq!(by_merchant["data"].as_array().unwrap().len(), 1);
    let by_amount = get(&app, "/admin/orders?amount=10.00").await;
    assert_eq!(by_amount["data"].as_array().unwrap().len(), 2);
    let by_payable = get(&app, "/admin/orders?payable_amount=10.01").await;
    assert_eq!(by_payable["data"][0]["merchant_id"], other.id.as_str());
    let by_number = get(
        &app,
        &format!(
            "/admin/orders?merchant_order_id={}",
            paid["merchant_order_id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(by_number["data"][0]["id"], paid["id"]);
    let none = get(&app, "/admin/orders?paid_from=2100-01-01T00:00:00Z").await;
    assert!(none["data"].as_array().unwrap().is_empty());
    for bad in [
        "status=lost",
        "amount=1.001",
        "limit=0",
        "created_from=yesterday",
        "colour=red",
    ] {
        let response = app.admin_get(&format!("/admin/orders?{bad}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    receiver.wait_for(1, Duration::from_secs(5)).await;
    let id = paid["id"].as_str().unwrap();
    let detail = get(&app, &format!("/admin/orders/{id}")).await;
    assert_eq!(detail["status"], "paid");
    assert_eq!(detail["payments"][0]["amount"], "10.00");
    assert_eq!(detail["events"][0]["type"], "order.paid");
    assert_eq!(detail["webhook_deliveries"][0]["event_type"], "order.paid");
    let unknown = app.admin_get("/admin/orders/ord_nope").await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;
    let anonymous = app
        .client
        .get(app.url("/admin/orders"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pays_an_order_by_hand_with_a_note() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "10.00", "wechat").await;
    let id = order["id"].as_str().unwrap();
    let path = format!("/admin/orders/{id}/mark-paid");

    assert_problem(
        app.admin_post(&path, &json!({})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_problem(
        app.admin_post(&path, &json!({"note": " "})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let anonymous = app
        .client
        .post(app.url(&path))
        .json(&json!({"note": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = app
        .admin_post("/admin/orders/ord_nope/mark-paid", &json!({"note": "x"}))
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;

    let paid = app
        .admin_post(&path, &json!({"note": "screenshot of the transfer"}))
        .await;
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(paid.json::<Value>().await.unwrap()["status"], "paid");
    assert_eq!(app.get_order(id).await["status"], "paid");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM events WHERE order_id = '{id}' AND type = 'order.paid'"
        ))
        .await,
        1
    );
    let again = app.admin_post(&path, &json!({"note": "again"})).await;
    assert_problem(again, StatusCode::CONFLICT, "invalid_state").await;

    let audit = get(&app, &format!("/admin/audit?target_id={id}")).await;
    let entry = &audit["data"][0];
    assert_eq!(entry["action"], "order.mark_paid");
    assert_eq!(entry["operator"], "admin");
    assert_eq!(entry["note"], "screenshot of the transfer");
    assert_eq!(entry["details"]["previous_status"], "pending");

    // A closed order can be paid by hand too, and stays late when past its expiry.
    let closed = app.order(&merchant, "20.00", "wechat").await;
    let closed_id = closed["id"].as_str().unwrap();
    app.close_order(&merchant, closed_id).await;
    let paid = app
        .admin_post(
            &format!("/admin/orders/{closed_id}/mark-paid"),
            &json!({"note": "paid at the counter"}),
        )
        .await;
    assert!(paid.json::<Value>().await.unwrap()["closed_at"].is_string());
    assert_eq!(app.get_order(closed_id).await["status"], "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_paid_nothing_is_assigned_to_an_order_once() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "10.00", "wechat").await;
    let order_id = order["id"].as_str().unwrap();
    // The payer sent 10.20 instead of 10.00.
    let wrong = app.pay(&listener.device, "wechat", "10.20").await;
    assert_eq!(wrong["result"], "unmatched");
    let payment_id = wrong["payment_id"].as_str().unwrap();

    let unmatched = get(&app, "/admin/payments?result=unmatched").await;
    assert_eq!(unmatched["data"][0]["id"], payment_id);
    assert_eq!(unmatched["data"][0]["amount"], "10.20");
    assert!(
        get(&app, "/admin/payments?result=matched").await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let by_device = get(
        &app,
        &format!("/admin/payments?device_id={}", listener.device.id),
    )
    .await;
    assert_eq!(by_device["data"].as_array().unwrap().len(), 1);
    let detail = get(&app, &format!("/admin/orders/{order_id}")).await;
    assert!(detail["unmatched_payments"].as_array().unwrap().is_empty());

    let path = format!("/admin/payments/{payment_id}/assign");
    assert_problem(
        app.admin_post(&path, &json!({"order_id": "ord_nope"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.admin_post(
            "/admin/payments/pay_nope/assign",
            &json!({"order_id": order_id}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Another amount than the order's: assigned once the operator accepts the difference.
    let unfit = app
        .admin_post(
            &path,
            &json!({"order_id": order_id, "note": "sent 10.20 by mistake"}),
        )
        .await;
    assert_problem(unfit, StatusCode::CONFLICT, "invalid_state").await;
    let assigned = app
        .admin_post(
            &path,
            &json!({"order_id": order_id, "note": "sent 10.20 by mistake",
                    "accept_differences": true}),
        )
        .await;
    assert_eq!(assigned.status(), StatusCode::OK);
    let assigned: Value = assigned.json().await.unwrap();
    assert_eq!(assigned["payment"]["result"], "matched");
    assert_eq!(assigned["payment"]["order_id"], order_id);
    assert_eq!(assigned["order"]["status"], "paid");

    // Twice: refused, whichever way.
    let again = app.admin_post(&path, &json!({"order_id": order_id})).await;
    assert_problem(again, StatusCode::CONFLICT, "invalid_state").await;
    let other_payment = app.pay(&listener.device, "wechat", "77.00").await;
    let onto_paid = app
        .admin_post(
            &format!(
                "/admin/payments/{}/assign",
                other_payment["payment_id"].as_str().unwrap()
            ),
            &json!({"order_id": order_id}),
        )
        .await;
    assert_problem(onto_paid, StatusCode::CONFLICT, "invalid_state").await;

    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE type = 'order.paid'")
            .await,
        1
    );
    assert_eq!(audit_actions(&app, payment_id).await, ["payment.assign"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merchants_devices_and_payees_are_changed_and_every_change_is_audited() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order_body =
        |n: &str| json!({"merchant_order_id": n, "amount": "3.00", "channel": "wechat"});

    // Merchant: a new API key replaces the old one at once; a disabled merchant is refused.
    let rotated: Value = app
        .admin_post(
            &format!("/admin/merchants/{}/rotate-api-key", merchant.id),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_key = MerchantKeys {
        api_key: rotated["api_key"].as_str().unwrap().to_string(),
        ..merchant.clone()
    };
    assert_problem(
        app.create_order(&merchant, &order_body("a")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        app.create_order(&new_key, &order_body("b")).await.status(),
        StatusCode::CREATED
    );
    let disabled = patch(
        &app,
        &format!("/admin/merchants/{}", merchant.id),
        &json!({"enabled": false, "notify_url": "https://shop.example/hook"}),
    )
    .await;
    assert_eq!(
        disabled.json::<Value>().await.unwrap()["notify_url"],
        "https://shop.example/hook"
    );
    assert_problem(
        app.create_order(&new_key, &order_body("c")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    patch(
        &app,
        &format!("/admin/merchants/{}", merchant.id),
        &json!({"enabled": true, "notify_url": null}),
    )
    .await;

    // Payee: a new QR code serves new orders; disabled, it gets none.
    let payee_path = format!("/admin/payees/{}", listener.payee_id);
    let updated: Value = patch(&app, &payee_path, &json!({"qr_code": "wxp://new-code", "fixed_amount_codes": [{"amount": "3.01", "qr_code": "wxp://fixed-301"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(updated["fixed_amount_codes"][0]["amount"], "3.01");
    let order: Value = app
        .create_order(&new_key, &order_body("d"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        order["qr_code"], "wxp://fixed-301",
        "3.00 is taken by order b: 3.01 has a fixed code"
    );
    patch(&app, &payee_path, &json!({"enabled": false})).await;
    assert_problem(
        app.create_order(&new_key, &order_body("e")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_payee_available",
    )
    .await;
    patch(&app, &payee_path, &json!({"enabled": true})).await;

    // Device: a new secret replaces the old one; a disabled device is refused and not chosen.
    let secret: Value = app
        .admin_post(
            &format!("/admin/devices/{}/rotate-secret", listener.device.id),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_problem(
        app.heartbeat(&listener.device).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let renewed = DeviceKeys {
        id: listener.device.id.clone(),
        secret: secret["secret"].as_str().unwrap().to_string(),
    };
    assert_eq!(app.heartbeat(&renewed).await.status(), StatusCode::OK);
    patch(
        &app,
        &format!("/admin/devices/{}", renewed.id),
        &json!({"enabled": false}),
    )
    .await;
    assert_problem(
        app.heartbeat(&renewed).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        app.create_order(&new_key, &order_body("f")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_payee_available",
    )
    .await;

    // Refusals: unknown ids, bad bodies, no token.
    for path in [
        "/admin/merchants/mch_nope",
        "/admin/devices/dev_nope",
        "/admin/payees/pye_nope",
    ] {
        assert_problem(
            patch(&app, path, &json!({"name": "x"})).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    assert_problem(
        patch(&app, &payee_path, &json!({"qr_code": ""})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_problem(
        patch(&app, &payee_path, &json!({"colour": "red"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let anonymous = app
        .client
        .patch(app.url(&payee_path))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;

    assert_eq!(
        audit_actions(&app, &merchant.id).await,
        [
            "merchant.update",
            "merchant.update",
            "merchant.rotate_api_key",
            "merchant.create"
        ]
    );
    assert_eq!(
        audit_actions(&app, &listener.payee_id).await,
        [
            "payee.update",
            "payee.update",
            "payee.update",
            "payee.create"
        ]
    );
    assert_eq!(
        audit_actions(&app, &renewed.id).await,
        ["device.update", "device.rotate_secret", "device.create"]
    );
    // Append-only: the database itself refuses to change the record.
    let client = db.client().await;
    assert!(
        client
            .execute("UPDATE audit_log SET note = 'rewritten'", &[])
            .await
            .is_err()
    );
    assert!(client.execute("DELETE FROM audit_log", &[]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_summary_counts_orders_payments_and_money_per_day_and_channel() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let wechat = app.online_listener("wechat").await;
    let alipay = app.online_listener("alipay").await;
    app.order(&merchant, "10.00", "wechat").await;
    app.order(&merchant, "5.50", "wechat").await;
    let expired = app.order(&merchant, "7.00", "alipay").await;
    age_order(&db, expired["id"].as_str().unwrap(), 301).await;
    app.pay(&wechat.device, "wechat", "10.00").await;
    app.pay(&wechat.device, "wechat", "5.50").await;
    app.pay(&alipay.device, "alipay", "1.00").await;
    app.get_order(expired["id"].as_str().unwrap()).await;

    let today = db
        .text("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date::text")
        .await
        .unwrap();
    let summary = get(&app, &format!("/admin/summary?from={today}&to={today}")).await;
    assert_eq!(summary["timezone"], "Asia/Shanghai");
    // The zone is now known to the service without asking Postgres: the same answer again.
    let again = get(&app, &format!("/admin/summary?from={today}&to={today}")).await;
    assert_eq!(again, summary);
    let days = summary["days"].as_array().unwrap();
    let of = |channel: &str| {
        days.iter()
            .find(|d| d["channel"] == channel)
            .unwrap()
            .clone()
    };
    let w = of("wechat");
    assert_eq!(
        (w["orders_created"].as_i64(), w["orders_paid"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(w["amount_paid"], "15.50");
    let a = of("alipay");
    assert_eq!(
        (
            a["orders_expired"].as_i64(),
            a["payments_unmatched"].as_i64()
        ),
        (Some(1), Some(1))
    );

    for bad in [
        format!("from={today}"),
        format!("from={today}&to=2000-01-01"),
        format!("from={today}&to={today}&tz=Mars/Olympus"),
        // An offset is not a zone name (Postgres would read it as a POSIX rule, sign reversed).
        format!("from={today}&to={today}&tz=UTC%2B8"),
        format!("from={today}&to={today}&tz=asia/shanghai"),
        "from=25-11-2026&to=2026-11-25".to_string(),
    ] {
        let response = app.admin_get(&format!("/admin/summary?{bad}")).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summarys_expired_orders_are_read_through_an_index_not_the_whole_table() {
    let TestEnv { db, .. } = spawn_app().await;
    // The summary's expired-orders branch, as it counts the quarters not kept.
    let plan = plan_without_seqscan(
        &db,
        "SELECT count(*) FROM summary_facts \
          WHERE metric = 'expired' AND at >= now() - interval '31 days' AND at < now()",
    )
    .await;
    assert!(plan.contains("orders_expired_at_idx"), "{plan}");
}

/// The plan of `query` with sequential scans forbidden: the tables are empty here, so this asks
/// whether any index can answer it, as on a big table.
async fn plan_without_seqscan(db: &TestDb, query: &str) -> String {
    let client = db.client().await;
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    explain(&client, "", query).await.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_reads_the_reserved_amounts_through_their_index_whatever_the_statistics() {
    let TestEnv { db, .. } = spawn_app().await;
    // A history of released orders, analyzed; then the orders of the last minutes, which the
    // statistics do not know of (a big table is analyzed rarely). The planner then counts the
    // holding orders as none, and must still read the payee's range of the btree, not some
    // index over all holding orders read whole (the exclusion constraint's, the release pass's).
    let order = |id: &str, amount: &str, created: &str, until: &str, holds: bool| {
        format!(
            "INSERT INTO orders (id, merchant_id, merchant_order_id, request_fingerprint, \
                                 status, channel, amount, payable_amount, payee_id, qr_code, \
                                 qr_fixed_amount, created_at, expires_at, reserved_until, \
                                 holds_amount, protocol) \
             SELECT '{id}' || i, 'mer_x', '{id}' || i, '\\x00', 'expired', 'wechat', 5, \
                    {amount}, 'pye_' || (i % 16), 'q', false, {created}, {created}, {until}, \
                    {holds}, 'native' \
               FROM generate_series(1, 20000) i"
        )
    };
    db.client()
        .await
        .batch_execute(&format!(
            "SET session_replication_role = replica; {}; ANALYZE orders; {}",
            order(
                "old",
                "(100 + (i * 7919) % 99900) / 100.0",
                "now() - interval '300 days' + i * interval '1 minute'",
                "now() - interval '300 days' + i * interval '1 minute' + interval '15 minutes'",
                false
            ),
            order(
                "new",
                "5.00 + (i / 16) / 100.0",
                "now()",
                "now() + interval '15 minutes'",
                true
            )
        ))
        .await
        .unwrap();
    let plan = plan_without_seqscan(
        &db,
        "SELECT * FROM solopay_taken_amounts('pye_3', 5.00, 14.99)",
    )
    .await;
    assert!(plan.contains("orders_payee_amount_idx"), "{plan}");
    assert!(!plan.contains("reserved_once"), "{plan}");
    assert!(!plan.contains("holding_until"), "{plan}");
}
