//! Reliability and abuse: faults survived, bad input refused, nothing lost. A crash under load,
//! a database outage on a private cluster, pool exhaustion, rate limits, oversized headers,
//! schema-driven fuzzing with schemathesis, secrets sealed at rest and absent from logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::receiver::Receiver;

/// The pinned tools the schemathesis test installs (`tests/schemathesis/requirements.txt`).
const SCHEMATHESIS_REQUIREMENTS: &str = include_str!("../schemathesis/requirements.txt");

/// The schemathesis CLI: `SOLOPAY_SCHEMATHESIS`, or the pinned tools installed from PyPI into a
/// virtual environment under the target directory on first use (one per set of pins, so that a
/// change of pins never runs on an old environment).
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("SOLOPAY_SCHEMATHESIS") {
        return path.into();
    }
    let pins = hex::encode(solopay::core::secrets::sha256(
        SCHEMATHESIS_REQUIREMENTS.as_bytes(),
    ));
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schemathesis-{}", &pins[..12]));
    let st = venv.join("bin").join("st");
    if !st.exists() {
        let run = |program: &Path, args: &[&str]| {
            let status = std::process::Command::new(program).args(args).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "cannot run {} {args:?}: schemathesis needs python3 with venv and pip, and PyPI",
                program.display()
            );
        };
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Path::new("python3"),
            &["-m", "venv", &venv.to_string_lossy()],
        );
        let requirements = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("schemathesis")
            .join("requirements.txt");
        run(
            &venv.join("bin").join("pip"),
            &[
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "-r",
                &requirements.to_string_lossy(),
            ],
        );
    }
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let st = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let TestEnv { app, db: _db } = spawn_app_with(|s| {
        // The real limit, so that its 429 answers are exercised too.
        s.rate_limit = 50;
        s.rate_limit_burst = 100;
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    app.order(&merchant, "10.00", "wechat").await;

    // Once as the operator over everything, once as the merchant over what merchants call (the
    // listener's signed endpoints are covered by the same pass, answering 401 problem+json).
    // Fixed, so that CI is repeatable; another seed explores further.
    let seed = std::env::var("SOLOPAY_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261125".into());
    let passes = [
        ("operator", ADMIN_TOKEN.to_string(), "^$"),
        ("merchant", merchant.api_key.clone(), "^/admin"),
    ];
    for (who, token, excluded) in passes {
        let output = tokio::process::Command::new(&st)
            // Its example database and reports stay out of the source tree.
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .args([
                "run",
                &format!("{}/openapi.json", app.address),
                "-H",
                &format!("Authorization: Bearer {token}"),
                "--exclude-path-regex",
                excluded,
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-time",
                "40",
                // One worker: CPython 3.11 (before 3.12) can fail ast parsing in two threads at
                // once (cpython#106905, "AST constructor recursion depth mismatch"), which
                // Hypothesis does while it explains a case.
                "--workers",
                "1",
                // A long-poll may rightly wait up to 30 s.
                "--request-timeout",
                "35",
                "--seed",
                &seed,
            ])
            .output()
            .await
            .unwrap();
        let report = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("as the {who}:\n{report}");
        assert!(
            output.status.success(),
            "schemathesis found failures as the {who}:\n{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_an_address_gets_429_with_retry_after() {
    let TestEnv { app, db: _db } = spawn_app_with(|s| {
        s.rate_limit = 5;
        s.rate_limit_burst = 5;
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "1.00", "wechat").await;
    let url = app.url(&format!("/orders/{}", order["id"].as_str().unwrap()));

    let mut limited = None;
    for _ in 0..20 {
        let response = app.client.get(&url).send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("20 polls at once were not limited");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Percent-encoding the path reaches the same handler, and the same limit.
    let encoded = url.replacen("/orders/", "/%6Frders/", 1);
    let response = app.client.get(&encoded).send().await.unwrap();
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // A merchant's authenticated calls are not limited per address.
    for i in 0..10 {
        let created = app
            .create_order(&merchant, &json!({"merchant_order_id": format!("n{i}"), "amount": "2.00", "channel": "wechat"}))
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    // After the wait, polling works again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        app.client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// Which routes the per-address limit applies to follows from where `routes.rs` declares them:
/// every route anyone can call is limited, a path no route serves too, and what a bearer token
/// opens, health and the API documents are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_covers_every_route_but_the_authenticated_ones_and_health() {
    let TestEnv { app, db: _db } = spawn_app_with(|s| {
        s.rate_limit = 1;
        s.rate_limit_burst = 1;
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    let order = format!("/orders/ord_{}", "0".repeat(24));
    let limited = [
        ("GET", order.clone()),
        ("POST", "/notify".to_string()),
        ("POST", "/%6Eotify".to_string()),
        ("POST", "/heartbeat".to_string()),
        ("POST", "/forward/dev_1".to_string()),
        ("GET", "/pay/ord_1".to_string()),
        ("GET", "/appPush".to_string()),
        ("GET", "/createOrder".to_string()),
        ("GET", "/submit.php".to_string()),
        ("GET", "/api.php".to_string()),
        ("GET", "/readyz".to_string()),
        ("GET", "/metrics".to_string()),
        ("GET", "/no/such/route".to_string()),
    ];
    let send = |method: &str, path: &str, bearer: Option<&str>| {
        let mut request = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    // Spends this address's allowance, so that the next limited request is refused.
    let exhaust = || async {
        for _ in 0..50 {
            let response = send("GET", &order, None).await.unwrap();
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                return;
            }
        }
        panic!("the public order status was never limited");
    };
    for (method, path) in &limited {
        // A second passes between two allowances: under load, try again rather than fail.
        let mut refused = false;
        for _ in 0..5 {
            exhaust().await;
            if send(method, path, None).await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
                refused = true;
                break;
            }
        }
        assert!(refused, "{method} {path} is not limited");
    }
    let api_key = merchant.api_key.clone();
    let admin = ADMIN_TOKEN.to_string();
    let unlimited = [
        ("GET", "/healthz".to_string(), None),
        ("GET", "/openapi.json".to_string(), None),
        ("GET", "/docs/".to_string(), None),
        (
            "GET",
            "/orders?merchant_order_id=A1".to_string(),
            Some(api_key.as_str()),
        ),
        ("POST", format!("{order}/close"), Some(api_key.as_str())),
        ("GET", "/admin/orders".to_string(), Some(admin.as_str())),
        ("GET", "/admin/merchants".to_string(), Some(admin.as_str())),
    ];
    exhaust().await;
    for (method, path, bearer) in &unlimited {
        for _ in 0..3 {
            let status = send(method, path, *bearer).await.unwrap().status();
            assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{method} {path}");
        }
    }
}

/// A bulkhead: with one payee's lock held (a stuck transaction) and 30 creates waiting for it,
/// the waiting creates hold at most half the pool, so polls, listeners, the operator and the
/// other channel's payee keep working; once the lock is released every create is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_waiting_on_one_payees_lock_leave_the_rest_of_the_api_working() {
    let TestEnv { app, db } = spawn_app_with(|s| {
        s.db_pool_size = 8;
        s.db_pool_timeout = Duration::from_secs(2);
        s.statement_timeout = Duration::from_secs(10);
        s.rate_limit = 0;
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    let wechat = app.online_listener("wechat").await;
    let alipay = app.online_listener("alipay").await;
    let polled = app.order(&merchant, "1.00", "wechat").await;
    let polled_id = polled["id"].as_str().unwrap().to_string();

    // A stuck transaction holds the WeChat payee's row.
    let holder = db.client().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .batch_execute("SELECT 1 FROM payees WHERE channel = 'wechat' FOR UPDATE")
        .await
        .unwrap();
    let waiting: Vec<_> = (0..30)
        .map(|i| {
            let (app, merchant) = (app.clone(), merchant.clone());
            tokio::spawn(async move {
                app.create_order(
                    &merchant,
                    &json!({"merchant_order_id": format!("w{i}"), "amount": "2.00", "channel": "wechat"}),
                )
                .await
                .status()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Meanwhile the rest of the API answers, well within the pool's timeout.
    for round in 0..3 {
        let started = Instant::now();
        assert_eq!(app.get_order(&polled_id).await["status"], "pending");
        let other = app.order(&merchant, &format!("3.0{round}"), "alipay").await;
        let paid = app
            .pay(
                &alipay.device,
                "alipay",
                other["payable_amount"].as_str().unwrap(),
            )
            .await;
        assert_eq!(paid["result"], "matched", "{paid}");
        assert_eq!(app.heartbeat(&wechat.device).await.status(), StatusCode::OK);
        assert_eq!(
            app.admin_get("/admin/orders?limit=5").await.status(),
            StatusCode::OK
        );
        println!(
            "round {round} with the payee's lock held: {:?}",
            started.elapsed()
        );
    }

    holder.batch_execute("ROLLBACK").await.unwrap();
    for create in waiting {
        let status = create.await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::SERVICE_UNAVAILABLE,
            "a waiting create ended with {status}"
        );
    }
    // The payee works again.
    let after = app.order(&merchant, "4.00", "wechat").await;
    assert_eq!(after["status"], "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_503_in_bounded_time_instead_of_hanging() {
    let TestEnv { app, db } = spawn_app_with(|s| {
        s.db_pool_size = 1;
        s.db_pool_timeout = Duration::from_secs(1);
        s.statement_timeout = Duration::from_secs(3);
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "1.00", "wechat").await;

    // Hold the payee's lock: an allocation waits for it on the pool's only connection.
    let client = db.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            &format!(
                "SELECT 1 FROM payees WHERE id = '{}' FOR UPDATE",
                listener.payee_id
            ),
            &[],
        )
        .await
        .unwrap();
    let blocked = {
        let (app, merchant) = (app.clone(), merchant.clone());
        tokio::spawn(async move {
            app.create_order(
                &merchant,
                &json!({"merchant_order_id": "blocked", "amount": "1.00", "channel": "wechat"}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let response = app
        .client
        .get(app.url(&format!("/orders/{}", order["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");

    // The blocked allocation gives up at the lock timeout with a 503 too, and nothing changed.
    let blocked = blocked.await.unwrap();
    assert_problem(
        blocked,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE merchant_order_id = 'blocked'")
            .await,
        0
    );
    assert_eq!(app.status_of("/readyz").await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_without_a_server_error() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        // Request heads over 128 KiB (or with more than 96 headers) are refused by actix-http.
        .header("x-padding", "x".repeat(160 * 1024))
        .send()
        .await;
    match response {
        Ok(response) => assert!(
            response.status().is_client_error(),
            "{} for a 160 KiB header",
            response.status()
        ),
        // Closing the connection is a refusal too.
        Err(error) => assert!(
            error.is_request() || error.is_connect() || error.is_body(),
            "{error}"
        ),
    }
    assert_eq!(app.status_of("/healthz").await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_that_must_sign_are_sealed_at_rest() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let device = app.create_device("phone").await;

    let stored_secret = db
        .text(&format!(
            "SELECT secret FROM devices WHERE id = '{}'",
            device.id
        ))
        .await
        .unwrap();
    assert!(stored_secret.starts_with("sealed:v1:") && !stored_secret.contains(&device.secret));
    let (webhook, md5) = (
        db.text(&format!(
            "SELECT webhook_secret FROM merchants WHERE id = '{}'",
            merchant.id
        ))
        .await
        .unwrap(),
        db.text(&format!(
            "SELECT md5_key FROM merchants WHERE id = '{}'",
            merchant.id
        ))
        .await
        .unwrap(),
    );
    assert!(webhook.starts_with("sealed:v1:") && !webhook.contains(&merchant.webhook_secret));
    assert!(md5.starts_with("sealed:v1:") && !md5.contains(&merchant.md5_key));
    // What is only ever verified is stored as a digest.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM merchants WHERE api_key_hash = sha256('{}'::bytea)",
            merchant.api_key
        ))
        .await,
        1
    );
    // The sealed secret still signs: the device is online after a signed heartbeat.
    assert_eq!(app.heartbeat(&device).await.status(), StatusCode::OK);

    // A secret written in plain (before sealing, or by SQL) is sealed at the next start.
    db.execute(&format!(
        "UPDATE devices SET secret = 'plain-secret-0001' WHERE id = '{}'",
        device.id
    ))
    .await;
    spawn_instance(&db, |_| {}).await;
    let resealed = db
        .text(&format!(
            "SELECT secret FROM devices WHERE id = '{}'",
            device.id
        ))
        .await
        .unwrap();
    assert!(resealed.starts_with("sealed:v1:") && !resealed.contains("plain-secret-0001"));
    let renewed = DeviceKeys {
        id: device.id.clone(),
        secret: "plain-secret-0001".into(),
    };
    assert_eq!(app.heartbeat(&renewed).await.status(), StatusCode::OK);

    // Another key does not open them: the binary refuses to start instead of failing every
    // request that needs a secret.
    let dir = temp_dir();
    let refused_with_another_key = |db: &TestDb| {
        let start = solopay(db, &dir, free_port())
            .env("SOLOPAY_SECRET_KEY", "07".repeat(32))
            .arg("serve")
            .output();
        async move {
            let output = start.await.unwrap();
            let said = String::from_utf8_lossy(&output.stderr).to_string();
            assert!(!output.status.success());
            assert!(said.contains("does not open the secrets"), "{said}");
        }
    };
    refused_with_another_key(&db).await;

    // The same on a database that holds no secret yet: the first start sealed a check value.
    let TestEnv {
        app: _empty,
        db: empty,
    } = spawn_app().await;
    assert_eq!(empty.count("SELECT count(*) FROM devices").await, 0);
    assert_eq!(empty.count("SELECT count(*) FROM merchants").await, 0);
    refused_with_another_key(&empty).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_rewrites_no_sealed_secret() {
    let TestEnv { app, db } = spawn_app().await;
    let rotated = app.create_merchant("rotated").await;
    app.create_merchant("plain").await;
    app.create_device("phone").await;
    let response = app
        .admin_post(
            &format!("/admin/merchants/{}/rotate-webhook-secret", rotated.id),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let secrets = "SELECT string_agg(concat_ws('|', id, webhook_secret, md5_key, \
                   coalesce(previous_webhook_secret, '-')), ',' ORDER BY id) FROM merchants";
    let devices = "SELECT string_agg(secret, ',' ORDER BY id) FROM devices";
    let before = (db.text(secrets).await, db.text(devices).await);
    // The previous webhook secret, signing beside the new one for a day, is sealed too.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM merchants WHERE id = '{}' \
             AND previous_webhook_secret LIKE 'sealed:v1:%'",
            rotated.id
        ))
        .await,
        1
    );
    // Sealing uses a fresh nonce each time: any rewrite would change the stored text.
    spawn_instance(&db, |_| {}).await;
    spawn_instance(&db, |_| {}).await;
    assert_eq!((db.text(secrets).await, db.text(devices).await), before);
    // Nothing is left to seal, so nothing is logged about plain secrets.
    let url = db.url.clone();
    let sealed = tokio::task::spawn_blocking(move || {
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        solopay::db::sealed::seal_stored_plaintext(&mut conn).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(sealed, 0);
}

/// What the clients of the crash test were told.
#[derive(Default)]
struct Told {
    /// Orders answered 201: id → payable amount.
    orders: BTreeMap<String, String>,
    /// Notifications answered 200: notification id → result.
    payments: BTreeMap<String, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_instance_under_load_loses_no_order_payment_or_webhook() {
    let receiver = Receiver::start().await;
    let db = TestDb::fresh();
    let dir = temp_dir();
    let (port_a, port_b) = (free_port(), free_port());
    let start = |port: u16| {
        let mut command = solopay(&db, &dir, port);
        command
            .env("SOLOPAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SOLOPAY_ALLOW_PRIVATE_WEBHOOKS", "true")
            .env("SOLOPAY_WEBHOOK_RETRY_SCHEDULE", "0.3,0.5,1,1,1,1,1")
            .env("SOLOPAY_WEBHOOK_TIMEOUT_SECS", "1")
            .env("SOLOPAY_MAX_OFFSET_STEPS", "999")
            .env("SOLOPAY_RATE_LIMIT", "0")
            .arg("serve");
        Service::spawn(&mut command)
    };
    let mut a = start(port_a);
    wait_until_up(port_a).await;
    let b = start(port_b);
    wait_until_up(port_b).await;
    let (app_a, app_b) = (TestApp::at_port(port_a), TestApp::at_port(port_b));
    let merchant = app_a.merchant_with_webhooks(&receiver.url()).await;
    let listener = app_a.online_listener("wechat").await;

    // Four clients create and pay orders on both instances until told to stop.
    let told = Arc::new(Mutex::new(Told::default()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let apps = [app_a.clone(), app_b.clone()];
            let (merchant, device, told, running) =
                (merchant.clone(), listener.device.clone(), told.clone(), running.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let app = &apps[n % 2];
                    let body = json!({"merchant_order_id": format!("c{c}-{n}"), "amount": format!("{}.00", 1 + n % 5), "channel": "wechat"});
                    let Ok(response) = app.client.post(app.url("/orders")).bearer_auth(&merchant.api_key).json(&body).send().await else {
                        continue;
                    };
                    if response.status() != StatusCode::CREATED {
                        continue;
                    }
                    let order: Value = response.json().await.unwrap();
                    let payable = order["payable_amount"].as_str().unwrap().to_string();
                    told.lock().unwrap().orders.insert(order["id"].as_str().unwrap().to_string(), payable.clone());
                    let notification = format!("p{c}-{n}");
                    let body = json!({"notification_id": notification, "channel": "wechat", "amount": payable});
                    let timestamp = now_unix().to_string();
                    let raw = body.to_string();
                    let sent = app
                        .client
                        .post(app.url("/notify"))
                        .header("X-Solopay-Device", &device.id)
                        .header("X-Solopay-Timestamp", &timestamp)
                        .header("X-Solopay-Signature", device_signature(&device.secret, &timestamp, raw.as_bytes()))
                        .body(raw)
                        .send()
                        .await;
                    if let Ok(response) = sent
                        && response.status() == StatusCode::OK
                    {
                        let result: Value = response.json().await.unwrap();
                        told.lock().unwrap().payments.insert(notification, result["result"].as_str().unwrap().to_string());
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    // Killed uncleanly in the middle of it all.
    a.kill().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = start(port_a);
    wait_until_up(port_a).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let told = std::mem::take(&mut *told.lock().unwrap());
    assert!(
        told.orders.len() > 20,
        "too little load: {} orders",
        told.orders.len()
    );
    // Every order a client was told about exists, with the amount it was told.
    for (id, payable) in &told.orders {
        let stored = db
            .text(&format!(
                "SELECT payable_amount::text FROM orders WHERE id = '{id}'"
            ))
            .await;
        assert_eq!(stored.as_deref(), Some(payable.as_str()), "order {id}");
    }
    // Every acknowledged notification is stored, matched or kept as it was told.
    for (notification, result) in &told.payments {
        let stored = db
            .text(&format!(
                "SELECT result FROM payments WHERE notification_id = '{notification}'"
            ))
            .await;
        assert_eq!(
            stored.as_deref(),
            Some(result.as_str()),
            "payment {notification}"
        );
    }
    // The invariants: no reserved amount held twice, no order paid twice.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM orders a JOIN orders b ON a.payee_id = b.payee_id \
             AND a.payable_amount = b.payable_amount AND a.id < b.id \
             AND tstzrange(a.created_at, a.reserved_until) && tstzrange(b.created_at, b.reserved_until)"
        )
        .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT order_id FROM payments WHERE order_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) twice").await,
        0
    );
    // Every order.paid event reaches the receiver, by webhook-id.
    let paid_events: BTreeSet<String> = {
        let client = db.client().await;
        client
            .query("SELECT id FROM events WHERE type = 'order.paid'", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect()
    };
    assert!(!paid_events.is_empty());
    let delivered = eventually(Duration::from_secs(30), || {
        let (receiver, paid_events) = (&receiver, &paid_events);
        async move {
            let ids: BTreeSet<String> = receiver
                .received()
                .iter()
                .map(|r| r.header("webhook-id").to_string())
                .collect();
            paid_events.is_subset(&ids)
        }
    })
    .await;
    let received = receiver.received();
    let ids: Vec<String> = received
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    println!(
        "crash under load: {} orders, {} payments acknowledged, {} paid events, {} webhooks received ({} repeats of an attempt cut by the kill)",
        told.orders.len(),
        told.payments.len(),
        paid_events.len(),
        ids.len(),
        ids.len() - distinct.len()
    );
    assert!(
        delivered,
        "paid events never delivered: {:?}",
        paid_events
            .iter()
            .filter(|e| !distinct.contains(e))
            .collect::<Vec<_>>()
    );
    // Exactly once by webhook-id: each paid event under its one id, and nothing else delivered
    // (a repeat of an attempt the kill cut short carries the same id).
    let distinct: BTreeSet<String> = distinct.into_iter().cloned().collect();
    assert_eq!(distinct, paid_events);

    for process in [a, b] {
        let (status, _) = process.terminate().await;
        assert!(status.success());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What one request of the load saw.
struct Seen {
    status: StatusCode,
    problem: bool,
    took: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_with_503_and_survived_without_a_restart() {
    let cluster = PrivateCluster::create();
    let receiver = Receiver::start().await;
    let dir = temp_dir();
    let port = free_port();
    let service = Service::spawn(
        solopay_on(&cluster.url(), &dir, port)
            .env("SOLOPAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SOLOPAY_ALLOW_PRIVATE_WEBHOOKS", "true")
            .env("SOLOPAY_WEBHOOK_RETRY_SCHEDULE", "0.3,0.5,1,1,1,1,1")
            .env("SOLOPAY_DB_POOL_TIMEOUT_SECS", "2")
            .env("SOLOPAY_RATE_LIMIT", "0")
            .arg("serve"),
    );
    wait_until_up(port).await;
    let app = TestApp::at_port(port);
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("wechat").await;

    // Two clients create orders and poll them until told to stop; every answer is recorded.
    let client = solopay::webhooks::sender::http_client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load: Vec<_> = (0..2)
        .map(|c| {
            let (client, app, merchant) = (client.clone(), app.clone(), merchant.clone());
            let (seen, created, running) = (seen.clone(), created.clone(), running.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let body = json!({"merchant_order_id": format!("c{c}-{n}"), "amount": "3.00", "channel": "wechat"});
                    let started = Instant::now();
                    let response = client
                        .post(app.url("/orders"))
                        .bearer_auth(&merchant.api_key)
                        .json(&body)
                        .send()
                        .await
                        .expect("the service must answer, not hang up or time out");
                    let status = response.status();
                    let problem = response
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
                    let answer: Value = response.json().await.unwrap();
                    seen.lock().unwrap().push(Seen { status, problem, took: started.elapsed() });
                    if status == StatusCode::CREATED {
                        created.lock().unwrap().push(answer["id"].as_str().unwrap().to_string());
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop();
    let outage = Instant::now();
    // Meanwhile: 503 problem+json, quickly, for orders, for polls and for readiness.
    let started = Instant::now();
    let response = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(&merchant.api_key)
        .json(&json!({"merchant_order_id": "during", "amount": "4.00", "channel": "wechat"}))
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    // Readiness answers within its own second (a health checker's timeout), not after the
    // pool's 2 s wait.
    let asked = Instant::now();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    let readiness_took = asked.elapsed();
    assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    println!("/readyz answered 503 in {readiness_took:?} during the outage");
    assert!(
        readiness_took < Duration::from_millis(1500),
        "/readyz took {readiness_took:?}"
    );
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(outage.elapsed())).await;
    cluster.start();
    let down_for = outage.elapsed();

    // Recovered, without a restart: ready, taking orders, matching payments, delivering webhooks.
    let ready = eventually(Duration::from_secs(20), || async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert!(ready, "not ready again after the database came back");
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    for client in load {
        client.await.unwrap();
    }
    let order = app.order(&merchant, "9.00", "wechat").await;
    assert_eq!(
        app.pay(&listener.device, "wechat", "9.00").await["result"],
        "matched"
    );
    let delivered = eventually(Duration::from_secs(20), || {
        let (receiver, id) = (&receiver, order["id"].clone());
        async move {
            receiver
                .received()
                .iter()
                .any(|r| r.json()["data"]["id"] == id)
        }
    })
    .await;
    assert!(
        delivered,
        "the webhook of a payment after the outage was not delivered"
    );

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let refused = seen
        .iter()
        .filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    let slowest = seen.iter().map(|s| s.took).max().unwrap();
    println!(
        "database outage of {down_for:?}: {} requests, {} answered 503, slowest answer {slowest:?}",
        seen.len(),
        refused
    );
    assert!(refused > 0, "the load never saw the outage");
    for s in &seen {
        assert!(
            s.status == StatusCode::CREATED
                || (s.status == StatusCode::SERVICE_UNAVAILABLE && s.problem),
            "answered {} during the outage",
            s.status
        );
    }
    assert!(
        slowest < Duration::from_secs(12),
        "an answer took {slowest:?}"
    );
    // Every order a client was told about survived.
    let (db, connection) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let stored: BTreeSet<String> = db
        .query("SELECT id FROM orders", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for id in created.lock().unwrap().iter() {
        assert!(stored.contains(id), "order {id} was lost");
    }

    let (status, logs) = service.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(!logs.contains("panicked"), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_the_logs_even_at_trace_level() {
    let receiver = Receiver::start().await;
    let db = TestDb::fresh();
    let dir = temp_dir();
    let port = free_port();
    let service = Service::spawn(
        solopay(&db, &dir, port)
            .env("SOLOPAY_LOG", "trace")
            .env("SOLOPAY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SOLOPAY_ALLOW_PRIVATE_WEBHOOKS", "true")
            .env("SOLOPAY_RATE_LIMIT", "0")
            .arg("serve"),
    );
    wait_until_up(port).await;
    let app = TestApp::at_port(port);
    let merchant = app.merchant_with_webhooks(&receiver.url()).await;
    let listener = app.online_listener("alipay").await;
    let mut secrets: Vec<(&str, String)> = vec![
        ("operator token", ADMIN_TOKEN.to_string()),
        ("api key", merchant.api_key.clone()),
        ("webhook secret", merchant.webhook_secret.clone()),
        ("md5 key", merchant.md5_key.clone()),
        ("device secret", listener.device.secret.clone()),
    ];

    // Everything that reads, checks or signs with a secret: an order paid by a signed
    // notification and its signed webhook, an 易支付 order signed with the md5 key…
    app.order(&merchant, "10.00", "alipay").await;
    assert_eq!(
        app.pay(&listener.device, "alipay", "10.00").await["result"],
        "matched"
    );
    let pid = db
        .text(&format!(
            "SELECT pid::text FROM merchants WHERE id = '{}'",
            merchant.id
        ))
        .await
        .unwrap();
    let fields = crate::compat::epay_fields(
        &pid,
        "E-1",
        "alipay",
        "5.00",
        &receiver.url(),
        &merchant.md5_key,
    );
    let created: Value = crate::compat::post_form(&app, "/mapi.php", &fields)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(created["code"], 1, "{created}");
    assert_eq!(receiver.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    // …each rotation…
    for (path, field, name) in [
        (
            format!("/admin/merchants/{}/rotate-api-key", merchant.id),
            "api_key",
            "rotated api key",
        ),
        (
            format!("/admin/merchants/{}/rotate-webhook-secret", merchant.id),
            "webhook_secret",
            "rotated webhook secret",
        ),
        (
            format!("/admin/devices/{}/rotate-secret", listener.device.id),
            "secret",
            "rotated device secret",
        ),
    ] {
        let response = app.admin_post(&path, &json!({})).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let rotated: Value = response.json().await.unwrap();
        secrets.push((name, rotated[field].as_str().expect(field).to_string()));
    }
    // …and wrong credentials presented to each door.
    let wrong_key = "sk_wrong_0123456789abcdef0123456789abcdef";
    let wrong_token = "sop_wrong_0123456789abcdef0123456789abcdef";
    let response = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(wrong_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .get(app.url("/admin/merchants"))
        .bearer_auth(wrong_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    secrets.push(("a wrong api key", wrong_key.to_string()));
    secrets.push(("a wrong operator token", wrong_token.to_string()));

    let key_file = dir.join("solopay-secret-key");
    let sealing_key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    secrets.push(("sealing key", sealing_key));

    let (status, logs) = service.terminate().await;
    assert!(status.success());
    // The scan means something only if the logs are there: trace level logs every request.
    assert!(
        logs.lines().count() > 50 && logs.contains("/mapi.php"),
        "too few logs:\n{logs}"
    );
    for (name, secret) in &secrets {
        assert!(secret.len() >= 16, "{name} is too short to scan for");
        assert!(
            !logs.contains(secret.as_str()),
            "the {name} appeared in the logs"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408_after_10_seconds() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let TestEnv { app, db: _db } = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    // A tenth of the announced body, then nothing.
    let head = format!(
        "POST /notify HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"notification_id\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("request_timeout") {
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    let waited = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}
