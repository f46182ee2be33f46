//! 易支付 V2 clients, as 彩虹易支付's V2 SDK (`EpayCore.class.php`, shipped by mpay_v2) builds
//! them: RSA signs made and checked here with the `openssl` command line (what PHP's
//! `openssl_sign` and `openssl_verify` use), independently of the service.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::*;

/// A merchant key pair made by OpenSSL, in a folder of its own.
struct OpensslKey {
    dir: std::path::PathBuf,
}

impl OpensslKey {
    fn generate() -> OpensslKey {
        let dir = temp_dir();
        let status = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(dir.join("merchant.pem"))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        OpensslKey { dir }
    }

    /// The public key as 彩虹易支付's merchant page shows it: bare base64.
    fn public_base64(&self) -> String {
        let output = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(self.dir.join("merchant.pem"))
            .output()
            .unwrap();
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect()
    }

    /// `openssl_sign($data, $sign, $key, OPENSSL_ALGO_SHA256)`, base64.
    fn sign(&self, data: &str) -> String {
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(self.dir.join("merchant.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(data.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(output.stdout)
    }

    /// `openssl_verify` with the platform's public key (base64, as the SDK's config holds it).
    fn verify(&self, platform_key: &str, data: &str, sign: &str) -> bool {
        use base64::Engine;
        let wrapped: Vec<String> = platform_key
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            wrapped.join("\n")
        );
        std::fs::write(self.dir.join("platform.pub"), pem).unwrap();
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(sign) else {
            return false;
        };
        std::fs::write(self.dir.join("sig.bin"), signature).unwrap();
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(self.dir.join("platform.pub"))
            .arg("-signature")
            .arg(self.dir.join("sig.bin"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(data.as_bytes())
            .unwrap();
        child.wait().unwrap().success()
    }
}

impl Drop for OpensslKey {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The SDK's `getSignContent`: ksort; arrays, blank values, sign and sign_type left out.
fn sign_content(fields: &[(String, String)]) -> String {
    let mut sorted = fields.to_vec();
    ksort(&mut sorted);
    sorted
        .iter()
        .filter(|(k, v)| !(v.trim().is_empty() || k == "sign" || k == "sign_type"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The SDK's `verify($arr)` of an answer or a notify: a sign over its scalar fields, and a
/// timestamp within 300 s.
fn sdk_verifies(key: &OpensslKey, platform: &str, fields: &[(String, String)]) -> bool {
    let timestamp: i64 = field(fields, "timestamp").parse().unwrap_or(0);
    (now_unix() - timestamp).abs() <= 300
        && key.verify(platform, &sign_content(fields), &field(fields, "sign"))
}

fn answer_fields(answer: &Value) -> Vec<(String, String)> {
    answer
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| !v.is_array() && !v.is_object())
        .map(|(k, v)| (k.clone(), php_string(v)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caihong_v2_sdk_creates_pays_queries_and_verifies_every_signature() {
    let shop = Shop::open().await;
    shop.answer_callbacks_with("success");
    let key = OpensslKey::generate();
    let platform: Value = shop
        .app()
        .admin_get("/admin/epay-v2/platform-key")
        .await
        .json()
        .await
        .unwrap();
    let platform = platform["public_key"].as_str().unwrap().to_string();
    // The SDK's execute(): buildRequestParam, then a POST of http_build_query to apiurl . path.
    let execute = |path: &str, params: Vec<(&str, String)>, key: &OpensslKey| {
        let mut fields: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        fields.push(("pid".into(), shop.pid.clone()));
        fields.push(("timestamp".into(), now_unix().to_string()));
        let sign = key.sign(&sign_content(&fields));
        fields.push(("sign".into(), sign));
        fields.push(("sign_type".into(), "RSA".into()));
        let body = {
            let pairs: Vec<(&str, String)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            http_build_query(&pairs)
        };
        let url = format!("{}{path}", shop.base(true));
        let client = shop.app().client.clone();
        async move {
            let answer: Value = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer
        }
    };
    let order = |out_trade_no: &str, pay_type: &str| {
        vec![
            ("type", pay_type.to_string()),
            ("method", "web".to_string()),
            ("out_trade_no", out_trade_no.to_string()),
            ("notify_url", shop.receiver.url()),
            (
                "return_url",
                "https://dujiao-next.example/return".to_string(),
            ),
            ("name", "会员".to_string()),
            ("money", "8.80".to_string()),
            ("clientip", "203.0.113.5".to_string()),
        ]
    };

    // No public key set for the merchant yet: refused (signed, code != 0).
    let refused = execute("api/pay/create", order("V2-1", "alipay"), &key).await;
    assert_ne!(refused["code"], 0, "{refused}");
    assert!(sdk_verifies(&key, &platform, &answer_fields(&refused)));
    let patched = shop
        .app()
        .client
        .patch(
            shop.app()
                .url(&format!("/admin/merchants/{}", shop.merchant.id)),
        )
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "epay_v2_public_key": key.public_base64() }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), reqwest::StatusCode::OK);

    let created = execute("api/pay/create", order("V2-1", "alipay"), &key).await;
    assert_eq!(created["code"], 0, "{created}");
    assert!(
        sdk_verifies(&key, &platform, &answer_fields(&created)),
        "{created}"
    );
    assert_eq!(created["pay_type"], "jump");
    let trade_no = created["trade_no"].as_str().unwrap().to_string();
    assert!(
        created["pay_info"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/pay/{trade_no}"))
    );
    shop.pay(&trade_no).await;

    // notify_url.php: $epay->verify($_GET), then "success".
    let notify = shop.callbacks(1).await[0].query();
    assert!(sdk_verifies(&key, &platform, &notify), "{notify:?}");
    assert_eq!(field(&notify, "trade_status"), "TRADE_SUCCESS");
    assert_eq!(field(&notify, "money"), "8.80");
    assert!(shop.callback_settled(&trade_no).await);

    // orderStatus(): queryOrder, then status == 1.
    let queried = execute("api/pay/query", vec![("trade_no", trade_no.clone())], &key).await;
    assert!(sdk_verifies(&key, &platform, &answer_fields(&queried)));
    assert_eq!(queried["status"], 1);
    // Every merchant's answers are signed with the one platform key: no text in them can be
    // cut into other fields (`…&out_trade_no=<another shop's order>&…`). A name with `&` and
    // `=`, and a refusal repeating the request, come back with ＆ and ＝, signed as shown.
    let mut named = order("V2-2", "wxpay");
    named.iter_mut().find(|(k, _)| *k == "name").unwrap().1 = "Q&A=1".into();
    assert_eq!(execute("api/pay/create", named, &key).await["code"], 0);
    let queried = execute("api/pay/query", vec![("out_trade_no", "V2-2".into())], &key).await;
    assert_eq!(queried["name"], "Q＆A＝1", "{queried}");
    let mut odd = order("V2-3", "wxpay");
    odd.iter_mut().find(|(k, _)| *k == "method").unwrap().1 =
        "x&out_trade_no=V2-9&trade_status=TRADE_SUCCESS".into();
    let refused = execute("api/pay/create", odd, &key).await;
    assert_ne!(refused["code"], 0, "{refused}");
    for answer in [&queried, &refused] {
        let fields = answer_fields(answer);
        assert!(sdk_verifies(&key, &platform, &fields), "{answer}");
        for (k, v) in fields
            .iter()
            .filter(|(k, _)| !["pay_info", "sign"].contains(&k.as_str()))
        {
            assert!(!v.contains(['&', '=']), "{k}={v}");
        }
    }

    let info = execute("api/merchant/info", vec![], &key).await;
    assert_eq!(
        (info["code"].as_i64(), info["order_num"].as_i64()),
        (Some(0), Some(2))
    );
    let closed = execute("api/pay/close", vec![("trade_no", trade_no.clone())], &key).await;
    assert_ne!(closed["code"], 0, "a paid order cannot be closed");
    let refund = execute(
        "api/pay/refund",
        vec![("trade_no", trade_no), ("money", "8.80".into())],
        &key,
    )
    .await;
    assert_ne!(refund["code"], 0);

    // Refusals: another key's sign, a reused out_trade_no with other parameters, a type no
    // personal code has, a stale timestamp.
    let other = OpensslKey::generate();
    let forged = execute("api/pay/create", order("V2-2", "alipay"), &other).await;
    assert_ne!(forged["code"], 0);
    let mut changed = order("V2-1", "alipay");
    changed[6].1 = "9.90".into();
    assert_ne!(execute("api/pay/create", changed, &key).await["code"], 0);
    assert_ne!(
        execute("api/pay/create", order("V2-3", "qqpay"), &key).await["code"],
        0
    );
    let mut stale = order("V2-4", "alipay");
    stale.push(("timestamp", (now_unix() - 1000).to_string()));
    let mut fields: Vec<(String, String)> =
        stale.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    fields.push(("pid".into(), shop.pid.clone()));
    let sign = key.sign(&sign_content(&fields));
    fields.push(("sign".into(), sign));
    fields.push(("sign_type".into(), "RSA".into()));
    let stale: Value = shop
        .app()
        .client
        .post(shop.app().url("/api/pay/create"))
        .form_fields(&fields)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(stale["code"], 0, "{stale}");
    // V2-1 and V2-2; nothing of the refused requests.
    assert_eq!(shop.env.db.count("SELECT count(*) FROM orders").await, 2);
}
