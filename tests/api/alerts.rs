//! Owner alerts, through HTTP on a real Postgres: each channel's exact request and signature at a
//! local receiver (and a local SMTP server), each alert kind sent once soon after its cause,
//! dedupe and the digest, a failing channel retried without holding up merchant webhooks, and
//! two instances sending each alert once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use solopay::config::Settings;

use crate::helpers::*;
use crate::receiver::{Answer, Received, Receiver};

fn fast(s: &mut Settings) {
    s.allow_private_webhooks = true;
    s.alert_retry_schedule = vec![Duration::from_millis(300); 3];
    s.webhook_retry_schedule = vec![Duration::from_millis(200); 7];
    s.webhook_poll_interval = Duration::from_millis(100);
}

async fn add_channel(app: &TestApp, name: &str, settings: Value, kinds: Option<Value>) -> Value {
    let mut body = json!({"name": name, "settings": settings});
    if let Some(kinds) = kinds {
        body["kinds"] = kinds;
    }
    let response = app.admin_post("/admin/alert-channels", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// Waits for the `count`th message at the owner; the body of the digest among them.
async fn digest_received(owner: &Receiver, count: usize) -> String {
    let received = owner.wait_for(count, Duration::from_secs(10)).await;
    let digest = received
        .iter()
        .find(|r| r.json()["data"]["kind"] == "digest")
        .expect("a digest");
    digest.json()["data"]["body"].as_str().unwrap().to_string()
}

/// A Standard Webhooks channel to a local receiver standing for the owner.
async fn owner_channel(app: &TestApp, owner: &Receiver, kinds: Option<Value>) -> Value {
    add_channel(
        app,
        "owner",
        json!({"kind": "webhook", "url": owner.url()}),
        kinds,
    )
    .await
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The alerts a webhook channel received, by kind.
fn kinds_received(received: &[Received]) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for request in received {
        let kind = request.json()["data"]["kind"].as_str().unwrap().to_string();
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

/// A local SMTP server that takes every message and keeps its text.
struct SmtpServer {
    port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = messages.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 test ESMTP\r\n").await;
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(message) = data.as_mut() {
                            if line == "." {
                                kept.lock().unwrap().push(data.take().unwrap());
                                let _ = write.write_all(b"250 queued\r\n").await;
                            } else {
                                message.push_str(&line);
                                message.push('\n');
                            }
                            continue;
                        }
                        let verb = line.split(' ').next().unwrap_or_default().to_uppercase();
                        let answer: &[u8] = match verb.as_str() {
                            "EHLO" => b"250-test\r\n250 8BITMIME\r\n",
                            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                            "DATA" => {
                                data = Some(String::new());
                                b"354 go on\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => b"502 no\r\n",
                        };
                        let _ = write.write_all(answer).await;
                    }
                });
            }
        });
        SmtpServer { port, messages }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_gets_its_services_exact_request_and_signature() {
    let TestEnv { app, db: _db } = spawn_app_with(fast).await;
    let services: BTreeMap<&str, Receiver> = [
        ("telegram", Receiver::start().await),
        ("wecom", Receiver::start().await),
        ("dingtalk", Receiver::start().await),
        ("feishu", Receiver::start().await),
        ("bark", Receiver::start().await),
        ("webhook", Receiver::start().await),
    ]
    .into_iter()
    .collect();
    services["telegram"].answer_usually(Answer::json(r#"{"ok":true,"result":{}}"#));
    services["wecom"].answer_usually(Answer::json(r#"{"errcode":0,"errmsg":"ok"}"#));
    services["dingtalk"].answer_usually(Answer::json(r#"{"errcode":0,"errmsg":"ok"}"#));
    services["feishu"].answer_usually(Answer::json(r#"{"code":0,"msg":"success","data":{}}"#));
    services["bark"].answer_usually(Answer::json(r#"{"code":200,"message":"success"}"#));
    let smtp = SmtpServer::start().await;
    let base = |name: &str| format!("http://127.0.0.1:{}", services[name].port);

    add_channel(&app, "tg", json!({"kind": "telegram", "bot_token": "123:abc", "chat_id": "-1001", "api_base": base("telegram")}), None).await;
    add_channel(
        &app,
        "wecom",
        json!({"kind": "wecom", "key": "wk-1", "api_base": base("wecom")}),
        None,
    )
    .await;
    add_channel(&app, "ding", json!({"kind": "dingtalk", "access_token": "dt-1", "secret": "SECabc", "api_base": base("dingtalk")}), None).await;
    add_channel(
        &app,
        "feishu",
        json!({"kind": "feishu", "hook": "fh-1", "secret": "fs-1", "api_base": base("feishu")}),
        None,
    )
    .await;
    add_channel(
        &app,
        "bark",
        json!({"kind": "bark", "device_key": "bk-1", "server": base("bark")}),
        None,
    )
    .await;
    let webhook = add_channel(
        &app,
        "hook",
        json!({"kind": "webhook", "url": services["webhook"].url()}),
        None,
    )
    .await;
    let webhook_secret = webhook["webhook_secret"].as_str().unwrap().to_string();
    assert!(webhook_secret.starts_with("whsec_"));
    add_channel(
        &app,
        "mail",
        json!({"kind": "email", "host": "127.0.0.1", "port": smtp.port, "security": "none",
                                     "from": "solopay@shop.example", "to": ["owner@shop.example"]}),
        None,
    )
    .await;
    // Secrets are never shown again.
    let listed: Value = app
        .admin_get("/admin/alert-channels")
        .await
        .json()
        .await
        .unwrap();
    let text = listed.to_string();
    for secret in [
        "123:abc",
        "wk-1",
        "SECabc",
        "fh-1",
        "fs-1",
        "bk-1",
        &webhook_secret,
    ] {
        assert!(!text.contains(secret), "{secret} shown in {text}");
    }

    // A payment nobody owed: kept, and the owner is told on every channel.
    let listener = app.online_listener("wechat").await;
    let kept = app.pay(&listener.device, "wechat", "9.99").await;
    assert_eq!(kept["result"], "unmatched");
    let caused = Instant::now();
    for (name, receiver) in &services {
        let received = receiver.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(received.len(), 1, "{name}");
    }
    let mail_arrived = eventually(Duration::from_secs(10), || async {
        !smtp.messages().is_empty()
    })
    .await;
    assert!(mail_arrived, "no e-mail");
    println!(
        "every channel had the alert {:?} after its cause",
        caused.elapsed()
    );

    let only = |name: &str| services[name].received().remove(0);
    let telegram = only("telegram");
    assert_eq!(telegram.uri, "/bot123:abc/sendMessage");
    assert_eq!(telegram.json()["chat_id"], "-1001");
    let telegram_text = telegram.json()["text"].as_str().unwrap().to_string();
    assert!(
        telegram_text.starts_with("[solopay] A payment matched no order: ¥9.99"),
        "{telegram_text}"
    );

    let wecom = only("wecom");
    assert_eq!(wecom.uri, "/cgi-bin/webhook/send?key=wk-1");
    assert_eq!(wecom.json()["msgtype"], "text");
    assert_eq!(wecom.json()["text"]["content"], telegram_text);

    // DingTalk: sign = urlencode(base64(HMAC-SHA256(secret, "<ms>\n<secret>"))).
    let dingtalk = only("dingtalk");
    let query: BTreeMap<String, String> = dingtalk.query().into_iter().collect();
    assert!(dingtalk.uri.starts_with("/robot/send?"));
    assert_eq!(query["access_token"], "dt-1");
    let ms = &query["timestamp"];
    assert_eq!(ms.len(), 13, "milliseconds");
    assert_eq!(
        query["sign"],
        b64(&hmac_sha256(b"SECabc", format!("{ms}\nSECabc").as_bytes()))
    );
    assert_eq!(dingtalk.json()["text"]["content"], telegram_text);

    // Feishu: sign = base64(HMAC-SHA256 keyed "<s>\n<secret>" over nothing).
    let feishu = only("feishu");
    assert_eq!(feishu.uri, "/open-apis/bot/v2/hook/fh-1");
    let body = feishu.json();
    let seconds = body["timestamp"].as_str().unwrap();
    assert_eq!(seconds.len(), 10, "seconds");
    assert_eq!(
        body["sign"],
        b64(&hmac_sha256(format!("{seconds}\nfs-1").as_bytes(), b""))
    );
    assert_eq!(body["msg_type"], "text");
    assert_eq!(body["content"]["text"], telegram_text);

    let bark = only("bark");
    assert_eq!(bark.uri, "/push");
    assert_eq!(bark.json()["device_key"], "bk-1");
    assert!(bark.json()["title"].as_str().unwrap().contains("¥9.99"));

    // The generic webhook verifies with the Standard Webhooks reference implementation.
    let hook = only("webhook");
    standardwebhooks::Webhook::new(&webhook_secret)
        .unwrap()
        .verify(&hook.body, &hook.headers)
        .expect("the alert webhook's signature holds");
    assert_eq!(hook.json()["type"], "alert.payment.kept");
    assert_eq!(
        hook.json()["data"]["details"]["payment_id"],
        kept["payment_id"]
    );

    let mail = smtp.messages().remove(0);
    assert!(
        mail.contains("Subject: [solopay] A payment matched no order"),
        "{mail}"
    );
    assert!(mail.contains("owner@shop.example"));

    // Every delivery is recorded as sent (the worker records each answer after the service got
    // the request, so the last records may lag behind what the receivers saw).
    let all_recorded = eventually(Duration::from_secs(10), || {
        let app = &app;
        async move {
            let alerts: Value = app.admin_get("/admin/alerts").await.json().await.unwrap();
            let deliveries = alerts["data"][0]["deliveries"].as_array().unwrap().clone();
            deliveries.len() == 7 && deliveries.iter().all(|d| d["status"] == "succeeded")
        }
    })
    .await;
    let alerts: Value = app.admin_get("/admin/alerts").await.json().await.unwrap();
    assert!(all_recorded, "{alerts}");

    // A test message, on a channel whose service refuses it: said so, with its answer.
    services["telegram"].answer_with([Answer::json(
        r#"{"ok":false,"description":"chat not found"}"#,
    )]);
    let channels: Value = app
        .admin_get("/admin/alert-channels")
        .await
        .json()
        .await
        .unwrap();
    let telegram_id = channels["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "telegram")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused: Value = app
        .admin_post(
            &format!("/admin/alert-channels/{telegram_id}/test"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refused["delivered"], false);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("chat not found"),
        "{refused}"
    );
    let tested: Value = app
        .admin_post(
            &format!("/admin/alert-channels/{telegram_id}/test"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["delivered"], true, "{tested}");
    assert!(
        services["telegram"].received().last().unwrap().json()["text"]
            .as_str()
            .unwrap()
            .contains("Test message")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alert_kind_is_sent_once_soon_after_its_cause() {
    let owner = Receiver::start().await;
    let merchant_hook = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(|s| {
        fast(s);
        s.device_offline_after = Duration::from_secs(6);
        s.max_offset_steps = 4;
    })
    .await;
    owner_channel(&app, &owner, None).await;
    let listener = app.online_listener("wechat").await;
    let device = &listener.device;
    let merchant = app.merchant_with_webhooks(&merchant_hook.url()).await;
    let mut expected = BTreeMap::<String, usize>::new();
    let mut expect = |kind: &str| *expected.entry(kind.to_string()).or_default() += 1;
    let arrives = |count: usize| {
        let owner = &owner;
        async move {
            let received = owner.wait_for(count, Duration::from_secs(15)).await;
            assert!(received.len() >= count, "{:?}", kinds_received(&received));
            received
        }
    };

    // Kept and unreadable payments, and a contradicted one.
    app.pay(device, "wechat", "3.33").await;
    expect("payment.kept");
    let unreadable = app
        .notify(device, &json!({"notification_id": "u-1", "channel": "wechat",
                                "package": "com.tencent.mm", "title": "微信支付", "text": "微信支付收款元"}))
        .await;
    assert_eq!(unreadable.status(), StatusCode::UNPROCESSABLE_ENTITY);
    expect("notification.unreadable");
    let contradicted: Value = app
        .notify(device, &json!({"notification_id": "c-1", "channel": "wechat", "amount": "5.00",
                                "package": "com.tencent.mm", "title": "微信支付", "text": "微信支付收款6.00元"}))
        .await.json().await.unwrap();
    assert_eq!(contradicted["result"], "contradicted");
    expect("notification.contradicted");
    arrives(3).await;

    // Amounts running out: offsets 0..=4 on one payee; the 4th step is deep, the 6th finds none.
    assert_eq!(app.heartbeat(device).await.status(), StatusCode::OK);
    for i in 0..5 {
        let created = app
            .create_order(&merchant, &json!({"merchant_order_id": format!("a{i}"), "amount": "20.00", "channel": "wechat"}))
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    let none = app
        .create_order(
            &merchant,
            &json!({"merchant_order_id": "a5", "amount": "20.00", "channel": "wechat"}),
        )
        .await;
    assert_problem(none, StatusCode::SERVICE_UNAVAILABLE, "amounts_exhausted").await;
    expect("amounts.running_out"); // the payee at offset 4
    expect("amounts.running_out"); // the channel, none left
    arrives(5).await;

    // The listener loses notification access, says so: told at once, and once.
    for _ in 0..2 {
        let beat = app
            .signed_post(
                "/heartbeat",
                device,
                now_unix(),
                json!({"notification_access": false, "queue_depth": 2, "oldest_unsent_secs": 40,
                                "os_version": "Android 14"})
                .to_string()
                .as_bytes(),
            )
            .await;
        assert_eq!(beat.status(), StatusCode::OK);
    }
    expect("device.notification_access_lost");
    arrives(6).await;
    let devices: Value = app.admin_get("/admin/devices").await.json().await.unwrap();
    let shown = &devices["data"][0];
    assert_eq!(
        (
            shown["notification_access"].clone(),
            shown["queue_depth"].clone(),
            shown["os_version"].clone()
        ),
        (json!(false), json!(2), json!("Android 14"))
    );

    // Silent: heartbeats go on, no notification, three orders on its payee expire unpaid.
    assert_eq!(app.heartbeat(device).await.status(), StatusCode::OK);
    db.execute(
        "UPDATE orders SET expires_at = now(), \
         created_at = now() - interval '2 minutes', reserved_until = now() + interval '10 minutes' \
         WHERE status = 'pending'",
    )
    .await;
    let silent_seen = Instant::now();
    expect("device.listener_silent");
    let received = arrives(7).await;
    assert!(
        kinds_received(&received).contains_key("device.listener_silent"),
        "{:?}",
        kinds_received(&received)
    );
    println!(
        "silent listener told {:?} after the orders expired",
        silent_seen.elapsed()
    );

    // Offline: no heartbeat for longer than the window; told once; back on the next heartbeat.
    let went_quiet = Instant::now();
    expect("device.offline");
    arrives(8).await;
    println!(
        "offline told {:?} after the last heartbeat",
        went_quiet.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // more sweeps: still one offline alert
    assert_eq!(app.heartbeat(device).await.status(), StatusCode::OK);
    expect("device.online");
    arrives(9).await;

    // A merchant webhook failing three times, then for good.
    merchant_hook.answer_usually(Answer::status(500));
    let order = app.order(&merchant, "30.00", "wechat").await;
    app.pay(device, "wechat", order["payable_amount"].as_str().unwrap())
        .await;
    expect("webhook.failing");
    expect("webhook.failed");
    arrives(11).await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(kinds_received(&owner.received()), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_kept_payments_at_once_are_gathered_into_one_digest() {
    let owner = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(fast).await;
    add_channel(
        &app,
        "owner",
        json!({"kind": "webhook", "url": owner.url()}),
        // Not `digest`: a channel that takes kept payments hears the digest that gathers them.
        Some(json!(["payment.kept"])),
    )
    .await;
    let listener = app.online_listener("wechat").await;
    for i in 0..8 {
        let kept = app
            .pay(&listener.device, "wechat", &format!("1.0{i}"))
            .await;
        assert_eq!(kept["result"], "unmatched");
    }
    // Three on their own, at once.
    let received = owner.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        kinds_received(&owner.received()),
        BTreeMap::from([("payment.kept".to_string(), 3)]),
        "{}",
        received.len()
    );
    // The other five wait for the digest at the end of its window (brought forward here).
    assert_eq!(
        db.count("SELECT count(*) FROM alerts WHERE digest_id IS NOT NULL")
            .await,
        5
    );
    db.execute("UPDATE alert_deliveries SET next_attempt_at = now() WHERE status = 'pending'")
        .await;
    let body = digest_received(&owner, 4).await;
    assert!(body.starts_with("5 more in the last 10 minutes:"), "{body}");
    assert_eq!(
        body.matches("A payment matched no order").count(),
        5,
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(owner.received().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_channel_is_retried_and_never_holds_up_merchant_webhooks() {
    let owner = Receiver::start().await;
    owner.answer_with([Answer::status(500), Answer::status(502)]);
    let merchant_hook = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(fast).await;
    owner_channel(&app, &owner, None).await;
    let listener = app.online_listener("wechat").await;
    let merchant = app.merchant_with_webhooks(&merchant_hook.url()).await;
    // A kept payment: its alert meets a failing channel...
    app.pay(&listener.device, "wechat", "7.77").await;
    // ... while a merchant's payment is delivered at once.
    let order = app.order(&merchant, "8.00", "wechat").await;
    let paid_at = Instant::now();
    app.pay(&listener.device, "wechat", "8.00").await;
    let webhook = merchant_hook.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(webhook.len(), 1);
    let latency = webhook[0].at.duration_since(paid_at);
    assert!(
        latency < Duration::from_secs(1),
        "the merchant's webhook took {latency:?}"
    );
    assert_eq!(webhook[0].json()["data"]["id"], order["id"]);
    // The alert is retried until the channel takes it: three attempts, one alert.
    let received = owner.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3);
    let ids: std::collections::BTreeSet<&str> =
        received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "the same alert each time");
    let settled = eventually(Duration::from_secs(5), || async {
        db.count(
            "SELECT count(*) FROM alert_deliveries WHERE status = 'succeeded' AND attempts = 3",
        )
        .await
            == 1
    })
    .await;
    assert!(settled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_send_each_alert_once() {
    let owner = Receiver::start().await;
    let TestEnv { app: first, db } = spawn_app_with(fast).await;
    let second = spawn_instance(&db, fast).await;
    add_channel(
        &first,
        "owner",
        json!({"kind": "webhook", "url": owner.url()}),
        None,
    )
    .await;
    let wechat = first.online_listener("wechat").await;
    let alipay = first.online_listener("alipay").await;
    // Three kept payments (below the digest) and two devices going offline, raised on both
    // instances; both workers drain the same outbox.
    first.pay(&wechat.device, "wechat", "2.01").await;
    second.pay(&alipay.device, "alipay", "2.02").await;
    second.pay(&wechat.device, "wechat", "2.03").await;
    db.execute("UPDATE devices SET last_seen_at = now() - interval '1 hour'")
        .await;
    let received = owner.wait_for(5, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received_now = owner.received();
    assert_eq!(received_now.len(), 5, "{:?}", kinds_received(&received));
    let ids: std::collections::BTreeSet<&str> = received_now
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(ids.len(), 5, "each alert once");
    assert_eq!(
        kinds_received(&received_now),
        BTreeMap::from([
            ("device.offline".to_string(), 2),
            ("payment.kept".to_string(), 3)
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_joining_a_digest_as_its_window_ends_is_in_the_digest() {
    let owner = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(fast).await;
    owner_channel(&app, &owner, None).await;
    let listener = app.online_listener("wechat").await;
    for i in 0..4 {
        app.pay(&listener.device, "wechat", &format!("2.0{i}"))
            .await;
    }
    owner.wait_for(3, Duration::from_secs(10)).await;
    // The digest (one member so far) is due four seconds from now.
    db.execute(
        "UPDATE alert_deliveries SET next_attempt_at = now() + interval '4 seconds' \
         WHERE alert_id IN (SELECT id FROM alerts WHERE kind = 'digest')",
    )
    .await;
    // An alert joins it in a transaction that commits only after the window ended: the worker
    // must not send the digest without it.
    let url = db.url.clone();
    let joined = tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        conn.transaction(|conn| {
            let id = solopay::core::alerts::raise(
                conn,
                solopay::core::alerts::Raise {
                    kind: solopay::domain::AlertKind::PaymentKept,
                    subject: "pay_late",
                    title: "Joined as the window ended".into(),
                    body: String::new(),
                    details: json!({}),
                },
            )?;
            std::thread::sleep(Duration::from_secs(6));
            Ok::<_, solopay::db::StorageError>(id)
        })
        .unwrap()
    })
    .await
    .unwrap()
    .expect("raised");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM alerts WHERE id = '{joined}' AND digest_id IS NOT NULL"
        ))
        .await,
        1,
        "the alert did not join the open digest"
    );
    let body = digest_received(&owner, 4).await;
    assert!(body.starts_with("2 more in the last 10 minutes:"), "{body}");
    assert!(body.contains("Joined as the window ended"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_never_shows_the_channels_secret() {
    const TOKEN: &str = "123456:SECRET-bot-token";
    let TestEnv { app, db } = spawn_app_with(fast).await;
    // Nothing listens there: the send fails before any answer.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let channel = add_channel(
        &app,
        "tg",
        json!({"kind": "telegram", "bot_token": TOKEN, "chat_id": "-1001", "api_base": closed}),
        None,
    )
    .await;
    let tested = app
        .admin_post(
            &format!(
                "/admin/alert-channels/{}/test",
                channel["id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(tested.contains(r#""delivered":false"#), "{tested}");
    assert!(!tested.contains("SECRET"), "{tested}");

    // A real alert's failed attempts are stored and listed without it too.
    let listener = app.online_listener("wechat").await;
    app.pay(&listener.device, "wechat", "3.33").await;
    let failed = eventually(Duration::from_secs(10), || {
        let db = &db;
        async move {
            db.count("SELECT count(*) FROM alert_deliveries WHERE last_error IS NOT NULL")
                .await
                > 0
        }
    })
    .await;
    assert!(failed, "the delivery never failed");
    assert_eq!(
        db.count("SELECT count(*) FROM alert_deliveries WHERE last_error LIKE '%SECRET%'")
            .await,
        0
    );
    let listed = app.admin_get("/admin/alerts").await.text().await.unwrap();
    assert!(listed.contains("last_error"), "{listed}");
    assert!(!listed.contains("SECRET"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_from_a_device_told_offline_tells_the_owner_it_is_back_once() {
    let owner = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(fast).await;
    owner_channel(&app, &owner, Some(json!(["device.online"]))).await;
    let listener = app.online_listener("wechat").await;
    // Heard from, never told offline: a notification is no news to the owner.
    app.pay(&listener.device, "wechat", "1.01").await;
    // The sweep told the owner it went offline (its mark, as the sweep leaves it).
    let marked = db
        .execute(&format!(
            "UPDATE devices SET offline_alerted_at = now() - interval '5 minutes' WHERE id = '{}'",
            listener.device.id
        ))
        .await;
    assert_eq!(marked, 1);
    // Two notifications from it: the first brings it back, the second is no news.
    app.pay(&listener.device, "wechat", "1.02").await;
    app.pay(&listener.device, "wechat", "1.03").await;
    let received = owner.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        kinds_received(&owner.received()),
        BTreeMap::from([("device.online".to_string(), 1)])
    );
    assert_eq!(
        received[0].json()["data"]["details"]["device_id"],
        listener.device.id
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM devices WHERE id = '{}' AND offline_alerted_at IS NULL \
             AND last_notification_at > now() - interval '1 minute'",
            listener.device.id
        ))
        .await,
        1
    );

    // Told offline again, then eight notifications and a heartbeat at once: one of them brings
    // it back.
    db.execute(&format!(
        "UPDATE devices SET offline_alerted_at = now() - interval '5 minutes' WHERE id = '{}'",
        listener.device.id
    ))
    .await;
    let amounts: Vec<String> = (0..8).map(|i| format!("2.0{i}")).collect();
    let (_, heartbeat) = tokio::join!(
        futures_util::future::join_all(amounts.iter().map(|amount| app.pay(
            &listener.device,
            "wechat",
            amount
        )),),
        app.heartbeat(&listener.device)
    );
    assert_eq!(heartbeat.status().as_u16(), 200);
    owner.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        kinds_received(&owner.received()),
        BTreeMap::from([("device.online".to_string(), 2)])
    );

    // Told offline again, and two notifications held up behind the device's row until both
    // wait for it: each finds the mark, and only the one that clears it tells the owner.
    db.execute(&format!(
        "UPDATE devices SET offline_alerted_at = now() - interval '5 minutes' WHERE id = '{}'",
        listener.device.id
    ))
    .await;
    let device_lock = hold_device_row(&db, &listener.device.id).await;
    let release = async {
        assert!(lock_waiters(&db, 2).await);
        device_lock.batch_execute("COMMIT").await.unwrap();
    };
    tokio::join!(
        app.pay(&listener.device, "wechat", "3.01"),
        app.pay(&listener.device, "wechat", "3.02"),
        release
    );
    owner.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        kinds_received(&owner.received()),
        BTreeMap::from([("device.online".to_string(), 3)])
    );
}
