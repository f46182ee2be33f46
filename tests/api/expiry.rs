//! Expiry and the late-payment grace: an expired order keeps its amount through the grace, can
//! still be paid (late) within it, and frees the amount after it. Time passes by moving an
//! order's timestamps into the past; every decision is the database clock's.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

const GRACE_SECS: u64 = 60;

async fn status_in_db(db: &TestDb, id: &str) -> String {
    db.text(&format!("SELECT status FROM orders WHERE id = '{id}'"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_orders_amount_is_quarantined_and_a_payment_within_the_grace_pays_it_late() {
    let TestEnv { app, db } = spawn_app_with(|s| {
        s.late_payment_grace = Duration::from_secs(GRACE_SECS);
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "8.80", "wechat").await;
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(order["payable_amount"], "8.80");

    // 301 s later: past its expiry (300 s), within the grace.
    age_order(&db, &id, 301).await;
    // The sweep expires it without anyone asking.
    assert!(
        eventually(Duration::from_secs(5), || async {
            status_in_db(&db, &id).await == "expired"
        })
        .await,
        "the sweep did not expire the order"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM events WHERE order_id = '{id}' AND type = 'order.expired'"
        ))
        .await,
        1
    );

    // Its amount is not handed out again within the grace.
    let next = app.order(&merchant, "8.80", "wechat").await;
    assert_eq!(next["payable_amount"], "8.81");

    // A payment of it within the grace pays the expired order, late.
    let result = app.pay(&listener.device, "wechat", "8.80").await;
    assert_eq!(result["result"], "matched");
    assert_eq!(result["order_id"], id.as_str());
    let paid = app.get_order(&id).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["paid_late"], true);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM events WHERE order_id = '{id}'"
        ))
        .await,
        2,
        "order.expired then order.paid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_the_amount_is_free_again_and_pays_the_new_order() {
    // No sweep during this test: the allocation must see the reservation end by itself.
    let TestEnv { app, db } = spawn_app_with(|s| {
        s.late_payment_grace = Duration::from_secs(GRACE_SECS);
        s.sweep_interval = Duration::from_secs(60);
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let old = app.order(&merchant, "6.66", "wechat").await;
    let old_id = old["id"].as_str().unwrap().to_string();

    // Past expiry and grace.
    age_order(&db, &old_id, 300 + GRACE_SECS as i64 + 1).await;
    let new = app.order(&merchant, "6.66", "wechat").await;
    assert_eq!(new["payable_amount"], "6.66", "the amount is free again");

    let result = app.pay(&listener.device, "wechat", "6.66").await;
    assert_eq!(result["order_id"], new["id"]);
    assert_eq!(app.get_order(&old_id).await["status"], "expired");
    assert_eq!(
        app.get_order(new["id"].as_str().unwrap()).await["paid_late"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_after_the_grace_is_kept_unmatched() {
    let TestEnv { app, db } = spawn_app_with(|s| {
        s.late_payment_grace = Duration::from_secs(GRACE_SECS);
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "4.00", "wechat").await;
    let id = order["id"].as_str().unwrap().to_string();
    age_order(&db, &id, 300 + GRACE_SECS as i64 + 1).await;

    let result = app.pay(&listener.device, "wechat", "4.00").await;
    assert_eq!(result["result"], "unmatched");
    assert_eq!(app.get_order(&id).await["status"], "expired");
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE result = 'unmatched' AND amount = 4.00")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_expired_as_soon_as_the_expiry_passes() {
    // No sweep during this test: the read itself must expire the order.
    let TestEnv { app, db } = spawn_app_with(|s| s.sweep_interval = Duration::from_secs(60)).await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "3.30", "wechat").await;
    let id = order["id"].as_str().unwrap().to_string();
    age_order(&db, &id, 301).await;

    assert_eq!(app.get_order(&id).await["status"], "expired");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM events WHERE order_id = '{id}' AND type = 'order.expired'"
        ))
        .await,
        1
    );
    // Closing an expired order is refused.
    let response = app.close_order(&merchant, &id).await;
    assert_problem(response, StatusCode::CONFLICT, "invalid_state").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_reports_the_expiry_when_it_happens() {
    let TestEnv { app, db } = spawn_app_with(|s| s.sweep_interval = Duration::from_secs(60)).await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "3.00", "wechat").await;
    let id = order["id"].as_str().unwrap().to_string();
    // Expires in about a second.
    age_order(&db, &id, 299).await;

    let started = std::time::Instant::now();
    let answer: serde_json::Value = app
        .client
        .get(app.url(&format!("/orders/{id}?wait=10")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "expired");
    // At the expiry, not at the end of the wait.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_of_a_closed_orders_amount_within_the_grace_is_kept_unmatched() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "7.00", "wechat").await;
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.close_order(&merchant, &id).await.status(),
        StatusCode::OK
    );

    // Closed, its amount stays reserved through the grace: no new order gets it...
    assert_eq!(
        app.order(&merchant, "7.00", "wechat").await["payable_amount"],
        "7.01"
    );
    // ...and a payment of it credits nothing.
    let result = app.pay(&listener.device, "wechat", "7.00").await;
    assert_eq!(result["result"], "unmatched");
    assert_eq!(app.get_order(&id).await["status"], "closed");
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE type = 'order.paid'")
            .await,
        0
    );

    // A paid order cannot be closed.
    let paid = app.order(&merchant, "7.50", "wechat").await;
    app.pay(&listener.device, "wechat", "7.50").await;
    let response = app
        .close_order(&merchant, paid["id"].as_str().unwrap())
        .await;
    assert_problem(response, StatusCode::CONFLICT, "invalid_state").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_while_another_transaction_expires_the_order_answers_expired() {
    // No sweep of the instance's own: the test's session plays it.
    let TestEnv { app, db } =
        spawn_app_with(|s| s.sweep_interval = Duration::from_secs(3600)).await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "6.00", "wechat").await;
    let id = order["id"].as_str().unwrap().to_string();
    age_order(&db, &id, 301).await;

    // A sweep (of another instance) is expiring it right now and has not committed yet.
    let sweep = db.client().await;
    sweep.batch_execute("BEGIN").await.unwrap();
    sweep
        .execute(
            "UPDATE orders SET status = 'expired' WHERE id = $1 AND status = 'pending'",
            &[&id],
        )
        .await
        .unwrap();
    let reading = {
        let (app, id) = (app.clone(), id.clone());
        tokio::spawn(async move { app.get_order(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    sweep.batch_execute("COMMIT").await.unwrap();
    // The reader waited for the sweep's decision instead of answering a stale `pending`.
    assert_eq!(reading.await.unwrap()["status"], "expired");
}
