//! dujiaoka's Epusdt driver (`EpusdtController.php`) against the epusdt API: a JSON POST to the
//! configured full URL, a JSON callback checked with the same md5 signature, answered `ok`.

use serde_json::{Value, json};

use super::*;
use crate::compat::md5;

/// dujiaoka's `epusdtSign`: ksort, `$val == ''` skipped, `"$key=$val"` (a float printed as PHP
/// prints it), `&`-joined, the token appended.
fn epusdt_sign(parameter: &serde_json::Map<String, Value>, token: &str) -> String {
    let mut pairs: Vec<(String, String)> = parameter
        .iter()
        .filter(|(k, _)| k.as_str() != "signature")
        .map(|(k, v)| (k.clone(), php_string(v)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    ksort(&mut pairs);
    let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    md5(&format!("{}{token}", text.join("&")))
}

/// dujiaoka's gateway(): the body it posts (PHP's json_encode prints (float)10.00 as 10.0).
fn dujiaoka_body(order_sn: &str, notify: &str, token: &str, amount: f64) -> String {
    let mut parameter = serde_json::Map::new();
    parameter.insert("amount".into(), json!(amount));
    parameter.insert("order_id".into(), json!(order_sn));
    parameter.insert(
        "redirect_url".into(),
        json!(format!(
            "https://dujiao.example/pay/epusdt/return_url?order_id={order_sn}"
        )),
    );
    parameter.insert("notify_url".into(), json!(notify));
    let signature = epusdt_sign(&parameter, token);
    parameter.insert("signature".into(), json!(signature));
    let body = Value::Object(parameter).to_string();
    // serde_json prints 10.0 as 10.0, as PHP does.
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dujiaoka_epusdt_creates_a_transaction_and_verifies_the_callback() {
    let shop = Shop::open().await;
    shop.receiver.answer_with([crate::receiver::Answer {
        status: 200,
        headers: vec![],
        body: "ok".into(),
    }]);
    let url = format!("{}/api/v1/order/create-transaction", shop.base(false));
    let post = |body: String| {
        shop.app()
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // dujiaoka sends no trade_type: the merchant has no default channel yet.
    let body = dujiaoka_body("DJE1001", &shop.receiver.url(), &shop.key, 10.0);
    assert!(body.contains("\"amount\":10.0"), "{body}");
    let refused: Value = post(body.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(refused["status_code"], 400, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("trade_type"));
    let patched = shop
        .app()
        .client
        .patch(
            shop.app()
                .url(&format!("/admin/merchants/{}", shop.merchant.id)),
        )
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "epusdt_channel": "wechat" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), reqwest::StatusCode::OK);

    let created: Value = post(body.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(created["status_code"], 200, "{created}");
    let data = &created["data"];
    let trade_id = data["trade_id"].as_str().unwrap().to_string();
    assert_eq!(data["order_id"], "DJE1001");
    assert_eq!(data["amount"], json!(10));
    assert!(
        data["payment_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/pay/{trade_id}"))
    );
    assert!(data["expiration_time"].as_i64().unwrap() > now_unix());
    // The same body again: the same transaction.
    let again: Value = post(body).await.unwrap().json().await.unwrap();
    assert_eq!(again["data"]["trade_id"], trade_id.as_str());

    let actual = shop.pay(&trade_id).await;
    let callback = &shop.callbacks(1).await[0];
    assert_eq!(callback.method, "POST");
    let payload = callback.json();
    let fields = payload.as_object().unwrap();
    assert_eq!(
        fields["signature"].as_str().unwrap(),
        epusdt_sign(fields, &shop.key)
    );
    assert_eq!(
        (fields["status"].as_i64(), fields["order_id"].as_str()),
        (Some(2), Some("DJE1001"))
    );
    // completedOrder(order_id, amount, trade_id): the amount is the order's.
    assert_eq!(php_string(&fields["amount"]), "10");
    assert_eq!(
        php_string(&fields["actual_amount"]),
        super::php_float((actual.parse::<f64>().unwrap() * 100.0).round() as i64)
    );
    assert!(shop.callback_settled(&trade_id).await);
    let status: Value = shop
        .app()
        .client
        .get(shop.app().url(&format!("/pay/check-status/{trade_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["data"]["status"], 2);

    // Refusals: a bad signature, a reused order_id with another amount, a trade_type that is
    // no channel.
    let forged = dujiaoka_body("DJE1002", &shop.receiver.url(), "not the token", 10.0);
    let bad: Value = post(forged).await.unwrap().json().await.unwrap();
    assert_eq!(bad["status_code"], 401);
    let reused: Value = post(dujiaoka_body(
        "DJE1001",
        &shop.receiver.url(),
        &shop.key,
        20.0,
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(reused["status_code"], 10002);
    let mut usdt = serde_json::Map::new();
    usdt.insert("amount".into(), json!(5));
    usdt.insert("order_id".into(), json!("BE1"));
    usdt.insert("notify_url".into(), json!(shop.receiver.url()));
    usdt.insert("redirect_url".into(), json!("https://be.example/r"));
    usdt.insert("trade_type".into(), json!("usdt.trc20"));
    let signature = epusdt_sign(&usdt, &shop.key);
    usdt.insert("signature".into(), json!(signature));
    let unsupported: Value = post(Value::Object(usdt).to_string())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unsupported["status_code"], 400);
    assert!(
        unsupported["message"]
            .as_str()
            .unwrap()
            .contains("usdt.trc20")
    );
    assert_eq!(shop.env.db.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_id_that_could_cut_the_callback_into_another_is_refused() {
    let shop = Shop::open().await;
    let url = format!("{}/api/v1/order/create-transaction", shop.base(false));
    // The callback signs `amount=…&order_id=…&status=…` joined: an order_id with `&` or `=`
    // makes a payer's own signed callback read, cut differently, as one for another order.
    for order_id in ["DJE1&status=2", "DJE2="] {
        let body = dujiaoka_body(order_id, &shop.receiver.url(), &shop.key, 10.0);
        let answer = json_answer(
            shop.app()
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_eq!(answer["status_code"], 400, "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("without & or ="),
            "{answer}"
        );
    }
    assert_eq!(shop.env.db.count("SELECT count(*) FROM orders").await, 0);
}
