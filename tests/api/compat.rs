//! The old protocols, spoken the way their real clients speak them: the V免签 listener app and
//! merchant plugins, and 易支付 plugins. Signs are computed here, independently of the service.

use std::time::Duration;

use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::receiver::{Answer, Receiver};

pub(crate) fn md5(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// 易支付's sign as its PHP SDK builds it: non-empty fields but sign/sign_type, sorted by name,
/// `k=v&…` unencoded, the key appended, MD5.
pub(crate) fn epay_sign(fields: &[(&str, String)], key: &str) -> String {
    let mut kept: Vec<&(&str, String)> = fields
        .iter()
        .filter(|(k, v)| !v.is_empty() && *k != "sign" && *k != "sign_type")
        .collect();
    kept.sort_by(|a, b| a.0.cmp(b.0));
    let joined: Vec<String> = kept.iter().map(|(k, v)| format!("{k}={v}")).collect();
    md5(&format!("{}{key}", joined.join("&")))
}

fn now_ms() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

/// `path` on `app` with `fields` as its query, URL-encoded.
pub(crate) fn url_with(app: &TestApp, path: &str, fields: &[(&str, String)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    format!("{}?{query}", app.url(path))
}

pub(crate) async fn get(app: &TestApp, path: &str, fields: &[(&str, String)]) -> reqwest::Response {
    app.client
        .get(url_with(app, path, fields))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn post_form(
    app: &TestApp,
    path: &str,
    fields: &[(&str, String)],
) -> reqwest::Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    app.client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn vmq(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// An operator's set-up for V免签: a merchant with webhooks to `notify`, and an instance of the
/// service whose V免签 merchant endpoints act for it.
async fn vmq_setup(
    configure: impl Fn(&mut solopay::config::Settings) + Clone,
) -> (TestEnv, TestApp, MerchantKeys, String) {
    let env = spawn_app_with(configure.clone()).await;
    let merchant = env.app.create_merchant("vmq shop").await;
    let md5_key = merchant.md5_key.clone();
    let merchant_id = merchant.id.clone();
    let vmq_app = spawn_instance(&env.db, move |s| {
        configure(s);
        s.vmq_merchant = Some(merchant_id);
    })
    .await;
    (env, vmq_app, merchant, md5_key)
}

pub(crate) fn local_webhooks(s: &mut solopay::config::Settings) {
    s.allow_private_webhooks = true;
    s.webhook_retry_schedule = vec![Duration::from_millis(300); 7];
    s.webhook_poll_interval = Duration::from_millis(100);
}

fn create_order_fields(
    pay_id: &str,
    kind: &str,
    price: &str,
    param: &str,
    notify: &str,
    key: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("payId", pay_id.to_string()),
        ("type", kind.to_string()),
        ("price", price.to_string()),
        ("param", param.to_string()),
        ("notifyUrl", notify.to_string()),
        ("returnUrl", "https://shop.example/return".to_string()),
        ("sign", md5(&format!("{pay_id}{param}{kind}{price}{key}"))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vmq_round_trip_from_create_order_to_the_merchant_callback() {
    let receiver = Receiver::start().await;
    receiver.answer_with([Answer {
        status: 200,
        headers: vec![],
        body: "\u{feff}success\r\n".into(),
    }]);
    let (env, app, _merchant, key) = vmq_setup(local_webhooks).await;
    let device = env.app.create_device("vmq phone").await;
    env.app.create_payee(&device, "wechat", json!({})).await;

    // The app's heartbeat: t in ms, sign = md5(t + key), the device's secret as key.
    let t = now_ms();
    let heart = vmq(get(
        &app,
        "/appHeart",
        &[
            ("t", t.clone()),
            ("sign", md5(&format!("{t}{}", device.secret))),
        ],
    )
    .await)
    .await;
    assert_eq!(heart["code"], 1, "{heart}");

    // The shop plugin creates an order.
    let fields = create_order_fields("V1001", "1", "1.00", "user=7", &receiver.url(), &key);
    let response = post_form(&app, "/createOrder", &fields).await;
    let text = response.text().await.unwrap();
    // Prices are JSON numbers written exactly as amounts (a float would print 1.0).
    assert!(text.contains(r#""reallyPrice":1.00"#), "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["code"], 1, "{created}");
    let data = &created["data"];
    assert_eq!(data["payId"], "V1001");
    assert_eq!(data["payType"], 1);
    assert_eq!(data["price"].as_f64(), Some(1.0));
    assert_eq!(data["isAuto"], 1);
    assert_eq!(data["state"], 0);
    assert_eq!(data["timeOut"], 5);
    assert!(data["payUrl"].as_str().unwrap().starts_with("wechat://"));
    let order_id = data["orderId"].as_str().unwrap().to_string();

    // Paid: the app pushes the price as Java prints a double.
    let (t, price) = (now_ms(), "1.0");
    let push = [
        ("t", t.clone()),
        ("type", "1".to_string()),
        ("price", price.to_string()),
        ("sign", md5(&format!("1{price}{t}{}", device.secret))),
    ];
    assert_eq!(vmq(get(&app, "/appPush", &push).await).await["code"], 1);
    // The app retries the same push (some builds add force_push=true): credited once.
    let mut retry = push.to_vec();
    retry.push(("force_push", "true".to_string()));
    assert_eq!(vmq(get(&app, "/appPush", &retry).await).await["code"], 1);
    assert_eq!(env.db.count("SELECT count(*) FROM payments").await, 1);
    // The sign covers type + price + t glued together: a captured push re-split as
    // price=5.0&t=0<t> carries the same sign, and must not become a second payment.
    let t2 = now_ms();
    let push = [
        ("t", t2.clone()),
        ("type", "1".to_string()),
        ("price", "5.00".to_string()),
        ("sign", md5(&format!("15.00{t2}{}", device.secret))),
    ];
    assert_eq!(vmq(get(&app, "/appPush", &push).await).await["code"], 1);
    let mut resplit = push.to_vec();
    resplit[0].1 = format!("0{t2}");
    resplit[2].1 = "5.0".into();
    let _ = vmq(get(&app, "/appPush", &resplit).await).await;
    assert_eq!(env.db.count("SELECT count(*) FROM payments").await, 2);

    // The merchant callback: GET with the fields and md5(payId + param + type + price + reallyPrice + key).
    let received = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "GET");
    let q: std::collections::HashMap<String, String> = received[0].query().into_iter().collect();
    assert_eq!(q["payId"], "V1001");
    assert_eq!(q["param"], "user=7");
    assert_eq!(q["type"], "1");
    assert_eq!(q["reallyPrice"], "1.00");
    assert_eq!(
        q["sign"],
        md5(&format!(
            "{}{}{}{}{}{key}",
            q["payId"], q["param"], q["type"], q["price"], q["reallyPrice"]
        ))
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let db = &env.db;
            async move { db.count("SELECT count(*) FROM webhook_deliveries WHERE kind = 'vmq' AND status = 'succeeded'").await == 1 }
        })
        .await,
        "a BOM and whitespace around `success` must count as success"
    );

    // checkOrder: paid, with the return URL carrying the callback fields.
    let checked = vmq(get(&app, "/checkOrder", &[("orderId", order_id.clone())]).await).await;
    assert_eq!(checked["code"], 1);
    let location = checked["data"].as_str().unwrap();
    assert!(
        location.starts_with("https://shop.example/return?payId=V1001&"),
        "{location}"
    );
    let got = vmq(get(&app, "/getOrder", &[("orderId", order_id)]).await).await;
    assert_eq!(got["data"]["state"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmq_refuses_bad_signs_reused_ids_stale_pushes_and_answers_in_its_own_words() {
    let (env, app, merchant, key) = vmq_setup(|_| {}).await;
    let listener = env.app.create_device("vmq phone").await;
    env.app.create_payee(&listener, "alipay", json!({})).await;

    // No listener online yet.
    let offline = vmq(get(
        &app,
        "/createOrder",
        &create_order_fields("A1", "2", "2.00", "", "", &key),
    )
    .await)
    .await;
    assert_eq!(
        (offline["code"].as_i64(), offline["msg"].as_str()),
        (Some(-1), Some("监控端状态异常，请检查"))
    );
    let t = now_ms();
    let state = vmq(get(
        &app,
        "/getState",
        &[("t", t.clone()), ("sign", md5(&format!("{t}{key}")))],
    )
    .await)
    .await;
    assert_eq!(state["data"]["state"], -1);
    env.app.heartbeat(&listener).await;
    let state = vmq(get(
        &app,
        "/getState",
        &[("t", t.clone()), ("sign", md5(&format!("{t}{key}")))],
    )
    .await)
    .await;
    assert_eq!(state["data"]["state"], 1);
    assert!(state["data"]["lastheart"].as_i64().unwrap() > 0);
    assert_eq!(
        vmq(get(&app, "/getState", &[("t", t), ("sign", "0".repeat(32))]).await).await["msg"],
        "签名错误"
    );

    // A bad sign, then a reused payId (the same or other parameters).
    let mut forged = create_order_fields("A2", "2", "2.00", "", "", &key);
    forged[6].1 = md5("anything else");
    assert_eq!(
        vmq(get(&app, "/createOrder", &forged).await).await["msg"],
        "签名错误"
    );
    let first = vmq(get(
        &app,
        "/createOrder",
        &create_order_fields("A2", "2", "2.00", "", "", &key),
    )
    .await)
    .await;
    assert_eq!(first["code"], 1);
    for fields in [
        create_order_fields("A2", "2", "2.00", "", "", &key),
        create_order_fields("A2", "2", "3.00", "", "", &key),
    ] {
        let reused = vmq(get(&app, "/createOrder", &fields).await).await;
        assert_eq!(
            (reused["code"].as_i64(), reused["msg"].as_str()),
            (Some(-1), Some("商户订单号已存在"))
        );
    }
    let bad_type = vmq(get(
        &app,
        "/createOrder",
        &create_order_fields("A3", "3", "2.00", "", "", &key),
    )
    .await)
    .await;
    assert_eq!(bad_type["code"], -1);
    // isHtml=1 sends the payer to the payment page.
    let mut html = create_order_fields("A4", "2", "2.00", "", "", &key);
    html.push(("isHtml", "1".to_string()));
    let page = solopay::webhooks::sender::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url_with(&app, "/createOrder", &html))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FOUND);
    assert!(
        page.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/pay/ord_")
    );

    // Not paid yet; closed with a sign; expired.
    let order_id = first["data"]["orderId"].as_str().unwrap().to_string();
    assert_eq!(
        vmq(get(&app, "/checkOrder", &[("orderId", order_id.clone())]).await).await["msg"],
        "订单未支付"
    );
    age_order(&env.db, &order_id, 301).await;
    assert_eq!(
        vmq(get(&app, "/checkOrder", &[("orderId", order_id.clone())]).await).await["msg"],
        "订单已过期"
    );
    let a4 = env
        .db
        .text("SELECT id FROM orders WHERE merchant_order_id = 'A4'")
        .await
        .unwrap();
    let wrong = vmq(get(
        &app,
        "/closeOrder",
        &[("orderId", a4.clone()), ("sign", md5("x"))],
    )
    .await)
    .await;
    assert_eq!(wrong["msg"], "签名错误");
    let closed = vmq(get(
        &app,
        "/closeOrder",
        &[
            ("orderId", a4.clone()),
            ("sign", md5(&format!("{a4}{key}"))),
        ],
    )
    .await)
    .await;
    assert_eq!(closed["code"], 1);
    assert_eq!(
        vmq(get(&app, "/getOrder", &[("orderId", "ord_nope".to_string())]).await).await["msg"],
        "云端订单编号不存在"
    );

    // The app: a stale push and a forged one are refused and credit nothing.
    let order = vmq(get(
        &app,
        "/createOrder",
        &create_order_fields("A5", "2", "5.00", "", "", &key),
    )
    .await)
    .await;
    let price = order["data"]["reallyPrice"].to_string();
    let old_t = (now_ms().parse::<i64>().unwrap() - 10 * 60 * 1000).to_string();
    let stale = [
        ("t", old_t.clone()),
        ("type", "2".to_string()),
        ("price", price.clone()),
        ("sign", md5(&format!("2{price}{old_t}{}", listener.secret))),
    ];
    assert_eq!(vmq(get(&app, "/appPush", &stale).await).await["code"], -1);
    let t = now_ms();
    let forged = [
        ("t", t.clone()),
        ("type", "2".to_string()),
        ("price", price.clone()),
        ("sign", md5(&format!("2{price}{t}wrong"))),
    ];
    assert_eq!(vmq(get(&app, "/appPush", &forged).await).await["code"], -1);
    assert_eq!(env.db.count("SELECT count(*) FROM payments").await, 0);
    assert_eq!(
        env.db
            .count("SELECT count(*) FROM notifications WHERE source = 'vmq'")
            .await,
        2
    );

    // Without SOLOPAY_VMQ_MERCHANT the merchant endpoints say so.
    let unconfigured = vmq(get(
        &env.app,
        "/createOrder",
        &create_order_fields("B1", "2", "2.00", "", "", &key),
    )
    .await)
    .await;
    assert_eq!(unconfigured["code"], -1);
    assert!(
        unconfigured["msg"]
            .as_str()
            .unwrap()
            .contains("SOLOPAY_VMQ_MERCHANT")
    );
    let _ = merchant;
}

pub(crate) fn epay_fields(
    pid: &str,
    out_trade_no: &str,
    kind: &str,
    money: &str,
    notify: &str,
    key: &str,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("pid", pid.to_string()),
        ("type", kind.to_string()),
        ("out_trade_no", out_trade_no.to_string()),
        ("notify_url", notify.to_string()),
        ("return_url", "https://shop.example/return".to_string()),
        ("name", "VIP 会员 1 个月".to_string()),
        ("money", money.to_string()),
        ("param", "".to_string()),
        ("clientip", "203.0.113.7".to_string()),
        ("device", "pc".to_string()),
    ];
    let sign = epay_sign(&fields, key);
    fields.push(("sign", sign));
    fields.push(("sign_type", "MD5".to_string()));
    fields
}

pub(crate) async fn merchant_keys(env: &TestEnv, merchant: &MerchantKeys) -> (String, String) {
    let pid = env
        .db
        .text(&format!(
            "SELECT pid::text FROM merchants WHERE id = '{}'",
            merchant.id
        ))
        .await
        .unwrap();
    (pid, merchant.md5_key.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epay_round_trip_from_mapi_to_the_signed_notify() {
    let receiver = Receiver::start().await;
    receiver.answer_with([
        Answer::status(500),
        Answer {
            status: 200,
            headers: vec![],
            body: "SUCCESS".into(),
        },
    ]);
    let env = spawn_app_with(local_webhooks).await;
    let app = &env.app;
    let merchant = app.create_merchant("epay shop").await;
    let (pid, key) = merchant_keys(&env, &merchant).await;
    let listener = app.online_listener("alipay").await;

    let created: Value = post_form(
        app,
        "/mapi.php",
        &epay_fields(&pid, "E-1001|x", "alipay", "5.00", &receiver.url(), &key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(created["code"], 1, "{created}");
    let trade_no = created["trade_no"].as_str().unwrap().to_string();
    assert!(
        created["payurl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/pay/{trade_no}"))
    );
    assert!(created["qrcode"].as_str().unwrap().starts_with("alipay://"));
    assert_eq!(created["real_money"], "5.00");

    // Paid, reported by the listener through /notify.
    assert_eq!(
        app.pay(&listener.device, "alipay", "5.00").await["result"],
        "matched"
    );
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2, "a 500 is retried");
    let fields: Vec<(String, String)> = received[1].query();
    let get_field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get_field("trade_status"), "TRADE_SUCCESS");
    assert_eq!(get_field("out_trade_no"), "E-1001|x");
    assert_eq!(get_field("trade_no"), trade_no);
    assert_eq!(get_field("money"), "5.00");
    assert_eq!(get_field("type"), "alipay");
    assert_eq!(get_field("pid"), pid);
    assert_eq!(get_field("name"), "VIP 会员 1 个月");
    let signed: Vec<(&str, String)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(get_field("sign"), epay_sign(&signed, &key));
    assert!(
        eventually(Duration::from_secs(5), || {
            let db = &env.db;
            async move { db.count("SELECT count(*) FROM webhook_deliveries WHERE kind = 'epay' AND status = 'succeeded'").await == 1 }
        })
        .await
    );

    let queried: Value = get(
        app,
        "/api.php",
        &[
            ("act", "order".into()),
            ("pid", pid.clone()),
            ("key", key.clone()),
            ("out_trade_no", "E-1001|x".into()),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (queried["code"].as_i64(), queried["status"].as_str()),
        (Some(1), Some("1")),
        "{queried}"
    );
    assert_eq!(queried["trade_no"], trade_no.as_str());
    assert!(queried["endtime"].is_string());

    // The payer's browser goes back with the same signed fields.
    let back = solopay::webhooks::sender::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(&format!("/pay/{trade_no}/return")))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::FOUND);
    let location = back.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://shop.example/return?pid="),
        "{location}"
    );
    assert!(location.contains("trade_status=TRADE_SUCCESS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epay_callback_cannot_be_cut_into_another_orders() {
    let receiver = Receiver::start().await;
    let env = spawn_app_with(local_webhooks).await;
    let app = &env.app;
    let merchant = app.create_merchant("epay shop").await;
    let (pid, key) = merchant_keys(&env, &merchant).await;
    let listener = app.online_listener("alipay").await;
    let with = |out_trade_no: &str, field: &str, value: &str| {
        let mut fields = epay_fields(&pid, out_trade_no, "alipay", "5.00", &receiver.url(), &key);
        fields.retain(|(k, _)| !["sign", "sign_type"].contains(k));
        fields.iter_mut().find(|(k, _)| *k == field).unwrap().1 = value.to_string();
        let sign = epay_sign(&fields, &key);
        fields.push(("sign", sign));
        fields.push(("sign_type", "MD5".to_string()));
        fields
    };

    // A param that would make the paid callback of E-2 read, cut differently, as one for E-1
    // ("…&out_trade_no=E-1&param=&out_trade_no=E-2&pid=…"): refused, nothing created.
    let answer: Value = post_form(app, "/mapi.php", &with("E-2", "param", "&out_trade_no=E-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["code"], -1, "{answer}");
    assert!(
        answer["msg"]
            .as_str()
            .unwrap()
            .contains("param must not contain & or ="),
        "{answer}"
    );
    assert_eq!(env.db.count("SELECT count(*) FROM orders").await, 0);

    // A product name with them is a label: the order is made, and its callback carries the
    // name with full-width ＆ and ＝, signed as sent.
    let created: Value = post_form(app, "/mapi.php", &with("E-3", "name", "Q&A=1 课程"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(created["code"], 1, "{created}");
    assert_eq!(
        app.pay(&listener.device, "alipay", "5.00").await["result"],
        "matched"
    );
    let fields = receiver.wait_for(1, Duration::from_secs(10)).await[0].query();
    let name = fields.iter().find(|(k, _)| k == "name").unwrap().1.clone();
    assert_eq!(name, "Q＆A＝1 课程");
    for (k, v) in &fields {
        assert!(!v.contains(['&', '=']), "{k}={v}");
    }
    let signed: Vec<(&str, String)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let sign = fields.iter().find(|(k, _)| k == "sign").unwrap().1.clone();
    assert_eq!(sign, epay_sign(&signed, &key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epay_refuses_bad_signs_unknown_merchants_and_changed_reposts() {
    let env = spawn_app().await;
    let app = &env.app;
    let merchant = app.create_merchant("epay shop").await;
    let (pid, key) = merchant_keys(&env, &merchant).await;
    let refused = |body: &Value| body["code"] == -1;

    // No listener online: refused in words.
    let offline: Value = post_form(
        app,
        "/mapi.php",
        &epay_fields(&pid, "O-1", "wxpay", "1.00", "https://shop.example/n", &key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        refused(&offline)
            && offline["msg"]
                .as_str()
                .unwrap()
                .contains("no listener online"),
        "{offline}"
    );
    app.online_listener("wechat").await;

    // An empty copy of a signed field in front (left out of the sign, which drops empty
    // values) would strip the order of its notify_url: a field given twice with two values is
    // dropped, and the request fails its sign.
    let mut stripped = vec![("notify_url", String::new())];
    stripped.extend(epay_fields(
        &pid,
        "O-0",
        "wxpay",
        "1.00",
        "https://shop.example/n",
        &key,
    ));
    let answer: Value = post_form(app, "/mapi.php", &stripped)
        .await
        .json()
        .await
        .unwrap();
    assert!(refused(&answer), "{answer}");
    assert_eq!(env.db.count("SELECT count(*) FROM orders").await, 0);

    let mut forged = epay_fields(&pid, "O-2", "wxpay", "1.00", "https://shop.example/n", &key);
    forged.iter_mut().find(|(k, _)| *k == "money").unwrap().1 = "0.01".into();
    assert!(refused(
        &post_form(app, "/mapi.php", &forged)
            .await
            .json()
            .await
            .unwrap()
    ));
    assert!(refused(
        &post_form(
            app,
            "/mapi.php",
            &epay_fields(
                "999999",
                "O-3",
                "wxpay",
                "1.00",
                "https://shop.example/n",
                &key
            )
        )
        .await
        .json()
        .await
        .unwrap()
    ));
    assert!(refused(
        &post_form(
            app,
            "/mapi.php",
            &epay_fields(&pid, "O-4", "qqpay", "1.00", "https://shop.example/n", &key)
        )
        .await
        .json()
        .await
        .unwrap()
    ));
    assert!(refused(
        &post_form(
            app,
            "/mapi.php",
            &epay_fields(
                &pid,
                "O-5",
                "wxpay",
                "1.001",
                "https://shop.example/n",
                &key
            )
        )
        .await
        .json()
        .await
        .unwrap()
    ));
    assert!(refused(
        &post_form(
            app,
            "/mapi.php",
            &epay_fields(&pid, "O 6", "wxpay", "1.00", "https://shop.example/n", &key)
        )
        .await
        .json()
        .await
        .unwrap()
    ));

    // The same request again: the same order; other parameters: refused.
    let first: Value = post_form(
        app,
        "/mapi.php",
        &epay_fields(&pid, "O-7", "wxpay", "1.00", "https://shop.example/n", &key),
    )
    .await
    .json()
    .await
    .unwrap();
    let again: Value = post_form(
        app,
        "/mapi.php",
        &epay_fields(&pid, "O-7", "wxpay", "1.00", "https://shop.example/n", &key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(first["trade_no"], again["trade_no"]);
    let changed: Value = post_form(
        app,
        "/mapi.php",
        &epay_fields(&pid, "O-7", "wxpay", "2.00", "https://shop.example/n", &key),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(refused(&changed));

    // submit.php: a page, or a refusal page.
    let no_redirect = solopay::webhooks::sender::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let submit = no_redirect
        .get(url_with(
            app,
            "/submit.php",
            &epay_fields(&pid, "O-8", "wxpay", "3.00", "https://shop.example/n", &key),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(submit.status(), StatusCode::FOUND);
    let page = no_redirect
        .get(
            app.url(
                submit.headers()["location"]
                    .to_str()
                    .unwrap()
                    .split_once("/pay/")
                    .map(|(_, id)| format!("/pay/{id}"))
                    .unwrap()
                    .as_str(),
            ),
        )
        .send()
        .await
        .unwrap();
    let page = page.text().await.unwrap();
    assert!(
        page.contains("3.00") && page.contains("<svg"),
        "the page shows the amount and the QR code"
    );
    let bad = no_redirect
        .get(url_with(app, "/submit.php", &forged))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // api.php: the key must be right, the order the merchant's.
    let wrong_key: Value = get(
        app,
        "/api.php",
        &[
            ("act", "order".into()),
            ("pid", pid.clone()),
            ("key", "x".into()),
            ("out_trade_no", "O-7".into()),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(refused(&wrong_key));
    let pending: Value = get(
        app,
        "/api.php",
        &[
            ("act", "order".into()),
            ("pid", pid),
            ("key", key),
            ("trade_no", first["trade_no"].as_str().unwrap().into()),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (pending["code"].as_i64(), pending["status"].as_str()),
        (Some(1), Some("0"))
    );
    assert_eq!(env.db.count("SELECT count(*) FROM orders").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_switched_off_answer_404() {
    let TestEnv { app, db: _db } = spawn_app_with(|s| s.compat.clear()).await;
    for path in [
        "/createOrder",
        "/appPush",
        "/appHeart",
        "/getState",
        "/mapi.php",
        "/submit.php",
        "/api.php",
        "//submit.php",
        "/api/pay/create",
        "/api/pay/query",
        "/api/v1/order/create-transaction",
        "/pay/check-status/ord_x",
        "/CreateOrder",
        "/GetOrder",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

/// The payment page runs only its own style and script (a nonce in a strict CSP), cannot be
/// framed or sniffed; a return URL with a line break is refused when given, and one stored by an
/// older release never breaks the way back (the payer is told the order is paid instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_page_is_locked_down_and_a_stored_return_url_never_breaks_it() {
    let (env, vmq_app, _merchant, key) = vmq_setup(local_webhooks).await;
    let app = &vmq_app;
    let listener = env.app.online_listener("wechat").await.device;
    let no_redirect = solopay::webhooks::sender::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A returnUrl with CR/LF is refused at once.
    let mut fields = create_order_fields("P-crlf", "1", "5.00", "", "https://shop.example/n", &key);
    fields[5].1 = "https://shop.example/r\r\nSet-Cookie: a=b".into();
    let refused = vmq(get(app, "/createOrder", &fields).await).await;
    assert_eq!(refused["code"], -1, "{refused}");
    assert_eq!(env.db.count("SELECT count(*) FROM orders").await, 0);

    let created = vmq(get(
        app,
        "/createOrder",
        &create_order_fields("P-1", "1", "5.00", "", "https://shop.example/n", &key),
    )
    .await)
    .await;
    let order_id = created["data"]["orderId"].as_str().unwrap().to_string();
    let page = no_redirect
        .get(app.url(&format!("/pay/{order_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let policy = header("content-security-policy");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let nonce = policy
        .split("script-src 'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_string();
    assert!(nonce.len() >= 22, "{policy}");
    let body = page.text().await.unwrap();
    assert_eq!(
        body.matches(&format!("nonce=\"{nonce}\"")).count(),
        2,
        "style and script"
    );
    assert!(!body.contains("<script>") && !body.contains("<style>"));
    // Each page has its own nonce.
    let again = no_redirect
        .get(app.url(&format!("/pay/{order_id}")))
        .send()
        .await
        .unwrap();
    assert!(
        !again.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains(&nonce)
    );

    // An older release stored a return URL with a line break; the order is paid.
    env.db
        .execute(&format!(
            "UPDATE orders SET return_url = 'https://shop.example/r' || chr(13) || chr(10) || 'x: y' \
             WHERE id = '{order_id}'"
        ))
        .await;
    assert_eq!(
        created["data"]["reallyPrice"].as_f64(),
        Some(5.0),
        "{created}"
    );
    let paid = app.pay(&listener, "wechat", "5.00").await;
    assert_eq!(paid["result"], "matched", "{paid}");
    let back = no_redirect
        .get(app.url(&format!("/pay/{order_id}/return")))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::OK);
    assert!(back.headers().contains_key("content-security-policy"));
    assert!(back.text().await.unwrap().contains("支付成功"));
}
