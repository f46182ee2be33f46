//! Retention (`SOLOPAY_RETENTION_DAYS`): old history goes, money and what is still needed stay,
//! and a notification re-sent after its raw row was cleared is answered as before.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use solopay::config::Settings;

use crate::helpers::{
    DeviceKeys, MerchantKeys, TestApp, TestDb, TestEnv, age_order, eventually, free_port, migrate,
    solopay, spawn_app_with, spawn_instance, temp_dir,
};
use crate::receiver::{Answer, Receiver};

const DAY: u64 = 86_400;

/// Webhooks to this machine; a failed attempt is retried only after an hour, so that a failing
/// delivery stays `pending` (retrying) for the whole test.
fn local_webhooks_retried_late(settings: &mut Settings) {
    settings.allow_private_webhooks = true;
    settings.webhook_retry_schedule = vec![Duration::from_secs(3600); 7];
    settings.webhook_poll_interval = Duration::from_millis(100);
}

/// A WeChat receipt as a listener that sends the post time reports it.
fn receipt(notification_id: &str, amount: &str, posted_at: &str) -> Value {
    json!({
        "notification_id": notification_id,
        "channel": "wechat",
        "amount": amount,
        "package": "com.tencent.mm",
        "title": "微信支付",
        "text": format!("微信支付收款{amount}元(朋友到店)"),
        "posted_at": posted_at,
    })
}

async fn report(app: &TestApp, device: &DeviceKeys, body: &Value) -> Value {
    let response = app.notify(device, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// An order of `amount` paid by a listener that sends only the amount; its id.
async fn paid_order(
    app: &TestApp,
    merchant: &MerchantKeys,
    device: &DeviceKeys,
    amount: &str,
) -> String {
    let order = app.order(merchant, amount, "wechat").await;
    let paid = app.pay(device, "wechat", amount).await;
    assert_eq!(paid["order_id"], order["id"], "{paid}");
    order["id"].as_str().unwrap().to_string()
}

async fn admin_json(app: &TestApp, path: &str) -> Value {
    let response = app.admin_get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

/// Moves everything recorded about `order_id` (the order, its payment and raw notifications,
/// events, deliveries and attempts) `days` into the past.
async fn age_history_of(db: &TestDb, order_id: &str, days: u64) {
    let secs = i64::try_from(days * DAY).unwrap();
    age_order(db, order_id, secs).await;
    let by = format!("interval '{days} days'");
    for statement in [
        format!("UPDATE orders SET paid_at = paid_at - {by} WHERE id = '{order_id}'"),
        format!(
            "UPDATE notifications SET received_at = received_at - {by} \
             WHERE payment_id IN (SELECT id FROM payments WHERE order_id = '{order_id}')"
        ),
        format!("UPDATE payments SET created_at = created_at - {by} WHERE order_id = '{order_id}'"),
        format!("UPDATE events SET created_at = created_at - {by} WHERE order_id = '{order_id}'"),
        format!(
            "UPDATE webhook_attempts SET started_at = started_at - {by} WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE order_id = '{order_id}')"
        ),
        format!(
            "UPDATE webhook_deliveries SET created_at = created_at - {by}, \
                    completed_at = completed_at - {by} WHERE order_id = '{order_id}'"
        ),
    ] {
        db.execute(&statement).await;
    }
}

async fn count_where(db: &TestDb, table: &str, condition: &str) -> i64 {
    db.count(&format!("SELECT count(*) FROM {table} WHERE {condition}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_history_but_never_money_and_old_notifications_stay_duplicates() {
    let shop = Receiver::start().await;
    let broken_shop = Receiver::start().await;
    broken_shop.answer_usually(Answer::status(500));
    let TestEnv { app, db } = spawn_app_with(local_webhooks_retried_late).await;
    let merchant = app.merchant_with_webhooks(&shop.url()).await;
    let broken = app.merchant_with_webhooks(&broken_shop.url()).await;
    let listener = app.online_listener("wechat").await;
    let device = &listener.device;

    // An old order paid by a listener that sends the post time, the same notification sent
    // again (a second raw row, no payment of its own), and a forged request.
    let old = app.order(&merchant, "10.00", "wechat").await;
    let old_id = old["id"].as_str().unwrap().to_string();
    // Seen once the order held the amount (a payment seen before is not the order's).
    let posted_at = chrono::Utc::now().to_rfc3339();
    let old_receipt = receipt("old-receipt", "10.00", &posted_at);
    let paid = report(&app, device, &old_receipt).await;
    assert_eq!(paid["result"], "matched", "{paid}");
    assert_eq!(paid["order_id"], old["id"]);
    let old_payment = paid["payment_id"].as_str().unwrap().to_string();
    assert_eq!(report(&app, device, &old_receipt).await, paid);
    let forged = app
        .client
        .post(app.url("/notify"))
        .header("content-type", "application/json")
        .header("X-Solopay-Device", &device.id)
        .header(
            "X-Solopay-Timestamp",
            crate::helpers::now_unix().to_string(),
        )
        .header("X-Solopay-Signature", format!("v1={}", "0".repeat(64)))
        .body(receipt("forged", "10.00", &posted_at).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // Old orders of a shop whose endpoint fails: one delivery still retrying, one failed for
    // good (retries spent); the operator needs both, with their attempts.
    let retrying_id = paid_order(&app, &broken, device, "11.00").await;
    let failed_id = paid_order(&app, &broken, device, "12.00").await;

    // A recent order, paid today.
    let recent_id = paid_order(&app, &merchant, device, "13.00").await;

    // An operator action on the old order's history: the audit log keeps it whatever its age.
    let kept_for_operator = app.order(&merchant, "14.00", "wechat").await;
    let kept_id = kept_for_operator["id"].as_str().unwrap().to_string();
    let marked = app
        .admin_post(
            &format!("/admin/orders/{kept_id}/mark-paid"),
            &json!({"note": "paid in cash"}),
        )
        .await;
    assert_eq!(marked.status(), StatusCode::OK);

    // Every first attempt is made: the good shop's succeed, the broken shop's wait to retry.
    let attempted = eventually(Duration::from_secs(20), || {
        let db = &db;
        async move {
            db.count(
                "SELECT count(*) FROM webhook_deliveries \
                 WHERE attempts >= 1 AND leased_until IS NULL \
                   AND (status = 'succeeded' OR retry_step >= 1)",
            )
            .await
                == 5
        }
    })
    .await;
    assert!(attempted, "the first attempts were not all made");
    db.execute(&format!(
        "UPDATE webhook_deliveries SET status = 'failed', completed_at = now() \
         WHERE order_id = '{failed_id}'"
    ))
    .await;

    // Forty days go by for the old orders; the forged request and the repeat are as old.
    for order_id in [&old_id, &retrying_id, &failed_id, &kept_id] {
        age_history_of(&db, order_id, 40).await;
    }
    db.execute(
        "UPDATE notifications SET received_at = now() - interval '40 days' \
         WHERE payment_id IS NULL",
    )
    .await;
    db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        .await;
    db.execute("UPDATE audit_log SET created_at = created_at - interval '40 days'")
        .await;
    db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        .await;

    let old_raw_rows = count_where(
        &db,
        "notifications",
        "received_at < now() - interval '30 days'",
    )
    .await;
    assert_eq!(
        old_raw_rows, 5,
        "the receipt, its repeat, the forged request and two more old payments"
    );
    let orders = db.count("SELECT count(*) FROM orders").await;
    let payments = db.count("SELECT count(*) FROM payments").await;
    let audit = db.count("SELECT count(*) FROM audit_log").await;
    let recent_history = db
        .count(&format!(
            "SELECT (SELECT count(*) FROM notifications WHERE received_at > now() - interval '1 day') \
                  + (SELECT count(*) FROM events WHERE order_id = '{recent_id}') \
                  + (SELECT count(*) FROM webhook_deliveries WHERE order_id = '{recent_id}') \
                  + (SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d \
                     ON d.id = a.delivery_id WHERE d.order_id = '{recent_id}')"
        ))
        .await;
    let kept_webhook_history = db
        .count(&format!(
            "SELECT (SELECT count(*) FROM events WHERE order_id IN ('{retrying_id}', '{failed_id}')) \
                  + (SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d \
                     ON d.id = a.delivery_id WHERE d.order_id IN ('{retrying_id}', '{failed_id}'))"
        ))
        .await;
    assert_eq!(kept_webhook_history, 4);

    // Two instances keep 30 days; their sweeps share the work.
    for _ in 0..2 {
        spawn_instance(&db, |settings| {
            local_webhooks_retried_late(settings);
            settings.retention = Some(Duration::from_secs(30 * DAY));
        })
        .await;
    }
    let swept = eventually(Duration::from_secs(30), || {
        let db = &db;
        let old_id = &old_id;
        async move {
            count_where(
                db,
                "notifications",
                "received_at < now() - interval '30 days' AND compacted_at IS NULL",
            )
            .await
                == 0
                && count_where(db, "events", &format!("order_id = '{old_id}'")).await == 0
        }
    })
    .await;
    assert!(swept, "the old history was not swept");

    // Money and the audit log are whole, and so is what is recent or still needed.
    assert_eq!(db.count("SELECT count(*) FROM orders").await, orders);
    assert_eq!(db.count("SELECT count(*) FROM payments").await, payments);
    assert_eq!(db.count("SELECT count(*) FROM audit_log").await, audit);
    assert_eq!(
        db.count(&format!(
            "SELECT (SELECT count(*) FROM notifications WHERE received_at > now() - interval '1 day') \
                  + (SELECT count(*) FROM events WHERE order_id = '{recent_id}') \
                  + (SELECT count(*) FROM webhook_deliveries WHERE order_id = '{recent_id}') \
                  + (SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d \
                     ON d.id = a.delivery_id WHERE d.order_id = '{recent_id}')"
        ))
        .await,
        recent_history
    );
    assert_eq!(
        db.count(&format!(
            "SELECT (SELECT count(*) FROM events WHERE order_id IN ('{retrying_id}', '{failed_id}')) \
                  + (SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d \
                     ON d.id = a.delivery_id WHERE d.order_id IN ('{retrying_id}', '{failed_id}'))"
        ))
        .await,
        kept_webhook_history,
        "a failing delivery lost its event or attempts"
    );
    // The raw rows no payment references are gone; each payment's own is kept, compacted.
    assert_eq!(
        count_where(&db, "notifications", "auth_result <> 'ok'").await,
        0
    );
    assert_eq!(
        count_where(
            &db,
            "notifications n",
            "NOT EXISTS (SELECT 1 FROM payments p WHERE p.notification_row = n.id) \
             AND received_at < now() - interval '30 days'"
        )
        .await,
        0
    );
    assert_eq!(
        count_where(
            &db,
            "notifications n JOIN payments p ON p.notification_row = n.id",
            &format!(
                "p.id = '{old_payment}' AND n.compacted_at IS NOT NULL AND n.body = ''::bytea \
                 AND n.same_payment_key IS NOT NULL"
            )
        )
        .await,
        1
    );
    // The old order's webhook history is gone with its event.
    assert_eq!(
        count_where(&db, "webhook_deliveries", &format!("order_id = '{old_id}'")).await,
        0
    );

    // The payer's page and the operator still answer for the old order.
    let page = app.get_order(&old_id).await;
    assert_eq!(page["status"], "paid");
    let detail = admin_json(&app, &format!("/admin/orders/{old_id}")).await;
    assert_eq!(detail["status"], "paid");
    assert_eq!(detail["payments"][0]["id"], old_payment.as_str());
    assert_eq!(detail["events"], json!([]));
    assert_eq!(detail["webhook_deliveries"], json!([]));
    let payment = admin_json(&app, "/admin/payments?limit=100").await;
    assert!(
        payment["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == old_payment.as_str() && p["order_id"] == old["id"]),
        "{payment}"
    );
    let retrying_detail = admin_json(&app, &format!("/admin/orders/{retrying_id}")).await;
    let delivery = retrying_detail["webhook_deliveries"][0]["id"]
        .as_str()
        .unwrap();
    let delivery = admin_json(&app, &format!("/admin/webhooks/{delivery}")).await;
    assert_eq!(delivery["status"], "pending");
    assert_eq!(
        delivery["attempt_log"].as_array().map(Vec::len),
        Some(1),
        "{delivery}"
    );

    // A payer wants the old payment credited again: a new order holds its amount, and the old
    // notification comes back with a fresh signature, under its own id and under a new one.
    let bait = app.order(&merchant, "10.00", "wechat").await;
    assert_eq!(bait["payable_amount"], "10.00");
    let again = report(&app, device, &old_receipt).await;
    assert_eq!(
        again, paid,
        "the old notification id is answered as the first time"
    );
    let renamed = report(
        &app,
        device,
        &receipt("old-receipt-renamed", "10.00", &posted_at),
    )
    .await;
    assert_eq!(renamed["result"], "duplicate", "{renamed}");
    assert_eq!(renamed["duplicate_of"], old_payment.as_str());
    assert_eq!(
        app.get_order(bait["id"].as_str().unwrap()).await["status"],
        "pending"
    );
    assert_eq!(
        count_where(&db, "payments", "result = 'matched'").await,
        4,
        "the old payment was credited twice"
    );
    assert_eq!(
        count_where(&db, "events", &format!("order_id = '{old_id}'")).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_retention_setting_stops_the_start_and_names_it() {
    let db = TestDb::fresh();
    let dir = temp_dir();
    for bad in ["0", "-30", "thirty", "1.5", "3651"] {
        let output = solopay(&db, &dir, free_port())
            .env("SOLOPAY_RETENTION_DAYS", bad)
            .arg("serve")
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("SOLOPAY_RETENTION_DAYS") && stderr.contains("from 1 to 3650"),
            "{bad}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_keeps_unprocessed_notifications_and_unsent_alerts_and_deletes_digests_last() {
    // A migrated database and no service: the passes are run here, one at a time, with no
    // sweep of a service finishing the stored notification first.
    let db = TestDb::fresh();
    migrate(&db).await;
    let old = "now() - interval '40 days'";
    for statement in [
        // Stored, never processed (its request died): the sweep must finish it first.
        format!(
            "INSERT INTO notifications (received_at, source, device_id, auth_result, \
                                        auth_headers, body, body_length, body_sha256) \
             VALUES ({old}, 'notify', 'dev_phone', 'ok', '{{}}', '\\x7b7d', 2, '\\x00')"
        ),
        "INSERT INTO alert_channels (id, kind, name, config) \
         VALUES ('ach_t', 'telegram', 'owner', '{}')"
            .to_string(),
        format!(
            "INSERT INTO alerts (id, kind, subject, title, body, created_at, digest_id) VALUES \
             ('alr_sent', 'device_offline', 'd', 't', 'b', {old}, NULL), \
             ('alr_unsent', 'device_offline', 'd', 't', 'b', {old}, NULL), \
             ('alr_digest', 'digest', 'd', 't', 'b', {old}, NULL), \
             ('alr_member', 'payment_kept', 'p', 't', 'b', {old}, 'alr_digest'), \
             ('alr_recent', 'device_offline', 'd', 't', 'b', now(), NULL)"
        ),
        "INSERT INTO alert_deliveries (alert_id, channel_id, status, attempts, completed_at) VALUES \
         ('alr_sent', 'ach_t', 'succeeded', 1, now() - interval '40 days'), \
         ('alr_unsent', 'ach_t', 'pending', 3, NULL), \
         ('alr_digest', 'ach_t', 'failed', 5, now() - interval '40 days'), \
         ('alr_recent', 'ach_t', 'succeeded', 1, now())"
            .to_string(),
    ] {
        db.execute(&statement).await;
    }

    let pass = || {
        let url = db.url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = solopay::db::startup::establish(&url).unwrap();
                solopay::retention::run_pass(&mut conn, Duration::from_secs(30 * DAY)).unwrap()
            })
            .await
            .unwrap()
        }
    };
    let alerts = || async {
        let client = db.client().await;
        let rows = client
            .query("SELECT id FROM alerts ORDER BY id", &[])
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
    };

    let first = pass().await;
    assert_eq!((first.alerts, first.alert_deliveries), (2, 1), "{first:?}");
    assert_eq!(
        first.notifications_deleted + first.notifications_compacted,
        0
    );
    assert!(!first.backlog);
    assert_eq!(
        alerts().await,
        ["alr_digest", "alr_recent", "alr_unsent"],
        "the sent alert and the digest's member go first"
    );
    let second = pass().await;
    assert_eq!(
        (second.alerts, second.alert_deliveries),
        (1, 1),
        "{second:?}"
    );
    assert_eq!(alerts().await, ["alr_recent", "alr_unsent"]);
    assert_eq!(
        count_where(
            &db,
            "notifications",
            "payment_id IS NULL AND rejection IS NULL"
        )
        .await,
        1,
        "an unprocessed notification was deleted"
    );
    assert_eq!(pass().await.rows(), 0);
}
