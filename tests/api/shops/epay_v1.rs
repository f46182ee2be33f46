//! 易支付 V1 plugins: v2board and Xboard (`EPay.php`), card-system (`Pay/EPay/Api.php`),
//! dujiaoka (`YipayController.php`), new-api (go-epay), and 彩虹易支付 as an upstream (its
//! `epay` channel plugin).

use reqwest::StatusCode;
use serde_json::Value;

use super::*;
use crate::compat::{get, md5, post_form};

/// v2board's and Xboard's sign: `md5(stripslashes(urldecode(http_build_query(ksorted))) . key)`
/// — every field, empty ones included as `k=`.
fn v2board_sign(params: &[(String, String)], key: &str) -> String {
    let mut sorted = params.to_vec();
    ksort(&mut sorted);
    let text: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('\\', "")))
        .collect();
    md5(&format!("{}{key}", text.join("&")))
}

/// v2board's `pay()`: the redirect URL it gives the payer's browser.
fn v2board_pay_url(
    shop: &Shop,
    trade_no: &str,
    total_cents: i64,
    pay_type: Option<&str>,
) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("money".into(), php_float(total_cents)),
        ("name".into(), trade_no.into()),
        ("notify_url".into(), shop.receiver.url()),
        (
            "return_url".into(),
            "https://v2board.example/#/order".into(),
        ),
        ("out_trade_no".into(), trade_no.into()),
        ("pid".into(), shop.pid.clone()),
    ];
    if let Some(pay_type) = pay_type {
        params.push(("type".into(), pay_type.into()));
    }
    ksort(&mut params);
    let sign = v2board_sign(&params, &shop.key);
    params.push(("sign".into(), sign));
    params.push(("sign_type".into(), "MD5".into()));
    let query: Vec<(&str, String)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    // The configured URL ends in `/`; the plugin adds `/submit.php`.
    format!(
        "{}/submit.php?{}",
        shop.base(true),
        http_build_query(&query)
    )
}

/// v2board's `notify()`: the sign over every received field but sign/sign_type.
fn v2board_verifies(fields: &[(String, String)], key: &str) -> bool {
    let kept: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .cloned()
        .collect();
    field(fields, "sign") == v2board_sign(&kept, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2board_without_type_pays_through_the_cashier_page() {
    let shop = Shop::open().await;
    shop.answer_callbacks_with("success");
    let browser = shop.browser();
    let url = v2board_pay_url(&shop, "2026120612345678", 1050, None);
    assert!(url.contains("//submit.php?money=10.5&"), "{url}");

    let cashier = browser.get(&url).send().await.unwrap();
    assert_eq!(cashier.status(), StatusCode::FOUND);
    let cashier_path = location(&cashier);
    assert!(
        cashier_path.starts_with("/pay/checkout/chk_"),
        "{cashier_path}"
    );
    // Sent again (the payer reloads): the same checkout.
    let again = browser.get(&url).send().await.unwrap();
    assert_eq!(location(&again), cashier_path);
    let page = browser
        .get(shop.app().url(&cashier_path))
        .send()
        .await
        .unwrap();
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("form-action 'self'")
    );
    let page = page.text().await.unwrap();
    assert!(
        page.contains("10.50")
            && page.contains("value=\"wechat\"")
            && page.contains("value=\"alipay\"")
    );
    // The shop asks before the payer chose: unpaid, no type yet.
    let pending: Value = get(
        shop.app(),
        "/api.php",
        &[
            ("act", "order".into()),
            ("pid", shop.pid.clone()),
            ("key", shop.key.clone()),
            ("out_trade_no", "2026120612345678".into()),
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

    let chosen = browser
        .post(shop.app().url(&cashier_path))
        .form_fields(&[("channel", "alipay")])
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.status(), StatusCode::SEE_OTHER);
    let order_id = order_of_page(&location(&chosen));
    // A second choice (another tab, another channel) finds the first.
    let twice = browser
        .post(shop.app().url(&cashier_path))
        .form_fields(&[("channel", "wechat")])
        .send()
        .await
        .unwrap();
    assert_eq!(order_of_page(&location(&twice)), order_id);
    let order = shop.app().get_order(&order_id).await;
    assert_eq!(
        (order["channel"].as_str(), order["amount"].as_str()),
        (Some("alipay"), Some("10.50"))
    );

    shop.pay(&order_id).await;
    let notify = shop.callbacks(1).await[0].query();
    assert!(v2board_verifies(&notify, &shop.key), "{notify:?}");
    assert_eq!(field(&notify, "out_trade_no"), "2026120612345678");
    assert_eq!(field(&notify, "trade_status"), "TRADE_SUCCESS");
    assert!(shop.callback_settled(&order_id).await);
    // The shop's reload after payment goes to the paid order.
    let after = browser.get(&url).send().await.unwrap();
    assert_eq!(order_of_page(&location(&after)), order_id);
    assert_eq!(
        shop.receiver.received().len(),
        1,
        "the callback is sent once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xboard_with_a_configured_type_pays_directly_and_refuses_what_it_must() {
    let shop = Shop::open().await;
    let browser = shop.browser();
    let paid = browser
        .get(v2board_pay_url(&shop, "X1001", 1000, Some("wxpay")))
        .send()
        .await
        .unwrap();
    let order_id = order_of_page(&location(&paid));
    assert!(order_id.starts_with("ord_"), "{order_id}");
    shop.pay(&order_id).await;
    let notify = shop.callbacks(1).await[0].query();
    assert!(v2board_verifies(&notify, &shop.key));
    assert_eq!(field(&notify, "money"), "10.00");

    // A type no personal code has: refused, naming what is served.
    let qq = browser
        .get(v2board_pay_url(&shop, "X1002", 1000, Some("qqpay")))
        .send()
        .await
        .unwrap();
    assert_eq!(qq.status(), StatusCode::BAD_REQUEST);
    let page = qq.text().await.unwrap();
    assert!(
        page.contains("qqpay") && page.contains("alipay") && page.contains("wxpay"),
        "{page}"
    );
    // The same out_trade_no with another amount: refused.
    let reused = browser
        .get(v2board_pay_url(&shop, "X1001", 2000, Some("wxpay")))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    // A bad sign: refused.
    let forged =
        v2board_pay_url(&shop, "X1003", 1000, Some("wxpay")).replace("money=10", "money=1");
    assert_eq!(
        browser.get(forged).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(shop.env.db.count("SELECT count(*) FROM orders").await, 1);
}

/// card-system's `getSign`: ksort, PHP-falsy values and sign/sign_type skipped.
fn card_system_sign(params: &[(String, String)], key: &str) -> String {
    let mut sorted = params.to_vec();
    ksort(&mut sorted);
    let text: Vec<String> = sorted
        .iter()
        .filter(|(k, v)| !(v.is_empty() || v == "0" || k == "sign" || k == "sign_type"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    md5(&format!("{}{key}", text.join("&")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_system_epay_posts_to_double_slash_submit_and_reads_string_status() {
    let shop = Shop::open().await;
    let gateway = shop.base(true);
    let go_pay = |out_trade_no: &str, sitename: &str, money_cents: i64| {
        let mut params: Vec<(String, String)> = vec![
            ("pid".into(), shop.pid.clone()),
            ("type".into(), "alipay".into()),
            ("out_trade_no".into(), out_trade_no.into()),
            ("notify_url".into(), shop.receiver.url()),
            (
                "return_url".into(),
                "https://card.example/pay/return/3".into(),
            ),
            ("name".into(), "Steam 充值卡".into()),
            (
                "money".into(),
                format!("{}.{:02}", money_cents / 100, money_cents % 100),
            ),
            ("sitename".into(), sitename.into()),
            ("sign_type".into(), "MD5".into()),
        ];
        let sign = card_system_sign(&params, &shop.key);
        params.push(("sign".into(), sign));
        params
    };
    let browser = shop.browser();
    let post = |params: Vec<(String, String)>| {
        browser
            .post(format!("{gateway}/submit.php"))
            .form_fields(&params)
            .send()
    };
    // SYS_NAME "0": card-system skips it (PHP-falsy), other plugins would sign it.
    let created = post(go_pay("CS1001", "0", 1000)).await.unwrap();
    assert_eq!(
        created.status(),
        StatusCode::FOUND,
        "{:?}",
        created.text().await
    );
    let order_id = order_of_page(&location(&created));
    shop.pay(&order_id).await;

    // card-system's notify check: its own fields only, `===` on the sign.
    let notify = shop.callbacks(1).await[0].query();
    let mut data: Vec<(String, String)> =
        ["trade_no", "out_trade_no", "type", "money", "trade_status"]
            .iter()
            .map(|k| (k.to_string(), field(&notify, k)))
            .collect();
    data.push(("pid".into(), shop.pid.clone()));
    if notify.iter().any(|(k, _)| k == "name") {
        data.push(("name".into(), field(&notify, "name")));
    }
    assert_eq!(field(&notify, "sign"), card_system_sign(&data, &shop.key));
    assert_eq!(
        (field(&notify, "money").parse::<f64>().unwrap() * 100.0).round() as i64,
        1000
    );

    // Its active query: gateway . 'api.php?' — the status must be the string "1".
    let query = http_build_query(&[
        ("act", "order".into()),
        ("pid", shop.pid.clone()),
        ("key", shop.key.clone()),
        ("out_trade_no", "CS1001".into()),
    ]);
    let text = shop
        .app()
        .client
        .get(format!("{gateway}api.php?{query}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(data["status"], Value::String("1".into()), "{text}");
    assert_eq!(data["pid"], Value::String(shop.pid.clone()));
    assert_eq!(data["money"], "10.00");

    // A sign over "0" as if it counted, and a sign that holds under no spelling: the first is
    // another plugin's spelling (accepted), the second is refused.
    let mut kept = go_pay("CS1002", "0", 500);
    let sign = crate::compat::epay_sign(
        &kept
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect::<Vec<_>>(),
        &shop.key,
    );
    kept.last_mut().unwrap().1 = sign;
    assert_eq!(post(kept).await.unwrap().status(), StatusCode::FOUND);
    let mut forged = go_pay("CS1003", "0", 500);
    forged.last_mut().unwrap().1 = md5("forged");
    assert_eq!(
        post(forged).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

/// dujiaoka's and go-epay's sign: ksort, empty values and sign/sign_type skipped.
fn skip_empty_sign(params: &[(String, String)], key: &str) -> String {
    let mut sorted = params.to_vec();
    ksort(&mut sorted);
    let text: Vec<String> = sorted
        .iter()
        .filter(|(k, v)| !(v.is_empty() || k == "sign" || k == "sign_type"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    md5(&format!("{}{key}", text.join("&")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dujiaoka_yipay_submits_by_get_and_refuses_qqpay() {
    let shop = Shop::open().await;
    let form = |payway: &str, order_sn: &str| {
        let mut params: Vec<(String, String)> = vec![
            ("pid".into(), shop.pid.clone()),
            ("type".into(), payway.into()),
            ("out_trade_no".into(), order_sn.into()),
            (
                "return_url".into(),
                format!("https://dujiao.example/yipay/return_url?order_id={order_sn}"),
            ),
            ("notify_url".into(), shop.receiver.url()),
            ("name".into(), order_sn.into()),
            ("money".into(), php_float(1000)),
            ("sign".into(), shop.key.clone()),
            ("sign_type".into(), "MD5".into()),
        ];
        let sign = skip_empty_sign(&params, &shop.key);
        params.iter_mut().find(|(k, _)| k == "sign").unwrap().1 = sign;
        params
    };
    let browser = shop.browser();
    // The configured full URL …/submit.php, a GET form.
    let created = browser
        .get(format!(
            "{}/submit.php?{}",
            shop.base(false),
            encode(&form("wxpay", "DJ1001"))
        ))
        .send()
        .await
        .unwrap();
    let order_id = order_of_page(&location(&created));
    shop.pay(&order_id).await;
    let notify = shop.callbacks(1).await[0].query();
    assert_eq!(field(&notify, "sign"), skip_empty_sign(&notify, &shop.key));
    assert!(!field(&notify, "trade_no").is_empty());
    // completedOrder compares the amount with bccomp(…, 2): 10.00 is the order's 10.
    assert_eq!(field(&notify, "money"), "10.00");
    let qq = browser
        .get(format!(
            "{}/submit.php?{}",
            shop.base(false),
            encode(&form("qqpay", "DJ1002"))
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(qq.status(), StatusCode::BAD_REQUEST);
    assert!(qq.text().await.unwrap().contains("qqpay"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_api_go_epay_posts_a_form_and_verifies_the_notify() {
    let shop = Shop::open().await;
    let mut params: Vec<(String, String)> = vec![
        ("pid".into(), shop.pid.clone()),
        ("type".into(), "alipay".into()),
        ("out_trade_no".into(), "USR1NO1714000000".into()),
        ("notify_url".into(), shop.receiver.url()),
        ("name".into(), "TUC10".into()),
        ("money".into(), "10.00".into()),
        ("device".into(), "pc".into()),
        ("sign_type".into(), "MD5".into()),
        ("return_url".into(), "https://newapi.example/log".into()),
        ("sign".into(), String::new()),
    ];
    let sign = skip_empty_sign(&params, &shop.key);
    params.iter_mut().find(|(k, _)| k == "sign").unwrap().1 = sign;
    // path.Join: the base's trailing slash never doubles.
    let created = shop
        .browser()
        .post(format!("{}/submit.php", shop.base(false)))
        .form_fields(&params)
        .send()
        .await
        .unwrap();
    let order_id = order_of_page(&location(&created));
    shop.pay(&order_id).await;
    let notify = shop.callbacks(1).await[0].query();
    assert_eq!(field(&notify, "sign"), skip_empty_sign(&notify, &shop.key));
    assert_eq!(field(&notify, "trade_status"), "TRADE_SUCCESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caihong_epay_as_upstream_uses_mapi_query_and_is_refused_refunds() {
    let shop = Shop::open().await;
    let mut params: Vec<(String, String)> = vec![
        ("pid".into(), shop.pid.clone()),
        ("type".into(), "wxpay".into()),
        ("out_trade_no".into(), "2026120610001".into()),
        ("notify_url".into(), shop.receiver.url()),
        ("return_url".into(), "https://caihong.example/return".into()),
        ("name".into(), "商品".into()),
        ("money".into(), "12.34".into()),
        ("clientip".into(), "203.0.113.9".into()),
        ("device".into(), "mobile".into()),
        ("param".into(), String::new()),
    ];
    let sign = skip_empty_sign(&params, &shop.key);
    params.push(("sign".into(), sign));
    params.push(("sign_type".into(), "MD5".into()));
    let fields: Vec<(&str, String)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let created: Value = post_form(shop.app(), "//mapi.php", &fields)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(created["code"], 1, "{created}");
    assert!(created["payurl"].as_str().unwrap().contains("/pay/ord_"));
    let trade_no = created["trade_no"].as_str().unwrap().to_string();
    let real_money = shop.pay(&trade_no).await;
    assert_eq!(created["real_money"].as_str(), Some(real_money.as_str()));
    let notify = shop.callbacks(1).await[0].query();
    assert_eq!(field(&notify, "sign"), skip_empty_sign(&notify, &shop.key));
    // Its plugin checks money against its order's real_money, which is `money`.
    assert_eq!(field(&notify, "money"), "12.34");

    let shop = &shop;
    let api = |act: &str, extra: Vec<(&'static str, String)>| {
        let mut fields = vec![
            ("act", act.to_string()),
            ("pid", shop.pid.clone()),
            ("key", shop.key.clone()),
        ];
        fields.extend(extra);
        async move {
            let answer: Value = get(shop.app(), "//api.php", &fields)
                .await
                .json()
                .await
                .unwrap();
            answer
        }
    };
    let order = api("order", vec![("trade_no", trade_no.clone())]).await;
    assert_eq!(
        (order["code"].as_i64(), order["status"].as_str()),
        (Some(1), Some("1"))
    );
    let orders = api("orders", vec![("limit", "10".into())]).await;
    assert_eq!(orders["data"][0]["trade_no"], trade_no.as_str());
    let merchant = api("query", vec![]).await;
    assert_eq!(
        (merchant["pid"].as_str(), merchant["orders"].as_str()),
        (Some(shop.pid.as_str()), Some("1"))
    );
    assert_eq!(merchant["order_money_today"], "12.34");
    assert_eq!(api("settle", vec![]).await["data"], Value::Array(vec![]));
    let refund = api(
        "refund",
        vec![("trade_no", trade_no.clone()), ("money", "12.34".into())],
    )
    .await;
    assert_eq!(refund["code"], -1);
    assert!(refund["msg"].as_str().unwrap().contains("退款"));
    let wrong_key: Value = get(
        shop.app(),
        "/api.php",
        &[
            ("act", "query".into()),
            ("pid", shop.pid.clone()),
            ("key", "x".into()),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(wrong_key["code"], -1);
    // Only these three names are joined: `//orders` is no route.
    assert_eq!(
        shop.app().status_of("//admin/merchants").await,
        StatusCode::NOT_FOUND
    );
}
