//! Reading raw notifications through HTTP: texts without an amount, amounts the text
//! contradicts, apps a device may not report for, and generic forwarders with their weaker sign.

use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn result_of(app: &TestApp, device: &DeviceKeys, body: Value) -> Value {
    let response = app.notify(device, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_without_an_amount_is_read_from_its_text() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "12.00", "wechat").await;

    let result = result_of(
        &app,
        &listener.device,
        json!({"notification_id": "t-1", "channel": "wechat", "package": "com.tencent.mm",
               "title": "微信收款助手", "text": "[4条]微信收款助手: 微信支付收款12.00元(老顾客到店)"}),
    )
    .await;
    assert_eq!(result["result"], "matched");
    assert_eq!(result["order_id"], order["id"]);
    assert_eq!(
        db.text("SELECT amount::text FROM payments WHERE notification_id = 't-1'")
            .await
            .unwrap(),
        "12.00"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_that_disagrees_with_the_amount_is_kept_not_matched() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("alipay").await;
    let order = app.order(&merchant, "1430.00", "alipay").await;

    // The listener read the amount of a broadcast that restates an earlier payment.
    let broadcast = result_of(
        &app,
        &listener.device,
        json!({"notification_id": "b-1", "channel": "alipay", "amount": "1430.00",
               "package": "com.eg.android.AlipayGphone", "title": "收钱提醒",
               "text": "上一笔播报：支付宝到账 1430.00 元。收钱提醒助手正在为您服务"}),
    )
    .await;
    assert_eq!(broadcast["result"], "contradicted");
    // The text says another amount than the listener.
    let contradicted = result_of(
        &app,
        &listener.device,
        json!({"notification_id": "b-2", "channel": "alipay", "amount": "1430.00",
               "package": "com.eg.android.AlipayGphone", "title": "支付宝",
               "text": "你已成功收款1.43元"}),
    )
    .await;
    assert_eq!(contradicted["result"], "contradicted");

    assert_eq!(
        app.get_order(order["id"].as_str().unwrap()).await["status"],
        "pending"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM payments WHERE result = 'contradicted' AND reason IS NOT NULL"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_without_a_single_amount_is_422_and_kept() {
    let TestEnv { app, db } = spawn_app().await;
    let listener = app.online_listener("wechat").await;
    let body = json!({"notification_id": "u-1", "channel": "wechat", "package": "com.tencent.mm",
                      "title": "微信支付", "text": "本月累计收款共¥999.99，点击查看详情"});
    let first = app.notify(&listener.device, &body).await;
    assert_problem(
        first,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unparseable_notification",
    )
    .await;
    // Repeated: the same answer, still one payment kept for the operator.
    let again = app.notify(&listener.device, &body).await;
    assert_problem(
        again,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unparseable_notification",
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE result = 'unparsed' AND amount IS NULL")
            .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM notifications").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_apps_a_device_may_report_for_are_trusted() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "140.00", "wechat").await;

    let sms = result_of(
        &app,
        &listener.device,
        json!({"notification_id": "s-1", "channel": "wechat", "amount": "140.00",
               "package": "com.android.mms", "title": "10086", "text": "你已成功收款140.00元"}),
    )
    .await;
    assert_eq!(sms["result"], "untrusted");
    // A wechat-only device does not report Alipay either.
    let alipay = result_of(
        &app,
        &listener.device,
        json!({"notification_id": "s-2", "channel": "wechat", "amount": "140.00",
               "package": "com.eg.android.AlipayGphone", "title": "支付宝", "text": "你已成功收款140.00元"}),
    )
    .await;
    assert_eq!(alipay["result"], "untrusted");
    assert_eq!(
        app.get_order(order["id"].as_str().unwrap()).await["status"],
        "pending"
    );

    // The operator can trust another app for this device (e.g. a dedicated listener app).
    let patched = app
        .client
        .patch(app.url(&format!("/admin/devices/{}", listener.device.id)))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"allowed_packages": ["com.example.listener"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let device: Value = patched.json().await.unwrap();
    assert_eq!(device["trusted_packages"], json!(["com.example.listener"]));
    let own_app = result_of(
        &app,
        &listener.device,
        json!({"notification_id": "s-3", "channel": "wechat", "amount": "140.00",
               "package": "com.example.listener"}),
    )
    .await;
    assert_eq!(own_app["result"], "matched");

    // null restores the defaults.
    let restored: Value = app
        .client
        .patch(app.url(&format!("/admin/devices/{}", listener.device.id)))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"allowed_packages": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(restored["allowed_packages"].is_null());
    assert_eq!(
        restored["trusted_packages"],
        json!(["com.tencent.mm", "com.tencent.wework"])
    );
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE result = 'untrusted'")
            .await,
        2
    );
}

/// SmsForwarder's sign, computed here independently: URL-encoded base64 of
/// HMAC-SHA256(secret, "<timestamp>\n<secret>").
fn forwarder_sign(secret: &str, timestamp: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    url::form_urlencoded::byte_serialize(encoded.as_bytes()).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Posts a form the way SmsForwarder's webhook template does.
async fn forward_form(
    app: &TestApp,
    device: &DeviceKeys,
    fields: &[(&str, String)],
) -> reqwest::Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    app.client
        .post(app.url(&format!("/forward/{}", device.id)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Forwards a WeChat receipt `text` posted at `at` (ms) as SmsForwarder does; its answer.
async fn forward_text(app: &TestApp, device: &DeviceKeys, at: i64, text: &str) -> Value {
    forward_form(app, device, &wechat_fields(device, at, text))
        .await
        .json()
        .await
        .unwrap()
}

fn wechat_fields(device: &DeviceKeys, timestamp: i64, text: &str) -> Vec<(&'static str, String)> {
    let timestamp = timestamp.to_string();
    vec![
        ("from", "com.tencent.mm".to_string()),
        ("title", "微信支付".to_string()),
        ("org_content", text.to_string()),
        ("sign", forwarder_sign(&device.secret, &timestamp)),
        ("timestamp", timestamp),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_with_a_valid_sign_pays_an_order_and_each_sign_counts_once() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "2.50", "wechat").await;

    let fields = wechat_fields(&listener.device, now_ms(), "微信支付收款2.50元(新顾客到店)");
    let first = forward_form(&app, &listener.device, &fields).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["result"], "matched");
    assert_eq!(first["order_id"], order["id"]);

    // The forwarder retries the same request: the same answer, nothing new.
    let retry: Value = forward_form(&app, &listener.device, &fields)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(retry, first);
    // Someone reuses the captured (timestamp, sign) for another message: refused.
    let mut forged = fields.clone();
    forged[2].1 = "微信支付收款9999.00元(朋友到店)".into();
    let replayed = forward_form(&app, &listener.device, &forged).await;
    assert_problem(replayed, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Also when the captured sign is spelled another way that verifies too (decoded, a space
    // for `+`, a line break after it): one (timestamp, sign), whatever its spelling.
    let respell = |encoded: &str, how: usize| {
        let decoded = url::form_urlencoded::parse(format!("s={encoded}").as_bytes())
            .next()
            .unwrap()
            .1
            .replace(' ', "+");
        match how {
            0 => decoded,
            1 => decoded.replace('+', " "),
            _ => format!("\t{decoded}\r\n"),
        }
    };
    for how in 0..3 {
        // The spelling verifies: a new message signed so is accepted.
        let mut fresh = wechat_fields(
            &listener.device,
            now_ms() + 1 + how as i64,
            &format!("微信支付收款0.0{}元", how + 1),
        );
        fresh[3].1 = respell(&fresh[3].1, how);
        let accepted = forward_form(&app, &listener.device, &fresh).await;
        let status = accepted.status();
        let body = accepted.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "spelling {how}: {body}");
        // And the captured sign so spelled, with another message: refused.
        let mut respelled = forged.clone();
        respelled[3].1 = respell(&fields[3].1, how);
        let replayed = forward_form(&app, &listener.device, &respelled).await;
        assert_problem(replayed, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    // An old timestamp, a wrong secret, no sign: refused.
    let old = wechat_fields(
        &listener.device,
        now_ms() - 10 * 60 * 1000,
        "微信支付收款1.00元",
    );
    assert_problem(
        forward_form(&app, &listener.device, &old).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let stranger = DeviceKeys {
        id: listener.device.id.clone(),
        secret: "0".repeat(32),
    };
    let wrong = wechat_fields(&stranger, now_ms(), "微信支付收款1.00元");
    assert_problem(
        forward_form(&app, &listener.device, &wrong).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let unsigned: Vec<(&str, String)> = fields
        .iter()
        .filter(|(k, _)| *k != "sign")
        .cloned()
        .collect();
    assert_problem(
        forward_form(&app, &listener.device, &unsigned).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // The order's payment and the three messages signed with respelled signs.
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 4);
    assert_eq!(
        db.count("SELECT count(*) FROM notifications WHERE source = 'forward'")
            .await,
        12
    );
    for (result, count) in [
        ("ok", 5),
        ("replayed", 4),
        ("stale_timestamp", 1),
        ("bad_signature", 1),
        ("missing_credentials", 1),
    ] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM notifications WHERE auth_result = '{result}'"
            ))
            .await,
            count,
            "{result}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_sms_claiming_a_payment_is_stored_and_never_matched() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "140.00", "wechat").await;

    let timestamp = now_ms().to_string();
    let sms = json!({"from": "com.android.mms", "title": "10086", "content": "你已成功收款140.00元",
                     "timestamp": timestamp.parse::<i64>().unwrap(),
                     "sign": forwarder_sign(&listener.device.secret, &timestamp)});
    let response = app
        .client
        .post(app.url(&format!("/forward/{}", listener.device.id)))
        .json(&sms)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["result"],
        "untrusted"
    );
    assert_eq!(
        app.get_order(order["id"].as_str().unwrap()).await["status"],
        "pending"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE result = 'untrusted' AND package = 'com.android.mms'").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_text_forwarded_again_within_the_window_is_one_payment_and_after_it_two() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let first_order = app.order(&merchant, "5.00", "wechat").await;

    let now = now_ms();
    let text = "微信支付收款5.00元(朋友到店)";
    let first: Value = forward_text(&app, &listener.device, now - 60_000, text).await;
    assert_eq!(first["result"], "matched");
    assert_eq!(first["order_id"], first_order["id"]);
    // The paid order keeps 5.00 reserved: the next order is given 5.01.
    let second_order = app.order(&merchant, "5.00", "wechat").await;
    assert_eq!(second_order["payable_amount"], "5.01");
    // The forwarder sends the same text again a minute later (a retry with a new timestamp,
    // or the phone posting it twice): no forwarder can tell this from a second payment of 5.00,
    // so it is kept as a duplicate of the first, never credited.
    let again: Value = forward_text(&app, &listener.device, now, text).await;
    assert_ne!(again["payment_id"], first["payment_id"]);
    assert_eq!(again["result"], "duplicate");
    assert_eq!(
        db.text(&format!(
            "SELECT duplicate_of FROM payments WHERE id = '{}'",
            again["payment_id"].as_str().unwrap()
        ))
        .await
        .as_deref(),
        first["payment_id"].as_str()
    );
    assert_eq!(
        app.get_order(second_order["id"].as_str().unwrap()).await["status"],
        "pending"
    );

    // Later than the window and the grace, the same text is a payment of its own.
    db.execute("UPDATE notifications SET received_at = received_at - interval '10 minutes'")
        .await;
    db.execute("UPDATE payments SET holds_amount_until = now() - interval '1 second'")
        .await;
    db.execute(
        "UPDATE orders SET reserved_until = greatest(created_at, now() - interval '1 second') \
         WHERE status = 'paid'",
    )
    .await;
    let third_order = app.order(&merchant, "5.00", "wechat").await;
    assert_eq!(third_order["payable_amount"], "5.00");
    let later: Value = forward_text(&app, &listener.device, now_ms(), text).await;
    assert_eq!(later["result"], "matched", "{later}");
    assert_eq!(later["order_id"], third_order["id"]);
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_template_carrying_android_marks_keeps_chats_and_pays_receipts() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "3.30", "wechat").await;
    let text = "微信支付收款3.30元(朋友到店)";

    // The receipt's exact words, marked by Android as a chat in three ways: kept, unpaid.
    let started = now_ms();
    for (offset, (key, value)) in [
        ("category", "msg"),
        ("template", "android.app.Notification$MessagingStyle"),
        ("conversation", "true"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut fields = wechat_fields(&listener.device, started + offset as i64, text);
        fields.push((key, value.to_string()));
        let response = forward_form(&app, &listener.device, &fields).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{key}");
    }
    assert_eq!(
        db.count(
            "SELECT count(*) FROM payments WHERE result = 'unparsed' \
             AND reason LIKE '%a chat is never a receipt%'"
        )
        .await,
        3
    );
    assert_eq!(
        app.get_order(order["id"].as_str().unwrap()).await["status"],
        "pending"
    );

    // The same words with the marks of a notice, and the post time: paid.
    let mut fields = wechat_fields(&listener.device, started + 10, text);
    fields.push(("category", "status".into()));
    fields.push(("template", "android.app.Notification$BigTextStyle".into()));
    fields.push(("posted_at", (started + 5).to_string()));
    let paid: Value = forward_form(&app, &listener.device, &fields)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paid["result"], "matched", "{paid}");
    assert_eq!(paid["order_id"], order["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_switched_off_answers_404() {
    let TestEnv { app, db: _db } = spawn_app_with(|s| s.compat.clear()).await;
    let listener = app.online_listener("wechat").await;
    let response = forward_form(
        &app,
        &listener.device,
        &wechat_fields(&listener.device, now_ms(), "微信支付收款1.00元"),
    )
    .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_request_with_nul_characters_is_stored_and_refused_not_a_server_error() {
    let TestEnv { app, db } = spawn_app().await;
    let listener = app.online_listener("wechat").await;
    // Found by schemathesis: U+0000 in the credentials used to make the raw insert fail (500).
    let body = "timestamp=%D0%AC%00&sign=a%00b&org_content=%E5%BE%AE%00";
    let response = app
        .client
        .post(app.url(&format!("/forward/{}", listener.device.id)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let stored = db
        .count(
            "SELECT count(*) FROM notifications WHERE source = 'forward' \
             AND auth_headers->>'timestamp_ms' = 'Ь\u{FFFD}' AND auth_result = 'bad_signature'",
        )
        .await;
    assert_eq!(stored, 1, "the refused request is kept, U+0000 replaced");
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 0);
}

/// A burst of forwarder reports from one phone: every one is stored and answered, none waits on
/// another's lock of the device in the opposite order (the sign's row refers to the device, so
/// its lock of the device row must not be one a later `FOR UPDATE` would have to upgrade).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_forwarded_payments_from_one_phone_is_stored_whole() {
    let TestEnv { app, db } = spawn_app().await;
    let listener = app.online_listener("wechat").await;
    let base = now_ms();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let fields = wechat_fields(
            &listener.device,
            base + i,
            &format!("微信支付收款3.{i:02}元"),
        );
        let (app, device) = (app.clone(), listener.device.clone());
        tasks.push(tokio::spawn(async move {
            forward_form(&app, &device, &fields).await.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(db.count("SELECT count(*) FROM notifications").await, 16);
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 16);
    assert_eq!(db.deadlocks().await, 0, "Postgres detected a deadlock");
}

/// A forwarder's report kept for the operator (here `untrusted`: the device was not trusted
/// for the app yet) paid nothing, so the same text sent again within the window, once the
/// device is trusted for it, is the payment and pays the order; a copy after that is its
/// duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_after_a_report_that_paid_nothing_pays_once() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "11.00", "wechat").await;
    assert_eq!(order["payable_amount"], "11.00");
    let forward =
        |at: i64| forward_text(&app, &listener.device, at, "微信支付收款11.00元(朋友到店)");
    let now = now_ms();

    app.allow_packages(&listener.device.id, json!(["com.example.listener"]))
        .await;
    let first = forward(now).await;
    assert_eq!(first["result"], "untrusted", "{first}");
    assert_eq!(
        app.get_order(order["id"].as_str().unwrap()).await["status"],
        "pending"
    );

    app.allow_packages(&listener.device.id, Value::Null).await;
    let second = forward(now + 1000).await;
    assert_eq!(second["result"], "matched", "{second}");
    assert_eq!(second["order_id"], order["id"], "{second}");
    let third = forward(now + 2000).await;
    assert_eq!(third["result"], "duplicate", "{third}");
    assert_eq!(third["duplicate_of"], second["payment_id"], "{third}");

    // The untrusted report is that payment too: the operator assigns it to another order only
    // when the payer paid twice.
    let next = app.order(&merchant, "11.00", "wechat").await;
    assign_only_as_a_second_payment(&app, &first, &next, &order).await;
}

/// The same text a day apart is two payments: a withheld report whose reading retention has
/// since cleared is compared with the duplicate window (not any time), so an earlier payment of
/// the same amount that paid an order does not stop the operator assigning it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withheld_report_is_compared_within_the_window_once_its_reading_is_cleared() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let text = "微信支付收款12.00元(朋友到店)";
    let yesterday = app.order(&merchant, "12.00", "wechat").await;
    let paid: Value = forward_text(&app, &listener.device, now_ms(), text).await;
    assert_eq!(paid["order_id"], yesterday["id"], "{paid}");
    db.execute("UPDATE notifications SET received_at = received_at - interval '1 day'")
        .await;
    end_reservation(&db, yesterday["id"].as_str().unwrap()).await;

    app.allow_packages(&listener.device.id, json!(["com.example.listener"]))
        .await;
    let withheld: Value = forward_text(&app, &listener.device, now_ms(), text).await;
    assert_eq!(withheld["result"], "untrusted", "{withheld}");
    db.execute(&format!(
        "UPDATE notifications SET reading = NULL WHERE payment_id = '{}'",
        withheld["payment_id"].as_str().unwrap()
    ))
    .await;
    let today = app.order(&merchant, "12.00", "wechat").await;
    let assigned = app
        .admin_post(
            &format!(
                "/admin/payments/{}/assign",
                withheld["payment_id"].as_str().unwrap()
            ),
            &json!({"order_id": today["id"], "accept_differences": true}),
        )
        .await;
    let status = assigned.status();
    let body = assigned.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A service with a late-payment grace of 60 s and a duplicate window of 600 s, a merchant and
/// an online WeChat listener.
async fn a_minutes_grace() -> (TestEnv, MerchantKeys, Listener) {
    let env = spawn_app_with(|s| {
        s.late_payment_grace = std::time::Duration::from_secs(60);
        s.duplicate_window = std::time::Duration::from_secs(600);
    })
    .await;
    let merchant = env.app.create_merchant("shop").await;
    let listener = env.app.online_listener("wechat").await;
    (env, merchant, listener)
}

/// Makes `order_id` `order_secs` older and every report so far `reports_secs` older, in one
/// transaction.
async fn age_order_and_reports(db: &TestDb, order_id: &str, order_secs: i64, reports_secs: i64) {
    db.client()
        .await
        .batch_execute(&format!(
            "BEGIN; {}; UPDATE notifications \
                           SET received_at = received_at - interval '{reports_secs} seconds'; \
             COMMIT",
            age_order_sql(order_id, order_secs)
        ))
        .await
        .unwrap();
}

/// Found by a payer's attack: the same-payment key is made of the normalised text, so a chat
/// from a look-alike sender (`微信⽀付`, with the Kangxi radical ⽀) copying a receipt, which the
/// reader refuses, shares the key of that receipt. Sent while the payer's own order held the
/// amount, it moved the next customer's receipt back to that order once it had expired: the
/// payer's order was paid with the customer's money.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_chat_sharing_a_receipts_key_does_not_move_it_back_to_another_order() {
    let (TestEnv { app, db }, merchant, listener) = a_minutes_grace().await;
    let payers = app.order(&merchant, "5.00", "wechat").await;
    let payers_id = payers["id"].as_str().unwrap();
    let text = "微信支付收款5.00元(朋友到店)";
    let now = now_ms();

    let mut chat = wechat_fields(&listener.device, now, text);
    chat[1].1 = "微信\u{2F40}付".to_string();
    let refused = forward_form(&app, &listener.device, &chat).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE result = 'unparsed'")
            .await,
        1
    );
    // The chat came 150 s ago, while the payer's order (made 400 s ago: expired 100 s ago,
    // reserved until 40 s ago) held 5.00.
    age_order_and_reports(&db, payers_id, 400, 150).await;
    let customers = app.order(&merchant, "5.00", "wechat").await;
    assert_eq!(customers["payable_amount"], "5.00");

    let paid = forward_text(&app, &listener.device, now + 1000, text).await;
    assert_eq!(paid["result"], "matched", "{paid}");
    assert_eq!(paid["order_id"], customers["id"], "{paid}");
    assert_ne!(app.get_order(payers_id).await["status"], "paid");
}

const FIVE: &str = "微信支付收款5.00元(朋友到店)";

/// A forwarder's first report of a payment of 5.00, kept (`untrusted`: the device was not
/// trusted for the app yet, and is now), which came 400 s ago while the old order (made 500 s
/// ago: expired 200 s ago, reserved until 140 s ago) was pending; the new order that has since
/// taken 5.00; when the forwarder sends the text again (ms, [`KeptThenTaken::send_again`]).
struct KeptThenTaken {
    env: TestEnv,
    listener: Listener,
    old: Value,
    new: Value,
    again_at: i64,
}

impl KeptThenTaken {
    /// The forwarder sends the text again; its answer.
    async fn send_again(&self) -> Value {
        forward_text(&self.env.app, &self.listener.device, self.again_at, FIVE).await
    }
}

async fn kept_then_taken() -> KeptThenTaken {
    let (env, merchant, listener) = a_minutes_grace().await;
    let app = &env.app;
    let old = app.order(&merchant, "5.00", "wechat").await;
    let now = now_ms();
    app.allow_packages(&listener.device.id, json!(["com.example.listener"]))
        .await;
    let first = forward_text(app, &listener.device, now, FIVE).await;
    assert_eq!(first["result"], "untrusted", "{first}");
    app.allow_packages(&listener.device.id, Value::Null).await;
    age_order_and_reports(&env.db, old["id"].as_str().unwrap(), 500, 400).await;
    let new = app.order(&merchant, "5.00", "wechat").await;
    assert_eq!(new["payable_amount"], "5.00");
    KeptThenTaken {
        env,
        listener,
        old,
        new,
        again_at: now + 1000,
    }
}

/// Found by a payer's attack: a forwarder's first report of a payment is kept (the device was
/// not trusted for the app yet); the amount goes to a new order; the same text sent again is
/// matched as of the first report's arrival and pays the old order, cutting its hold at the
/// new order's start. Another app's copy of that payment, arriving after, paid the new order
/// too: the payment that cut the hold had arrived after the new order took the amount, and
/// only payments that arrived before were counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_matched_as_of_an_earlier_arrival_contests_the_order_that_took_its_amount() {
    let scene = kept_then_taken().await;
    let (app, device) = (&scene.env.app, &scene.listener.device);

    let second = scene.send_again().await;
    assert_eq!(second["order_id"], scene.old["id"], "{second}");
    let copy = app.pay(device, "wechat", "5.00").await;
    assert_eq!(
        copy["result"], "unmatched",
        "one payment paid two orders: {copy}"
    );
    assert_eq!(
        app.get_order(scene.new["id"].as_str().unwrap()).await["status"],
        "pending"
    );
}

/// Found by review: a forwarder's first report of a payment is kept (the device was not
/// trusted for the app yet), so it holds nothing; the amount goes to a new order, which another
/// app's copy of the payment pays; the same text sent again, once the device is trusted, is
/// matched as of the first report's arrival and paid the old order too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_matched_as_of_an_earlier_arrival_pays_nothing_a_later_payment_may_have_paid() {
    let scene = kept_then_taken().await;
    let (app, device) = (&scene.env.app, &scene.listener.device);
    let copy = app.pay(device, "wechat", "5.00").await;
    assert_eq!(copy["order_id"], scene.new["id"], "{copy}");

    let again = scene.send_again().await;
    assert_eq!(
        again["result"], "unmatched",
        "one payment paid two orders: {again}"
    );
    assert_ne!(
        app.get_order(scene.old["id"].as_str().unwrap()).await["status"],
        "paid"
    );
    let reason = scene
        .env
        .db
        .text(&format!(
            "SELECT reason FROM payments WHERE id = '{}'",
            again["payment_id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    let named = format!("payment {}", copy["payment_id"].as_str().unwrap());
    assert!(reason.contains(&named), "{reason}");
}
