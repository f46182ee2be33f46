//! Money at the edge, through HTTP: only a provably new incoming payment is credited. Chat
//! messages, payer-chosen names, refunds, failures, summaries, look-alike senders, full-width
//! amounts, two payments in one text, listener amounts the text does not back, copies of one
//! payment under other ids, and payments that arrived before their order held the amount are
//! all kept for the operator (with the result and reason shown in `/admin/payments`), never
//! credited.

use std::time::Duration;

use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const ALIPAY: &str = "com.eg.android.AlipayGphone";
const WECHAT: &str = "com.tencent.mm";

/// A raw notification from `package` without a listener amount.
fn raw(id: &str, channel: &str, package: &str, title: &str, text: &str) -> Value {
    json!({"notification_id": id, "channel": channel, "package": package,
           "title": title, "text": text})
}

/// A WeChat payment of `amount` as a listener that sends the notification's post time reports it.
fn wechat_posted(id: &str, amount: &str, posted_at: &str) -> Value {
    let mut body = raw(
        id,
        "wechat",
        WECHAT,
        "微信支付",
        &format!("微信支付收款{amount}元(朋友到店)"),
    );
    body["posted_at"] = json!(posted_at);
    body
}

/// The same with the amount the listener read.
fn raw_with_amount(
    id: &str,
    channel: &str,
    amount: &str,
    package: &str,
    title: &str,
    text: &str,
) -> Value {
    let mut body = raw(id, channel, package, title, text);
    body["amount"] = json!(amount);
    body
}

/// Sends a notification; returns its status and answer.
async fn report(app: &TestApp, device: &DeviceKeys, body: &Value) -> (StatusCode, Value) {
    let response = app.notify(device, body).await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The payment a device reported under `notification_id`, as `/admin/payments` shows it.
async fn admin_payment(app: &TestApp, notification_id: &str) -> Value {
    let page: Value = app
        .admin_get("/admin/payments?limit=100")
        .await
        .json()
        .await
        .unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["notification_id"] == notification_id)
        .cloned()
        .unwrap_or_else(|| panic!("no payment for {notification_id}: {page}"))
}

/// Asserts that a report was kept with `result`, a reason containing `why`, and no order.
async fn assert_kept(app: &TestApp, notification_id: &str, result: &str, why: &str) -> Value {
    let payment = admin_payment(app, notification_id).await;
    assert_eq!(payment["result"], result, "{payment}");
    assert!(payment["order_id"].is_null(), "{payment}");
    let reason = payment["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(why),
        "{notification_id}: {reason:?} lacks {why:?}"
    );
    payment
}

async fn status(app: &TestApp, order: &Value) -> String {
    app.get_order(order["id"].as_str().unwrap()).await["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_message_inside_a_payment_app_pays_nothing() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("alipay").await;
    let order = app.order(&merchant, "100.00", "alipay").await;
    assert_eq!(order["payable_amount"], "100.00");
    let device = &listener.device;

    // A payer who read the amount on the payment page writes it in a chat.
    let sentence = "我已经付款了，向你付款100.00元了，请查收";
    let cases = [
        ("chat-1", "李四", sentence, "sender"),
        (
            "chat-2",
            "支付宝通知",
            sentence,
            "not a known receipt wording",
        ),
        (
            "chat-3",
            "支付宝",
            "你好 张三通过扫码向你付款100.00元",
            "not a known receipt wording",
        ),
        (
            "chat-4",
            "支付宝通知",
            "张三通过扫码向你付款100.00元了",
            "not a known receipt wording",
        ),
        // A sentence is not a payer's name, with or without spaces and brackets.
        (
            "chat-6",
            "支付宝",
            "你好我没有通过扫码向你付款100.00元",
            "not a known receipt wording",
        ),
        (
            "chat-7",
            "支付宝通知",
            "【提醒】通过扫码向你付款100.00元",
            "not a known receipt wording",
        ),
        // An earlier payment told again.
        (
            "chat-8",
            "支付宝通知",
            "上次通过扫码向你付款100.00元",
            "a broadcast of an earlier payment",
        ),
    ];
    for (id, title, text, why) in cases {
        let (code, answer) = report(&app, device, &raw(id, "alipay", ALIPAY, title, text)).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{id}: {answer}");
        assert_eq!(answer["code"], "unparseable_notification");
        assert_kept(&app, id, "unparsed", why).await;
    }
    // With the listener's amount, the text does not back it.
    let (_, answer) = report(
        &app,
        device,
        &raw_with_amount("chat-5", "alipay", "100.00", ALIPAY, "李四", sentence),
    )
    .await;
    assert_eq!(answer["result"], "contradicted");
    assert_kept(
        &app,
        "chat-5",
        "contradicted",
        "not a recognised incoming payment",
    )
    .await;

    // A receipt's exact words from a contact named like a system sender: only the metadata
    // Android gives the listener tells it from a receipt, and then it is never one.
    let copy = "张三通过扫码向你付款100.00元";
    for (id, marks) in [
        ("meta-1", json!({"category": "msg"})),
        (
            "meta-2",
            json!({"template": "android.app.Notification$MessagingStyle"}),
        ),
        ("meta-3", json!({"conversation": true})),
    ] {
        let mut body = raw(id, "alipay", ALIPAY, "支付宝通知", copy);
        for (key, value) in marks.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (code, _) = report(&app, device, &body).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{id}");
        assert_kept(&app, id, "unparsed", "a chat is never a receipt").await;
    }
    // A receipt in the title (a nickname anyone can take) needs a notice style Android knows;
    // a style of the sender's own naming proves nothing, and neither does a second amount in
    // the promotion below it.
    for (id, template, text, why) in [
        (
            "titled-1",
            "com.example.ChatStyle",
            "已转入余额",
            "one of Android's notice styles",
        ),
        (
            "titled-2",
            "android.app.Notification$BigTextStyle",
            "已转入余额 刚又收一笔100.00",
            "not a known receipt wording",
        ),
    ] {
        let mut body = raw(id, "alipay", ALIPAY, "你已成功收款100.00元", text);
        body["template"] = json!(template);
        let (code, answer) = report(&app, device, &body).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{id}: {answer}");
        assert_kept(&app, id, "unparsed", why).await;
    }
    assert_eq!(status(&app, &order).await, "pending");

    // The app's own receipt, with metadata of a receipt, pays it.
    let mut receipt = raw("real-1", "alipay", ALIPAY, "支付宝通知", copy);
    receipt["category"] = json!("status");
    receipt["channel_id"] = json!("alipay_notify");
    receipt["posted_at"] = json!(chrono::Utc::now().to_rfc3339());
    let (_, answer) = report(&app, device, &receipt).await;
    assert_eq!(answer["result"], "matched", "{answer}");
    assert_eq!(status(&app, &order).await, "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_phrase_in_a_payer_chosen_name_makes_the_text_ambiguous() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("alipay").await;
    let small = app.order(&merchant, "0.01", "alipay").await;
    let large = app.order(&merchant, "100.00", "alipay").await;

    let (code, _) = report(
        &app,
        &listener.device,
        &raw(
            "nick-1",
            "alipay",
            ALIPAY,
            "支付宝通知",
            "向你付款100.00元的小王通过扫码向你付款0.01元",
        ),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let kept = assert_kept(&app, "nick-1", "ambiguous", "more than one payment amount").await;
    assert_eq!(kept["amounts_read"], json!(["100.00", "0.01"]));
    // A total in the name is not dropped in favour of the rest: the text is refused.
    let (code, _) = report(
        &app,
        &listener.device,
        &raw(
            "nick-2",
            "alipay",
            ALIPAY,
            "支付宝通知",
            "累计收款100.00元小王通过扫码向你付款0.01元",
        ),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_kept(&app, "nick-2", "unparsed", "a total or summary").await;
    assert_eq!(status(&app, &small).await, "pending");
    assert_eq!(status(&app, &large).await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_failures_reversals_withdrawals_balances_and_summaries_pay_nothing() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "100.00", "wechat").await;

    let cases = [
        (
            "微信支付",
            "微信支付收款100.00元(朋友到店)已退款",
            "a refund",
        ),
        ("微信支付", "付款100.00元失败，资金已原路退回", "a refund"),
        (
            "微信支付",
            "收款100.00元失败",
            "a failed or unfinished payment",
        ),
        (
            "微信支付",
            "[转账]收到转账100.00元，请确认收款",
            "a failed or unfinished payment",
        ),
        ("微信支付", "微信支付收款100.00元已撤销", "a reversal"),
        ("微信收款助手", "收款单100.00元已取消", "a cancellation"),
        ("微信支付", "零钱提现100.00元", "a withdrawal"),
        ("微信支付", "[微信红包]恭喜发财，100.00元", "a red packet"),
        ("微信支付", "零钱余额¥100.00", "a balance"),
        (
            "微信支付",
            "上一笔播报：微信支付收款100.00元",
            "a broadcast",
        ),
        ("微信支付", "昨日收款共¥100.00", "a total or summary"),
        ("微信收款助手", "上月收款汇总100.00元", "a total or summary"),
        ("微信支付", "本周微信支付收款100.00元", "a total or summary"),
        ("微信支付", "去年累计收款100.00元", "a total or summary"),
    ];
    for (i, (title, text, why)) in cases.iter().enumerate() {
        let id = format!("refused-{i}");
        let (code, answer) = report(
            &app,
            &listener.device,
            &raw(&id, "wechat", WECHAT, title, text),
        )
        .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{text}: {answer}");
        assert_kept(&app, &id, "unparsed", why).await;
        // The listener read the amount from the same text: still no credit.
        let id = format!("refused-amount-{i}");
        let (_, answer) = report(
            &app,
            &listener.device,
            &raw_with_amount(&id, "wechat", "100.00", WECHAT, title, text),
        )
        .await;
        assert_eq!(answer["result"], "contradicted", "{text}: {answer}");
        assert_kept(&app, &id, "contradicted", why).await;
    }
    assert_eq!(status(&app, &order).await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_named_like_the_payment_service_pays_nothing() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "15.00", "wechat").await;

    for (id, title, text, why) in [
        (
            "group-1",
            "微信支付",
            "张三: 微信支付收款15.00元(朋友到店)",
            "\"张三\"",
        ),
        (
            "group-2",
            "微信收款助手",
            "[3条]李雷: 收款单到账15.00元",
            "\"李雷\"",
        ),
        (
            "group-3",
            "微信支付群",
            "微信支付收款15.00元(朋友到店)",
            "\"微信支付群\"",
        ),
        (
            "group-4",
            "微信支付",
            "[2条]微信收款助手: 微信支付收款15.00元(朋友到店)",
            "\"微信收款助手\"",
        ),
        // A WeChat Work group named like its collection notices, and a member named 收款通知.
        (
            "group-5",
            "对外收款",
            "收款通知：成功收款15.00元",
            "not a known receipt wording",
        ),
    ] {
        let package = if id == "group-5" {
            "com.tencent.wework"
        } else {
            WECHAT
        };
        let (code, _) = report(
            &app,
            &listener.device,
            &raw(id, "wechat", package, title, text),
        )
        .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{id}");
        assert_kept(&app, id, "unparsed", why).await;
    }
    assert_eq!(status(&app, &order).await, "pending");
    // WeChat's own stacked receipt names its own title.
    let (_, answer) = report(
        &app,
        &listener.device,
        &raw(
            "stacked",
            "wechat",
            WECHAT,
            "微信收款助手",
            "[3条]微信收款助手: 收款单到账15.00元",
        ),
    )
    .await;
    assert_eq!(answer["result"], "matched", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_width_amounts_are_read_whole_or_refused_never_cut_short() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let one = app.order(&merchant, "1.00", "wechat").await;
    let thousand = app.order(&merchant, "1000.00", "wechat").await;
    let twelve = app.order(&merchant, "12.50", "wechat").await;

    let device = &listener.device;
    // `1，000.00` used to be read as 1.00.
    let (_, answer) = report(
        &app,
        device,
        &raw(
            "wide-1",
            "wechat",
            WECHAT,
            "微信支付",
            "微信支付收款1，000.00元(朋友到店)",
        ),
    )
    .await;
    assert_eq!(answer["result"], "matched", "{answer}");
    assert_eq!(answer["order_id"], thousand["id"]);
    let (_, answer) = report(
        &app,
        device,
        &raw(
            "wide-2",
            "wechat",
            WECHAT,
            "微信支付",
            "微信支付收款１２．５０元（朋友到店）",
        ),
    )
    .await;
    assert_eq!(answer["order_id"], twelve["id"], "{answer}");
    for (id, text) in [
        ("wide-3", "微信支付收款1，00.00元(朋友到店)"),
        ("wide-4", "微信支付收款１，０.００元"),
    ] {
        let (code, _) = report(&app, device, &raw(id, "wechat", WECHAT, "微信支付", text)).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert_kept(&app, id, "unparsed", "is not a valid amount").await;
    }
    assert_eq!(status(&app, &one).await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payments_in_one_notification_are_kept_with_both_amounts_for_the_operator() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "5.00", "wechat").await;

    let text = "微信支付收款5.00元(朋友到店)\n微信支付收款5.00元(朋友到店)";
    let (code, _) = report(
        &app,
        &listener.device,
        &raw("two-1", "wechat", WECHAT, "微信支付", text),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let kept = assert_kept(&app, "two-1", "ambiguous", "more than one payment amount").await;
    assert_eq!(kept["amounts_read"], json!(["5.00", "5.00"]));
    assert_eq!(status(&app, &order).await, "pending");
    let listed: Value = app
        .admin_get("/admin/payments?result=ambiguous")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // The operator, having checked the app, assigns it.
    let response = app
        .admin_post(
            &format!("/admin/payments/{}/assign", kept["id"].as_str().unwrap()),
            &json!({"order_id": order["id"], "note": "checked in the app: one of the two"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(status(&app, &order).await, "paid");
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE order_id IS NOT NULL")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_amount_with_a_text_that_is_not_that_receipt_is_contradicted() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let orders = [
        app.order(&merchant, "200.00", "wechat").await,
        app.order(&merchant, "25.00", "wechat").await,
        app.order(&merchant, "30.00", "wechat").await,
    ];

    for (id, amount, text) in [
        ("out-1", "200.00", "你向某某转账200.00元"),
        ("out-2", "25.00", "已支付¥25.00"),
        ("out-3", "25.00", "退款到账25.00元"),
        ("out-4", "30.00", "新版本的收款提示"),
        ("out-5", "30.00", "微信支付收款30.01元(朋友到店)"),
    ] {
        let (_, answer) = report(
            &app,
            &listener.device,
            &raw_with_amount(id, "wechat", amount, WECHAT, "微信支付", text),
        )
        .await;
        assert_eq!(answer["result"], "contradicted", "{text}: {answer}");
        assert_kept(&app, id, "contradicted", "the amount says").await;
    }
    for order in &orders {
        assert_eq!(status(&app, order).await, "pending");
    }
    let listed: Value = app
        .admin_get("/admin/payments?result=contradicted")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 5);
    // An amount without any text is the listener's word: the device is trusted.
    let answer = app.pay(&listener.device, "wechat", "30.00").await;
    assert_eq!(answer["result"], "matched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_copies_of_one_payment_under_different_ids_pay_once() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "10.00", "wechat").await;

    let copies = ["copy-a", "copy-b"].map(|id| {
        let (app, device) = (app.clone(), listener.device.clone());
        tokio::spawn(async move {
            let body = raw(
                id,
                "wechat",
                WECHAT,
                "微信支付",
                "微信支付收款10.00元(朋友到店)",
            );
            report(&app, &device, &body).await.1
        })
    });
    let answers: Vec<Value> = futures_util::future::join_all(copies)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let matched: Vec<&Value> = answers
        .iter()
        .filter(|a| a["result"] == "matched")
        .collect();
    let duplicate: Vec<&Value> = answers
        .iter()
        .filter(|a| a["result"] == "duplicate")
        .collect();
    assert_eq!((matched.len(), duplicate.len()), (1, 1), "{answers:?}");
    assert_eq!(matched[0]["order_id"], order["id"]);
    assert_eq!(duplicate[0]["duplicate_of"], matched[0]["payment_id"]);
    assert_eq!(
        db.count("SELECT count(*) FROM events WHERE type = 'order.paid'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_copy_finds_the_paid_order_not_the_next_order_given_the_amount() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let first = app.order(&merchant, "10.00", "wechat").await;
    let paid = app.pay(&listener.device, "wechat", "10.00").await;
    assert_eq!(paid["order_id"], first["id"]);

    // The paid order keeps 10.00 for the grace: the next order for 10.00 is given 10.01, and
    // the phone re-posting the payment under a new id (after a restart) pays nothing.
    let next = app.order(&merchant, "10.00", "wechat").await;
    assert_eq!(next["payable_amount"], "10.01");
    let again = app.pay(&listener.device, "wechat", "10.00").await;
    assert_eq!(again["result"], "duplicate", "{again}");
    assert_eq!(again["duplicate_of"], paid["payment_id"]);
    let kept = assert_kept(
        &app,
        &db.text(&format!(
            "SELECT notification_id FROM payments WHERE id = '{}'",
            again["payment_id"].as_str().unwrap()
        ))
        .await
        .unwrap(),
        "duplicate",
        "reported again",
    )
    .await;
    assert_eq!(kept["duplicate_of"], paid["payment_id"]);
    assert_eq!(status(&app, &next).await, "pending");

    // An order the operator marked paid is the same: a payment of its amount is kept.
    let by_hand = app.order(&merchant, "20.00", "wechat").await;
    let response = app
        .admin_post(
            &format!(
                "/admin/orders/{}/mark-paid",
                by_hand["id"].as_str().unwrap()
            ),
            &json!({"note": "paid in cash"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let late = app.pay(&listener.device, "wechat", "20.00").await;
    assert_eq!(late["result"], "duplicate", "{late}");
    assert!(late.get("duplicate_of").is_none());

    // A duplicate is assignable once the operator says the payer really paid twice, and (as it
    // is another amount than the order's) that the difference is seen.
    let other = app.order(&merchant, "30.00", "wechat").await;
    let assign = |payment: &Value, second: bool, differences: bool| {
        let body = json!({"order_id": other["id"], "note": "the payer confirmed a second payment",
                          "second_payment": second, "accept_differences": differences});
        let path = format!(
            "/admin/payments/{}/assign",
            payment["payment_id"].as_str().unwrap()
        );
        let app = app.clone();
        async move { app.admin_post(&path, &body).await }
    };
    // Also the duplicate of the order paid by hand, which names no first report.
    for payment in [&again, &late] {
        assert_problem(
            assign(payment, false, true).await,
            StatusCode::CONFLICT,
            "invalid_state",
        )
        .await;
    }
    let unfit: Value = assign(&again, true, false).await.json().await.unwrap();
    assert_eq!(unfit["code"], "invalid_state");
    assert!(
        unfit["detail"]
            .as_str()
            .unwrap()
            .contains("it is 10.00, the order's payable amount is 30.00"),
        "{unfit}"
    );
    assert_eq!(status(&app, &other).await, "pending");
    assert_eq!(assign(&again, true, true).await.status(), StatusCode::OK);
    assert_eq!(status(&app, &other).await, "paid");
}

/// Two reports of one payment that paid nothing, assigned in either order: the second assign
/// credits one payment twice unless the operator says the payer paid twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_of_one_payment_are_assigned_once_unless_the_payer_paid_twice() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let posted = chrono::Utc::now().to_rfc3339();
    for (first_assigned, price) in [("first", "7.00"), ("copy", "8.00")] {
        let text = format!("微信支付收款{price}元(朋友到店)");
        let report_of = |id: String| {
            let mut body = raw(&id, "wechat", WECHAT, "微信支付", &text);
            body["posted_at"] = json!(posted);
            body
        };
        let (_, first) = report(
            &app,
            &listener.device,
            &report_of(format!("{first_assigned}-a")),
        )
        .await;
        let (_, copy) = report(
            &app,
            &listener.device,
            &report_of(format!("{first_assigned}-b")),
        )
        .await;
        assert_eq!(first["result"], "unmatched", "{first}");
        assert_eq!(copy["result"], "duplicate", "{copy}");
        let orders = [
            app.order(&merchant, price, "wechat").await,
            app.order(&merchant, price, "wechat").await,
        ];
        let assign = |payment: &Value, order: &Value, second: bool| {
            let path = format!(
                "/admin/payments/{}/assign",
                payment["payment_id"].as_str().unwrap()
            );
            let body = json!({"order_id": order["id"], "second_payment": second,
                              "accept_differences": true});
            let app = app.clone();
            async move { app.admin_post(&path, &body).await }
        };
        let (one, other) = if first_assigned == "first" {
            (&first, &copy)
        } else {
            (&copy, &first)
        };
        if first_assigned == "copy" {
            // A duplicate always needs the operator's word, even before its first report paid.
            assert_problem(
                assign(one, &orders[0], false).await,
                StatusCode::CONFLICT,
                "invalid_state",
            )
            .await;
        }
        assert_eq!(
            assign(one, &orders[0], first_assigned == "copy")
                .await
                .status(),
            StatusCode::OK
        );
        let refused: Value = assign(other, &orders[1], false).await.json().await.unwrap();
        assert_eq!(refused["code"], "invalid_state", "{refused}");
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("paid order {}", orders[0]["id"].as_str().unwrap())),
            "{refused}"
        );
        assert_eq!(status(&app, &orders[1]).await, "pending");
        assert_eq!(
            assign(other, &orders[1], true).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE order_id IS NOT NULL")
            .await,
        4
    );
}

/// A report of one Android notification withheld from matching (the device was not trusted for
/// the app that moment) after another report of it paid an order is no `duplicate`, yet the
/// same payment: the operator assigns it to the next order of that amount only if the payer
/// paid twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withheld_report_of_a_payment_that_paid_is_assigned_only_if_the_payer_paid_twice() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let posted_at = chrono::Utc::now().to_rfc3339();
    let posted = |id: &str| wechat_posted(id, "9.00", &posted_at);
    let paid = app.order(&merchant, "9.00", "wechat").await;
    let (_, matched) = report(&app, &listener.device, &posted("held-a")).await;
    assert_eq!(matched["order_id"], paid["id"], "{matched}");
    app.allow_packages(&listener.device.id, json!(["com.example.listener"]))
        .await;
    let (_, withheld) = report(&app, &listener.device, &posted("held-b")).await;
    assert_eq!(withheld["result"], "untrusted", "{withheld}");
    app.allow_packages(&listener.device.id, Value::Null).await;
    end_reservation(&db, paid["id"].as_str().unwrap()).await;
    let next = app.order(&merchant, "9.00", "wechat").await;
    assert_eq!(next["payable_amount"], "9.00");

    assign_only_as_a_second_payment(&app, &withheld, &next, &paid).await;
}

/// The operator's assign of a report and the matching of another report of the same payment
/// are decided one at a time: each waits for the lock of the payment's reports (the device and
/// the same-payment key), so the copy sees what the assign did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assign_and_the_matching_of_a_copy_of_its_payment_wait_for_each_other() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let posted_at = chrono::Utc::now().to_rfc3339();
    let posted = |id: &str| wechat_posted(id, "9.00", &posted_at);
    app.allow_packages(&listener.device.id, json!(["com.example.listener"]))
        .await;
    let (_, withheld) = report(&app, &listener.device, &posted("lock-a")).await;
    assert_eq!(withheld["result"], "untrusted", "{withheld}");
    app.allow_packages(&listener.device.id, Value::Null).await;
    let order = app.order(&merchant, "9.00", "wechat").await;
    let hold = || async {
        let session = db.client().await;
        session
            .batch_execute(&format!(
                "BEGIN; SELECT solopay_lock_same_payment(n.device_id, n.same_payment_key) \
                   FROM notifications n JOIN payments p ON p.notification_row = n.id \
                  WHERE p.id = '{}'",
                withheld["payment_id"].as_str().unwrap()
            ))
            .await
            .unwrap();
        session
    };

    let held = hold().await;
    let assign = {
        let (app, path) = (
            app.clone(),
            format!(
                "/admin/payments/{}/assign",
                withheld["payment_id"].as_str().unwrap()
            ),
        );
        let body = json!({"order_id": order["id"], "accept_differences": true});
        tokio::spawn(async move { app.admin_post(&path, &body).await.status() })
    };
    assert!(lock_waiters(&db, 1).await, "the assign did not wait");
    held.batch_execute("COMMIT").await.unwrap();
    assert_eq!(assign.await.unwrap(), StatusCode::OK);
    assert_eq!(status(&app, &order).await, "paid");

    let held = hold().await;
    let copy = {
        let (app, device, body) = (app.clone(), listener.device.clone(), posted("lock-b"));
        tokio::spawn(async move { report(&app, &device, &body).await.1 })
    };
    assert!(
        lock_waiters(&db, 1).await,
        "the copy's matching did not wait"
    );
    held.batch_execute("COMMIT").await.unwrap();
    let copy = copy.await.unwrap();
    assert_eq!(copy["result"], "duplicate", "{copy}");
    assert_eq!(copy["duplicate_of"], withheld["payment_id"], "{copy}");
}

/// What does not fit the order is assigned only when the operator accepts the differences:
/// another channel and payee, an `untrusted` claim with no amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_does_not_fit_the_order_is_assigned_only_when_the_differences_are_accepted()
{
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let wechat = app.online_listener("wechat").await;
    let alipay = app.online_listener("alipay").await;
    let order = app.order(&merchant, "100.00", "wechat").await;
    let elsewhere = app.pay(&alipay.device, "alipay", "100.00").await;
    assert_eq!(elsewhere["result"], "unmatched");
    let (_, sms) = report(
        &app,
        &wechat.device,
        &raw(
            "sms-1",
            "wechat",
            "com.android.mms",
            "10086",
            "你已成功收款100.00元",
        ),
    )
    .await;
    assert_eq!(sms["result"], "untrusted");
    let assign = |payment: &Value, accept: bool| {
        let path = format!(
            "/admin/payments/{}/assign",
            payment["payment_id"].as_str().unwrap()
        );
        let body = json!({"order_id": order["id"], "accept_differences": accept});
        let app = app.clone();
        async move { app.admin_post(&path, &body).await }
    };
    for (payment, why) in [
        (
            &elsewhere,
            "it came through alipay, the order is for wechat",
        ),
        (&elsewhere, "it reached payee"),
        (&sms, "it is kept as untrusted: nothing proves the payment"),
    ] {
        let refused: Value = assign(payment, false).await.json().await.unwrap();
        assert_eq!(refused["code"], "invalid_state", "{refused}");
        assert!(
            refused["detail"].as_str().unwrap().contains(why),
            "{refused} lacks {why:?}"
        );
    }
    assert_eq!(status(&app, &order).await, "pending");
    assert_eq!(assign(&elsewhere, true).await.status(), StatusCode::OK);
    assert_eq!(status(&app, &order).await, "paid");
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// A V免签 app push of `price` at `t` (ms), signed with the device's secret.
async fn vmq_push(app: &TestApp, device: &DeviceKeys, t: i64, price: &str) -> Value {
    let sign = md5_hex(&format!("1{price}{t}{}", device.secret));
    app.client
        .get(app.url(&format!("/appPush?t={t}&type=1&price={price}&sign={sign}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_without_a_trustworthy_id_that_repeat_one_payment_are_one_payment() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;

    // The V免签 app pushes a payment nobody owes (a payer paid the round price instead of the
    // payable amount), then retries it with a new `t`.
    let t = now_unix() * 1000;
    assert_eq!(vmq_push(&app, &listener.device, t, "7.0").await["code"], 1);
    let retry = vmq_push(&app, &listener.device, t + 1500, "7.00").await;
    assert_eq!(retry["code"], 1);
    // The amount is held for the window: the next order for 7.00 is given 7.01, so a third
    // copy pays nothing, and the next payer's own payment of 7.01 pays their order.
    let order = app.order(&merchant, "7.00", "wechat").await;
    assert_eq!(order["payable_amount"], "7.01");
    let third = vmq_push(&app, &listener.device, t + 3000, "7.0").await;
    assert_eq!(third["code"], 1);
    assert_eq!(status(&app, &order).await, "pending");
    let own = vmq_push(&app, &listener.device, t + 4000, "7.01").await;
    assert_eq!(own["code"], 1);
    assert_eq!(status(&app, &order).await, "paid");
    let first = db
        .text("SELECT id FROM payments WHERE result = 'unmatched' AND amount = 7.00")
        .await
        .unwrap();
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM payments WHERE result = 'duplicate' AND duplicate_of = '{first}'"
        ))
        .await,
        2
    );

    // A listener that sends the post time: two ids with one post time are one notification.
    let posted_at = chrono::Utc::now().to_rfc3339();
    let posted = |id: &str| wechat_posted(id, "8.00", &posted_at);
    let (_, a) = report(&app, &listener.device, &posted("posted-a")).await;
    let (_, b) = report(&app, &listener.device, &posted("posted-b")).await;
    assert_eq!(a["result"], "unmatched");
    assert_eq!(b["result"], "duplicate");
    assert_eq!(b["duplicate_of"], a["payment_id"]);
    // Without a post time, a listener's distinct ids are distinct payments.
    let (_, c) = report(
        &app,
        &listener.device,
        &raw(
            "plain-c",
            "wechat",
            WECHAT,
            "微信支付",
            "微信支付收款9.00元(朋友到店)",
        ),
    )
    .await;
    let (_, d) = report(
        &app,
        &listener.device,
        &raw(
            "plain-d",
            "wechat",
            WECHAT,
            "微信支付",
            "微信支付收款9.00元(朋友到店)",
        ),
    )
    .await;
    assert_eq!(
        (c["result"].as_str(), d["result"].as_str()),
        (Some("unmatched"), Some("unmatched"))
    );
    // Once the window is over, the held amounts are given out again.
    db.execute(
        "UPDATE payments SET holds_amount_until = now() WHERE holds_amount_until IS NOT NULL",
    )
    .await;
    assert_eq!(
        app.order(&merchant, "9.00", "wechat").await["payable_amount"],
        "9.00"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_without_a_trustworthy_id_are_one_payment() {
    let TestEnv { app, db } = spawn_app().await;
    let listener = app.online_listener("wechat").await;
    // Four pushes of one payment, as a V免签 app retrying on a bad connection, held at the
    // device's row (each stores its request with the device's activity, which waits for the
    // row) so that all four are matched at the same moment.
    let device_lock = hold_device_row(&db, &listener.device.id).await;
    let t = now_unix() * 1000;
    let pushes: Vec<_> = (0..4)
        .map(|i| {
            let (app, device) = (app.clone(), listener.device.clone());
            tokio::spawn(async move { vmq_push(&app, &device, t + i * 700, "12.30").await })
        })
        .collect();
    assert!(lock_waiters(&db, 4).await);
    device_lock.batch_execute("COMMIT").await.unwrap();
    for answer in futures_util::future::join_all(pushes).await {
        assert_eq!(answer.unwrap()["code"], 1);
    }
    assert_eq!(
        db.count("SELECT count(*) FROM payments WHERE result = 'unmatched'")
            .await,
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM payments d JOIN payments f ON f.id = d.duplicate_of \
             WHERE d.result = 'duplicate' AND f.result = 'unmatched'"
        )
        .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_arrived_while_the_order_waited_for_its_payee_lock_cannot_pay_it() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let payee = listener.payee_id.clone();

    // Two sessions of our own: one holds the payee's lock (the order waits for it), the other
    // the lock that serializes matching payments of 10.00 on this payee (the payment waits for
    // it after it was stored, i.e. after it arrived).
    let payee_lock = db.client().await;
    payee_lock.batch_execute("BEGIN").await.unwrap();
    payee_lock
        .execute(
            "SELECT 1 FROM payees WHERE id = $1 FOR NO KEY UPDATE",
            &[&payee],
        )
        .await
        .unwrap();
    let matching_lock = db.client().await;
    matching_lock.batch_execute("BEGIN").await.unwrap();
    matching_lock
        .execute(
            "SELECT pg_advisory_xact_lock(2, hashtext($1 || ':' || '10.00'))",
            &[&payee],
        )
        .await
        .unwrap();

    let waiting = |n: i64| {
        let db = &db;
        async move {
            db.count(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await
                >= n
        }
    };
    let creating = {
        let (app, merchant) = (app.clone(), merchant.clone());
        tokio::spawn(async move { app.order(&merchant, "10.00", "wechat").await })
    };
    assert!(eventually(Duration::from_secs(10), || waiting(1)).await);
    // The payer pays 10.00 now, for someone else's earlier order or for nothing: the order
    // being created does not hold 10.00 yet.
    let paying = {
        let (app, device) = (app.clone(), listener.device.clone());
        tokio::spawn(async move {
            report(
                &app,
                &device,
                &raw(
                    "early",
                    "wechat",
                    WECHAT,
                    "微信支付",
                    "微信支付收款10.00元(朋友到店)",
                ),
            )
            .await
            .1
        })
    };
    assert!(eventually(Duration::from_secs(10), || waiting(2)).await);
    // The order is written (and committed) first, then the payment is matched.
    payee_lock.batch_execute("COMMIT").await.unwrap();
    let order = creating.await.unwrap();
    assert_eq!(order["payable_amount"], "10.00");
    matching_lock.batch_execute("COMMIT").await.unwrap();
    let answer = paying.await.unwrap();
    assert_eq!(answer["result"], "unmatched", "{answer}");
    assert_eq!(status(&app, &order).await, "pending");
    assert!(
        db.count(&format!(
            "SELECT count(*) FROM orders o, notifications n \
             WHERE o.id = '{}' AND n.payment_id = '{}' AND n.received_at < o.created_at",
            order["id"].as_str().unwrap(),
            answer["payment_id"].as_str().unwrap()
        ))
        .await
            == 1,
        "the order's holding time is after the payment's arrival"
    );
    // The early payment was kept with a hold the order's allocation could not see (it was
    // decided after): a payment of the amount within that hold may be it again (another app's
    // copy, under a new id) and is kept for the operator too.
    let early = answer["payment_id"].as_str().unwrap().to_string();
    let answer = app.pay(&listener.device, "wechat", "10.00").await;
    assert_eq!(answer["result"], "unmatched", "{answer}");
    assert_eq!(status(&app, &order).await, "pending");
    // Once the early payment arrived longer ago than a paid order's hold, a payment made while
    // the order holds the amount pays it.
    db.execute(&format!(
        "UPDATE notifications SET received_at = received_at - interval '1 hour' \
          WHERE payment_id = '{early}'"
    ))
    .await;
    let answer = app.pay(&listener.device, "wechat", "10.00").await;
    assert_eq!(answer["result"], "matched", "{answer}");
    assert_eq!(answer["order_id"], order["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_the_phone_held_past_its_orders_grace_never_pays_the_order_that_took_the_amount()
{
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    // Order A's grace ended 40 s ago, unpaid; 30 s ago order B was given its amount.
    let first = app.order(&merchant, "6.00", "wechat").await;
    db.execute(&format!(
        "UPDATE orders SET created_at = now() - interval '30 minutes', \
                           expires_at = now() - interval '20 minutes', \
                           reserved_until = now() - interval '40 seconds' \
          WHERE id = '{}'",
        first["id"].as_str().unwrap()
    ))
    .await;
    let next = app.order(&merchant, "6.00", "wechat").await;
    assert_eq!(next["payable_amount"], "6.00");
    age_order(&db, next["id"].as_str().unwrap(), 30).await;
    let taken = order_created_at(&db, &next).await;

    // A's payer paid 45 s before B existed, within A's grace; the phone held the notification
    // (offline) and sends it now. Whatever its clock says (200 s behind, right, 250 s ahead:
    // each within the signature's window, so its own time alone cannot tell), the request's
    // timestamp sets that clock against the server's: the payment was seen before B held 6.00.
    for (skew, id) in [(-200, "late-1"), (0, "late-2"), (250, "late-3")] {
        let seen = taken - chrono::Duration::seconds(45) + chrono::Duration::seconds(skew);
        let mut body = raw(
            id,
            "wechat",
            WECHAT,
            "微信支付",
            "微信支付收款6.00元(朋友到店)",
        );
        body["posted_at"] = json!(seen.to_rfc3339());
        let response = app
            .signed_post(
                "/notify",
                &listener.device,
                now_unix() + skew,
                body.to_string().as_bytes(),
            )
            .await;
        let code = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(code, StatusCode::OK, "{skew}: {answer}");
        assert_eq!(answer["result"], "unmatched", "{skew}: {answer}");
        assert_kept(&app, id, "unmatched", "before order").await;
        assert_eq!(status(&app, &next).await, "pending");
    }

    // B's payer pays 10 s after B held the amount, seen by a phone 250 s ahead: B is paid.
    let mut own = raw(
        "own",
        "wechat",
        WECHAT,
        "微信支付",
        "微信支付收款6.00元(新顾客到店)",
    );
    own["posted_at"] = json!((taken + chrono::Duration::seconds(260)).to_rfc3339());
    let response = app
        .signed_post(
            "/notify",
            &listener.device,
            now_unix() + 250,
            own.to_string().as_bytes(),
        )
        .await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["order_id"], next["id"], "{answer}");
    assert_eq!(status(&app, &next).await, "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_notification_sent_again_never_pays_a_new_order() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let first = app.order(&merchant, "8.00", "wechat").await;
    let posted_at = chrono::Utc::now();
    let copy = |id: &str| {
        let mut body = raw(
            id,
            "wechat",
            WECHAT,
            "微信支付",
            "微信支付收款8.00元(朋友到店)",
        );
        body["posted_at"] = json!(posted_at.to_rfc3339());
        body
    };
    let (_, paid) = report(&app, &listener.device, &copy("p-1")).await;
    assert_eq!(paid["order_id"], first["id"]);

    // Twenty minutes later: the paid order's reservation is over and 8.00 goes to a new order.
    db.execute("UPDATE notifications SET received_at = received_at - interval '20 minutes'")
        .await;
    age_order(&db, first["id"].as_str().unwrap(), 1200).await;
    db.execute(
        "UPDATE orders SET reserved_until = greatest(created_at, now() - interval '1 second') \
         WHERE status = 'paid'",
    )
    .await;
    let next = app.order(&merchant, "8.00", "wechat").await;
    assert_eq!(next["payable_amount"], "8.00");

    // The listener reconnects and sends the notification still in the shade again, under a
    // new id: the same post time and text are the same notification, whenever it comes.
    let (_, again) = report(&app, &listener.device, &copy("p-2")).await;
    assert_eq!(again["result"], "duplicate", "{again}");
    assert_eq!(again["duplicate_of"], paid["payment_id"]);
    // A notification the phone saw twenty minutes ago (before the new order held 8.00) is not
    // the new order's, whatever its id and text.
    let mut old = raw(
        "p-3",
        "wechat",
        WECHAT,
        "微信支付",
        "微信支付收款8.00元(老顾客到店)",
    );
    old["posted_at"] = json!((chrono::Utc::now() - chrono::Duration::minutes(20)).to_rfc3339());
    let (_, stale) = report(&app, &listener.device, &old).await;
    assert_eq!(stale["result"], "unmatched", "{stale}");
    assert_kept(&app, "p-3", "unmatched", "before order").await;
    assert_eq!(status(&app, &next).await, "pending");
    // The hold of p-3's amount is lifted, as if its window were over; the payer's own payment,
    // seen now, pays the order.
    db.execute("UPDATE payments SET holds_amount_until = now()")
        .await;
    let (_, own) = report(
        &app,
        &listener.device,
        &raw(
            "p-4",
            "wechat",
            WECHAT,
            "微信支付",
            "微信支付收款8.00元(新顾客到店)",
        ),
    )
    .await;
    assert_eq!(own["order_id"], next["id"], "{own}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_collection_code_is_one_payee() {
    let TestEnv { app, db } = spawn_app().await;
    let phone = app.create_device("phone").await;
    let tablet = app.create_device("tablet").await;
    app.create_payee(&phone, "wechat", json!({"qr_code": "wxp://f2f0shared"}))
        .await;
    // The same account listened to by a second phone would hand out its amounts twice, and one
    // payment, reported by both phones, could pay an order of each; spelt otherwise (a
    // scanner's capitals, a pasted space), it is still that account.
    for qr_code in ["wxp://f2f0shared", " WXP://F2F0SHARED "] {
        let second = app
            .admin_post(
                "/admin/payees",
                &json!({"channel": "wechat", "name": "tablet", "qr_code": qr_code,
                        "device_id": tablet.id}),
            )
            .await;
        assert_problem(second, StatusCode::CONFLICT, "conflict").await;
    }
    let other = app
        .create_payee(&tablet, "wechat", json!({"qr_code": "wxp://f2f0other"}))
        .await;
    let patched = app
        .client
        .patch(app.url(&format!("/admin/payees/{}", other["id"].as_str().unwrap())))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"qr_code": "wxp://f2f0shared"}))
        .send()
        .await
        .unwrap();
    assert_problem(patched, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(
        db.count("SELECT count(*) FROM payees WHERE qr_code = 'wxp://f2f0shared'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_sent_again_keeps_what_its_first_copy_was() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("alipay").await;
    let order = app.order(&merchant, "9.00", "alipay").await;
    let posted_at = chrono::Utc::now().to_rfc3339();
    // First marked by Android as a chat message: kept.
    let mut chat = raw(
        "m-1",
        "alipay",
        ALIPAY,
        "支付宝通知",
        "张三通过扫码向你付款9.00元",
    );
    chat["posted_at"] = json!(posted_at);
    chat["category"] = json!("msg");
    let (code, _) = report(&app, &listener.device, &chat).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    // The same notification again (same post time and text) without its marks, or with the
    // listener's amount filled in: the same notification, still kept.
    let mut bare = chat.clone();
    bare["notification_id"] = json!("m-2");
    bare.as_object_mut().unwrap().remove("category");
    let (_, again) = report(&app, &listener.device, &bare).await;
    assert_eq!(again["result"], "duplicate", "{again}");
    let mut with_amount = bare.clone();
    with_amount["notification_id"] = json!("m-3");
    with_amount["amount"] = json!("9.00");
    let (_, third) = report(&app, &listener.device, &with_amount).await;
    assert_eq!(third["result"], "duplicate", "{third}");
    assert_eq!(status(&app, &order).await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_id_with_other_content_is_not_matched_as_of_an_old_copy() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let old = app.order(&merchant, "8.00", "wechat").await;
    // A listener that reuses ids: a request under "reused" (another payment, 5.00) died 10 s
    // ago after it was stored; it waits for the sweep.
    let body =
        json!({"notification_id": "reused", "channel": "wechat", "amount": "5.00"}).to_string();
    let reading = json!({"notification_id": "reused", "channel": "wechat", "amount": "5.00",
                         "package": null, "title": null, "text": null, "reported_at": null,
                         "listener_vouches": true});
    db.execute(&format!(
        "INSERT INTO notifications (received_at, source, device_id, auth_result, auth_headers, \
                                    body, body_length, body_sha256, reading) \
         VALUES (now() - interval '10 seconds', 'notify', '{}', 'ok', '{{}}', \
                 convert_to('{body}', 'UTF8'), octet_length(convert_to('{body}', 'UTF8')), \
                 sha256(convert_to('{body}', 'UTF8')), '{reading}')",
        listener.device.id
    ))
    .await;
    // The old order held 8.00 then; its reservation ended 2 s ago, and 8.00 went to a new one.
    age_order(&db, old["id"].as_str().unwrap(), 902).await;
    let new = app.order(&merchant, "8.00", "wechat").await;
    assert_eq!(new["payable_amount"], "8.00");
    // Now a payment of 8.00 under the same id: not a copy of the stored request, so it is
    // matched as of its own arrival and pays the new order.
    let answer = app
        .notify(
            &listener.device,
            &json!({"notification_id": "reused", "channel": "wechat", "amount": "8.00"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(answer["order_id"], new["id"], "{answer}");
    // Not paid. (Expired, or pending for the moment the sweep holds it while it expires it: a
    // read skips an order another transaction holds.)
    assert_ne!(status(&app, &old).await, "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_under_another_id_is_matched_as_of_the_first_copy_that_arrived() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let posted_at = chrono::Utc::now().to_rfc3339();
    let posted = |id: &str| wechat_posted(id, "6.00", &posted_at);
    // The phone's first report of a payment, made to look as a request that died between
    // storing and matching leaves it (stored and read, never matched), 15 s ago.
    let (_, a) = report(&app, &listener.device, &posted("copy-a")).await;
    let payment_a = a["payment_id"].as_str().unwrap().to_string();
    db.client()
        .await
        .batch_execute(&format!(
            "UPDATE notifications SET payment_id = NULL, \
                                      received_at = now() - interval '15 seconds' \
              WHERE payment_id = '{payment_a}'; \
             DELETE FROM payments WHERE id = '{payment_a}'"
        ))
        .await
        .unwrap();
    // The order that held 6.00 then; its reservation ended 5 s ago, and the amount has gone to
    // the next customer.
    let first = app.order(&merchant, "6.00", "wechat").await;
    let first_id = first["id"].as_str().unwrap().to_string();
    end_reservation(&db, &first_id).await;
    let next = app.order(&merchant, "6.00", "wechat").await;
    assert_eq!(next["payable_amount"], "6.00");

    // The phone reports the same notification again under another id: it is the payment that
    // arrived 15 s ago, and pays that order, never the next customer's.
    let (_, b) = report(&app, &listener.device, &posted("copy-b")).await;
    assert_eq!(b["result"], "matched", "{b}");
    assert_eq!(b["order_id"].as_str(), Some(first_id.as_str()), "{b}");
    assert_eq!(status(&app, &next).await, "pending");
}

/// An earlier report of the same payment is looked for among the device's own notifications,
/// through their index: on a device's long history (every V免签 push and every report with a
/// post time carries a same-payment key) it is found, and a report with a new key reads a few
/// pages, not the history. Also with the plans a connection made while the tables were empty
/// (a new installation; PL/pgSQL keeps them until the tables are analyzed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_report_is_found_through_the_devices_index_on_a_long_history() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let device = &listener.device.id;
    // An order holding the amount, so that what contests its claim is read too.
    app.order(&merchant, "14.00", "wechat").await;
    let calls: Vec<String> = ["interval '60 seconds'", "NULL"]
        .iter()
        .map(|window| {
            format!(
                "SELECT * FROM solopay_match_findings('{}', 14.00, '{device}', 'new', '\\x01', \
                 now(), sha256('\\x0102'), {window}, interval '600 seconds')",
                listener.payee_id
            )
        })
        .collect();
    let planned_when_empty = db.client().await;
    planned_when_empty
        .batch_execute("VACUUM ANALYZE notifications, payments")
        .await
        .unwrap();
    for call in &calls {
        planned_when_empty.batch_execute(call).await.unwrap();
    }
    let filling = db.client().await;
    filling
        .batch_execute(&format!(
            "SET session_replication_role = replica; \
             INSERT INTO notifications (id, received_at, source, device_id, auth_result, \
                                        auth_headers, body, body_length, body_sha256, \
                                        payment_id, same_payment_key) \
             SELECT -i, now() - i * interval '1 minute', 'native', '{device}', 'ok', '{{}}', \
                    '\\x00', 1, sha256(int8send(i)), 'pay_old' || i, sha256(int8send(i)) \
               FROM generate_series(1, 30000) i; \
             INSERT INTO payments (id, device_id, notification_id, result, notification_row, \
                                   created_at) \
             SELECT 'pay_old' || i, '{device}', 'old' || i, 'unmatched', -i, \
                    now() - i * interval '1 minute' \
               FROM generate_series(1, 30000) i; \
             SET session_replication_role = origin"
        ))
        .await
        .unwrap();
    for call in &calls {
        let read = buffers_read(&planned_when_empty, call).await;
        assert!(
            read < 100,
            "{read} buffers read by plans made on empty tables: {call}"
        );
    }

    filling
        .batch_execute("ANALYZE notifications; ANALYZE payments")
        .await
        .unwrap();
    let order = app.order(&merchant, "13.00", "wechat").await;
    let posted_at = chrono::Utc::now().to_rfc3339();
    let posted = |id: &str| wechat_posted(id, "13.00", &posted_at);
    let (_, first) = report(&app, &listener.device, &posted("long-a")).await;
    assert_eq!(first["result"], "matched", "{first}");
    assert_eq!(first["order_id"], order["id"]);
    let (_, copy) = report(&app, &listener.device, &posted("long-b")).await;
    assert_eq!(copy["result"], "duplicate", "{copy}");
    assert_eq!(copy["duplicate_of"], first["payment_id"]);

    let analyzed = db.client().await;
    for call in &calls {
        analyzed.batch_execute(call).await.unwrap();
        let read = buffers_read(&analyzed, call).await;
        assert!(read < 100, "{read} buffers read with statistics: {call}");
    }
}
