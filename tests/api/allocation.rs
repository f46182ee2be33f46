//! Amount disambiguation: unique payable amounts under concurrency, on one or two instances,
//! smallest free offset, fixed-amount codes, and which payee is chosen.

use std::collections::BTreeSet;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Sends `count` concurrent orders for `amount`, spread round-robin over `apps`; returns each
/// answer's status and payable amount.
async fn concurrent_orders(
    apps: &[&TestApp],
    merchant: &MerchantKeys,
    amount: &str,
    count: usize,
) -> Vec<(StatusCode, Value)> {
    let requests = (0..count).map(|i| {
        let app = apps[i % apps.len()];
        let (client, url, key) = (
            app.client.clone(),
            app.url("/orders"),
            merchant.api_key.clone(),
        );
        let body =
            json!({"merchant_order_id": format!("C-{i}"), "amount": amount, "channel": "wechat"});
        tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        })
    });
    futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Checks the outcome of 64 concurrent orders against a capacity of 40 amounts.
async fn assert_capacity_respected(answers: &[(StatusCode, Value)], db: &TestDb) {
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, body)| body)
        .collect();
    let exhausted = answers
        .iter()
        .filter(|(s, body)| {
            *s == StatusCode::SERVICE_UNAVAILABLE && body["code"] == "amounts_exhausted"
        })
        .count();
    assert_eq!(
        created.len(),
        40,
        "every amount of the offset range is handed out"
    );
    assert_eq!(exhausted, 24, "past the capacity every request is refused");

    let amounts: BTreeSet<String> = created
        .iter()
        .map(|o| o["payable_amount"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(amounts.len(), 40, "every payable amount is distinct");
    let expected: BTreeSet<String> = (0..40).map(|k| format!("10.{k:02}")).collect();
    assert_eq!(amounts, expected, "the smallest offsets, 10.00 to 10.39");
    assert_eq!(
        db.count("SELECT count(DISTINCT payable_amount) FROM orders WHERE status = 'pending'")
            .await,
        40
    );
    assert_eq!(db.count("SELECT count(*) FROM orders").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_for_one_amount_on_one_payee_get_distinct_payable_amounts() {
    let TestEnv { app, db } = spawn_app_with(|s| s.max_offset_steps = 39).await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;

    let started = Instant::now();
    let answers = concurrent_orders(&[&app], &merchant, "10.00", 64).await;
    println!(
        "64 concurrent orders on one instance: {:?}",
        started.elapsed()
    );
    assert_capacity_respected(&answers, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_never_hand_out_an_amount_twice() {
    let TestEnv { app: first, db } = spawn_app_with(|s| s.max_offset_steps = 39).await;
    let second = spawn_instance(&db, |s| s.max_offset_steps = 39).await;
    let merchant = first.create_merchant("shop").await;
    first.online_listener("wechat").await;

    let started = Instant::now();
    let answers = concurrent_orders(&[&first, &second], &merchant, "10.00", 64).await;
    println!(
        "64 concurrent orders over two instances: {:?}",
        started.elapsed()
    );
    assert_capacity_respected(&answers, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smallest_free_offset_is_chosen_and_a_paid_amount_stays_reserved_for_the_grace() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;

    let amounts: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(app.order(&merchant, "10.00", "wechat").await["payable_amount"].to_string());
        }
        v
    };
    assert_eq!(amounts, ["\"10.00\"", "\"10.01\"", "\"10.02\""]);

    // Paying 10.00 keeps it reserved for the grace (a second report of the payment must find
    // the paid order, not a new one): the next order gets the next free amount.
    assert_eq!(
        app.pay(&listener.device, "wechat", "10.00").await["result"],
        "matched"
    );
    assert_eq!(
        app.order(&merchant, "10.00", "wechat").await["payable_amount"],
        "10.03"
    );
    // Once the grace after the payment has passed, the amount is free again.
    db.execute("UPDATE orders SET reserved_until = now() WHERE payable_amount = 10.00")
        .await;
    assert_eq!(
        app.order(&merchant, "10.00", "wechat").await["payable_amount"],
        "10.00"
    );
    // Another base amount starts from its own value.
    assert_eq!(
        app.order(&merchant, "9.99", "wechat").await["payable_amount"],
        "9.99"
    );
    assert_eq!(
        app.order(&merchant, "9.99", "wechat").await["payable_amount"],
        "10.04"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_go_down_when_configured_and_never_below_one_fen() {
    let TestEnv { app, db: _db } = spawn_app_with(|s| {
        s.offset_direction = solopay::config::OffsetDirection::Down;
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;

    for expected in ["10.00", "9.99", "9.98"] {
        assert_eq!(
            app.order(&merchant, "10.00", "wechat").await["payable_amount"],
            expected
        );
    }
    for expected in ["0.02", "0.01"] {
        assert_eq!(
            app.order(&merchant, "0.02", "wechat").await["payable_amount"],
            expected
        );
    }
    let response = app
        .create_order(
            &merchant,
            &json!({"merchant_order_id": "low", "amount": "0.02", "channel": "wechat"}),
        )
        .await;
    assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "amounts_exhausted",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_amount_code_is_preferred_among_equally_small_offsets() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let plain = app.online_listener("wechat").await;
    app.online_listener_with(
        "wechat",
        json!({"fixed_amount_codes": [{"amount": "20.00", "qr_code": "wxp://fixed-2000"},
                                          {"amount": 20.01, "qr_code": "wxp://fixed-2001"}]}),
    )
    .await;

    let first = app.order(&merchant, "20.00", "wechat").await;
    assert_eq!(first["payable_amount"], "20.00");
    assert_eq!(first["qr_code"], "wxp://fixed-2000");
    assert_eq!(first["qr_fixed_amount"], true);

    // Now the plain payee gives offset 0 and the fixed one offset 1: the smaller offset wins.
    let second = app.order(&merchant, "20.00", "wechat").await;
    assert_eq!(second["payable_amount"], "20.00");
    assert_eq!(
        second["qr_code"],
        format!("wechat://collect/{}", plain.device.id)
    );
    assert_eq!(second["qr_fixed_amount"], false);

    // Both give offset 1; only the fixed one has a code for 20.01.
    let third = app.order(&merchant, "20.00", "wechat").await;
    assert_eq!(third["payable_amount"], "20.01");
    assert_eq!(third["qr_code"], "wxp://fixed-2001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_go_to_the_least_recently_used_payee() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let a = app.online_listener("alipay").await;
    let b = app.online_listener("alipay").await;

    let mut used = Vec::new();
    for amount in ["1.00", "2.00", "3.00", "4.00"] {
        let order = app.order(&merchant, amount, "alipay").await;
        assert_eq!(order["payable_amount"], amount);
        used.push(
            db.text(&format!(
                "SELECT payee_id FROM orders WHERE id = '{}'",
                order["id"].as_str().unwrap()
            ))
            .await
            .unwrap(),
        );
    }
    assert_ne!(used[0], used[1]);
    assert_eq!(used[0], used[2]);
    assert_eq!(used[1], used[3]);
    assert!(used.contains(&a.payee_id) && used.contains(&b.payee_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enabled_payees_with_an_online_device_are_chosen() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let body = |id: &str| json!({"merchant_order_id": id, "amount": "1.00", "channel": "wechat"});

    // No payee at all, then a payee whose device never sent a heartbeat.
    assert_problem(
        app.create_order(&merchant, &body("a")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_payee_available",
    )
    .await;
    let device = app.create_device("silent phone").await;
    app.create_payee(&device, "wechat", json!({})).await;
    assert_problem(
        app.create_order(&merchant, &body("b")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_payee_available",
    )
    .await;

    // Online now.
    app.heartbeat(&device).await;
    assert_eq!(
        app.create_order(&merchant, &body("c")).await.status(),
        StatusCode::CREATED
    );

    // Silent for longer than the offline threshold (90 s): offline again.
    db.execute(&format!(
        "UPDATE devices SET last_seen_at = now() - interval '91 seconds' WHERE id = '{}'",
        device.id
    ))
    .await;
    assert_problem(
        app.create_order(&merchant, &body("d")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_payee_available",
    )
    .await;

    // Another channel's payee never serves this one; a disabled payee is never chosen.
    let other = app.create_device("alipay phone").await;
    app.create_payee(&other, "alipay", json!({})).await;
    app.heartbeat(&other).await;
    assert_problem(
        app.create_order(&merchant, &body("e")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_payee_available",
    )
    .await;
    let disabled = app.create_device("phone with disabled payee").await;
    app.create_payee(&disabled, "wechat", json!({"enabled": false}))
        .await;
    app.heartbeat(&disabled).await;
    assert_problem(
        app.create_order(&merchant, &body("f")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_payee_available",
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM orders").await, 1);
}
