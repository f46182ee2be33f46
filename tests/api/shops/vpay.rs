//! card-system's "VPay" gateway (`Pay/VPay/Api.php`, tested by its authors against
//! dreamncn/VPay): POST `/CreateOrder` with a hand-built body, `/GetOrder`, and the callback
//! answered `{"state":0,"msg":"okok"}`.

use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest;

use super::*;
use crate::receiver::Answer;

/// card-system's `getSign`: ksort, `k=v` joined with `&`, then `&key=`, SHA-256, upper case.
fn vpay_sign(params: &[(String, String)], key: &str) -> String {
    let mut sorted = params.to_vec();
    ksort(&mut sorted);
    let text: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    hex::encode(sha2::Sha256::digest(
        format!("{}&key={key}", text.join("&")).as_bytes(),
    ))
    .to_uppercase()
}

/// card-system's `getPostData`: the same text, unencoded, with `&sign=` appended.
fn post_data(params: &[(String, String)], key: &str) -> String {
    let mut sorted = params.to_vec();
    ksort(&mut sorted);
    let text: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}&sign={}", text.join("&"), vpay_sign(params, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_system_vpay_creates_pays_and_reads_string_states() {
    let shop = Shop::open().await;
    shop.receiver.answer_with([Answer {
        status: 200,
        headers: vec![],
        body: r#"{"state":0,"msg":"okok"}"#.into(),
    }]);
    let create = |pay_id: &str, payway: &str, cents: i64| {
        let params: Vec<(String, String)> = vec![
            ("payId".into(), pay_id.into()),
            // floatval(sprintf('%.2f', …)): 10.00 becomes 10.
            ("price".into(), php_float(cents)),
            ("param".into(), String::new()),
            ("type".into(), payway.into()),
            ("isHtml".into(), "0".into()),
            ("appid".into(), shop.pid.clone()),
        ];
        let body = post_data(&params, &shop.key);
        // gateway . '/CreateOrder', the gateway entered without a trailing slash.
        shop.app()
            .client
            .post(format!("{}/CreateOrder", shop.base(false)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let response: Value = create("2026120600001", "2", 1000)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["code"], Value::from(0), "{response}");
    let data = &response["data"]["data"];
    let order_id = data["orderId"].as_str().unwrap().to_string();
    assert!(data["payUrl"].as_str().unwrap().starts_with("alipay://"));
    let really = shop.pay(&order_id).await;
    assert_eq!(data["reallyPrice"].as_str(), Some(really.as_str()));

    // The callback, checked as card-system does: $_GET fields, the same sign.
    let callback = shop.callbacks(1).await[0].query();
    let signed: Vec<(String, String)> = ["payId", "param", "type", "price", "reallyPrice"]
        .iter()
        .map(|k| (k.to_string(), field(&callback, k)))
        .collect();
    assert_eq!(field(&callback, "sign"), vpay_sign(&signed, &shop.key));
    assert_eq!(field(&callback, "price"), "10");
    assert!(shop.callback_settled(&order_id).await);

    // Its active query: POST /GetOrder orderId=…, states compared as strings.
    let got: Value = shop
        .app()
        .client
        .post(format!("{}/GetOrder", shop.base(false)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("orderId={order_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["code"], Value::from(0));
    assert_eq!(got["data"]["state"], Value::String("3".into()), "{got}");
    assert_eq!(got["data"]["payId"], "2026120600001");
    assert_eq!(got["data"]["price"], "10");

    // Refusals: a reused payId with another price, a bad sign, a type VPay has no code for;
    // V免签's /createOrder is another endpoint (paths are case-sensitive).
    let reused: Value = create("2026120600001", "2", 2000)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reused["code"], -1, "{reused}");
    let mut params = vec![
        ("payId".to_string(), "X2".to_string()),
        ("appid".into(), shop.pid.clone()),
    ];
    params.push(("price".into(), "10".into()));
    params.push(("type".into(), "1".into()));
    let forged = format!(
        "{}&sign=00",
        params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let bad: Value = shop
        .app()
        .client
        .post(format!("{}/CreateOrder", shop.base(false)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(forged)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (bad["code"].as_i64(), bad["msg"].as_str()),
        (Some(-1), Some("签名校验失败"))
    );
    let bad_type: Value = create("X3", "3", 1000).await.unwrap().json().await.unwrap();
    assert_eq!(bad_type["code"], -1);
    let lower = shop
        .app()
        .client
        .post(shop.app().url("/createOrder"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        lower.status(),
        StatusCode::OK,
        "V免签's endpoint answers in its own words"
    );
    assert_eq!(shop.env.db.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(shop.receiver.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpay_refuses_an_order_whose_callback_could_be_cut_into_another() {
    let shop = Shop::open().await;
    // The callback signs `param=…&payId=…&price=…` joined: with `&` or `=` in the payId or the
    // param, a payer's own signed callback reads, cut differently, as one for another payId.
    for (pay_id, param, field) in [("V-1", "&payId=V-0", "param"), ("V-2&x=", "", "payId")] {
        let mut params: Vec<(String, String)> = vec![
            ("payId".into(), pay_id.into()),
            ("price".into(), "10".into()),
            ("param".into(), param.into()),
            ("type".into(), "1".into()),
            ("isHtml".into(), "0".into()),
            ("appid".into(), shop.pid.clone()),
        ];
        let sign = vpay_sign(&params, &shop.key);
        params.push(("sign".into(), sign));
        let answer = json_answer(
            shop.app()
                .client
                .post(format!("{}/CreateOrder", shop.base(false)))
                .form(&params),
        )
        .await;
        assert_eq!(answer["code"], -1, "{answer}");
        let msg = answer["msg"].as_str().unwrap();
        assert!(msg.contains(field) && msg.contains("& or ="), "{msg}");
    }
    assert_eq!(shop.env.db.count("SELECT count(*) FROM orders").await, 0);
}
