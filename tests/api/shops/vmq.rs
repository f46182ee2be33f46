//! V免签 plugins: dujiaoka's `VpayController.php` (a browser redirect to `createOrder`) and
//! 彩虹易支付's `vmq` channel plugin as an upstream (`mchId`, no `param`).

use reqwest::StatusCode;

use super::*;
use crate::compat::md5;

async fn vmq_shop() -> Shop {
    let shop = Shop::open().await;
    let merchant_id = shop.merchant.id.clone();
    // The operator points V免签's merchant endpoints at the merchant (a second instance with
    // the setting, on the same database).
    let app = spawn_instance(&shop.env.db, move |s| {
        crate::compat::local_webhooks(s);
        s.vmq_merchant = Some(merchant_id);
    })
    .await;
    Shop {
        env: TestEnv {
            app,
            db: shop.env.db,
        },
        ..shop
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dujiaoka_vpay_redirects_to_the_page_and_checks_the_price() {
    let shop = vmq_shop().await;
    let (pay_id, param, kind, price) = ("20261206120000123", "DJ-ORDER-1", "2", php_float(1000));
    let sign = md5(&format!("{pay_id}{param}{kind}{price}{}", shop.key));
    let query = http_build_query(&[
        ("payId", pay_id.into()),
        ("price", price.clone()),
        ("param", param.into()),
        (
            "returnUrl",
            "https://dujiao.example/pay/vpay/return_url?order_id=DJ-ORDER-1".into(),
        ),
        ("notifyUrl", shop.receiver.url()),
        ("isHtml", "1".into()),
        ("type", kind.into()),
        ("sign", sign),
    ]);
    // merchant_pem . 'createOrder?': the base is entered with its trailing slash.
    let redirect = shop
        .browser()
        .get(format!("{}createOrder?{query}", shop.base(true)))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let order_id = order_of_page(&location(&redirect));
    let really = shop.pay(&order_id).await;
    let callback = shop.callbacks(1).await[0].query();
    let f = |name: &str| field(&callback, name);
    assert_eq!(
        f("sign"),
        md5(&format!(
            "{}{}{}{}{}{}",
            f("payId"),
            f("param"),
            f("type"),
            f("price"),
            f("reallyPrice"),
            shop.key
        ))
    );
    // bccomp($actual_price, $price, 2) == 0.
    assert_eq!(f("price"), "10.00");
    assert_eq!(f("reallyPrice"), really);
    assert_eq!(f("param"), "DJ-ORDER-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caihong_vmq_upstream_signs_without_param_and_reads_real_money() {
    let shop = vmq_shop().await;
    let (pay_id, kind, price) = ("2026120699999", "1", "12.30");
    let sign = md5(&format!("{pay_id}{kind}{price}{}", shop.key));
    let redirect = shop
        .browser()
        .get(format!(
            "{}createOrder?{}",
            shop.base(true),
            encode(&[
                ("mchId", shop.pid.as_str()),
                ("payId", pay_id),
                ("type", kind),
                ("price", price),
                ("isHtml", "1"),
                ("notifyUrl", shop.receiver.url().as_str()),
                ("returnUrl", "https://caihong.example/return"),
                ("sign", sign.as_str()),
            ])
        ))
        .send()
        .await
        .unwrap();
    let order_id = order_of_page(&location(&redirect));
    shop.pay(&order_id).await;
    let callback = shop.callbacks(1).await[0].query();
    let f = |name: &str| field(&callback, name);
    assert_eq!(
        f("sign"),
        md5(&format!(
            "{}{}{}{}{}",
            f("payId"),
            f("type"),
            f("price"),
            f("reallyPrice"),
            shop.key
        ))
    );
    assert_eq!(
        f("price"),
        "12.30",
        "the plugin compares it with its real_money"
    );
}
