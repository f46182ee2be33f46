//! Bad input: each malformed request gets its problem+json code and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Every table's row count, to prove a refused request changed nothing.
async fn snapshot(db: &TestDb) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "merchants",
        "devices",
        "payees",
        "payee_fixed_codes",
        "orders",
        "payments",
        "events",
    ] {
        counts.push(db.count(&format!("SELECT count(*) FROM {table}")).await);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_order_requests_are_refused_with_their_code_and_change_nothing() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let before = snapshot(&db).await;

    let big_metadata = json!({"blob": "x".repeat(5000)});
    // (raw JSON body, expected code)
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "invalid_request"),
        ("".into(), "invalid_request"),
        ("[]".into(), "invalid_request"),
        (r#"{"amount": "1.00", "channel": "wechat"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "channel": "wechat"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "colour": "red"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "paypal"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": 7, "amount": "1.00", "channel": "wechat"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "", "amount": "1.00", "channel": "wechat"}"#.into(), "invalid_request"),
        (format!(r#"{{"merchant_order_id": "{}", "amount": "1.00", "channel": "wechat"}}"#, "a".repeat(65)), "invalid_request"),
        (r#"{"merchant_order_id": "has space", "amount": "1.00", "channel": "wechat"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "订单1", "amount": "1.00", "channel": "wechat"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "expires_in": 59}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "expires_in": 3601}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "expires_in": -5}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "metadata": [1]}"#.into(), "invalid_request"),
        (format!(r#"{{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "metadata": {big_metadata}}}"#), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "notify_url": "ftp://x.example/"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "return_url": "not a url"}"#.into(), "invalid_request"),
        // Line breaks in a URL would reach a header (Location) later: refused when given.
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "return_url": "https://shop.example/\r\nSet-Cookie: x=1"}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "notify_url": "https://shop.example/a\tb"}"#.into(), "invalid_request"),
        (format!(r#"{{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "subject": "{}"}}"#, "s".repeat(257)), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "subject": "   "}"#.into(), "invalid_request"),
        // Postgres text cannot hold U+0000: refused up front, wherever it hides.
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "metadata": {"k": "a\u0000b"}}"#.into(), "invalid_request"),
        (r#"{"merchant_order_id": "a", "amount": "1.00", "channel": "wechat", "metadata": {"\u0000": 1}}"#.into(), "invalid_request"),
    ];
    let amounts = [
        r#""0""#,
        r#""0.00""#,
        r#""-1""#,
        r#""1.001""#,
        r#""1e2""#,
        r#""NaN""#,
        r#""Infinity""#,
        r#""1,000.00""#,
        r#"" 1.00""#,
        r#""""#,
        r#""50000.01""#,
        r#""99999999999999999999999999.00""#,
        "0",
        "-1",
        "1.001",
        "1e2",
        "1E-2",
        "50000.01",
        "99999999999999999999999999",
    ];
    let mut cases = cases;
    // Not a string or a number at all: a wrong type.
    for amount in ["true", "null", "{}", "[1]"] {
        cases.push((
            format!(r#"{{"merchant_order_id": "a", "amount": {amount}, "channel": "wechat"}}"#),
            "invalid_request",
        ));
    }
    for amount in amounts {
        cases.push((
            format!(r#"{{"merchant_order_id": "a", "amount": {amount}, "channel": "wechat"}}"#),
            "invalid_amount",
        ));
    }

    for (body, code) in &cases {
        let response = app
            .client
            .post(app.url("/orders"))
            .bearer_auth(&merchant.api_key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST, code).await;
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{body}");
    }
    assert_eq!(
        snapshot(&db).await,
        before,
        "a refused request changed something"
    );

    // The largest allowed amount and a JSON number are fine.
    let ok = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(&merchant.api_key)
        .header("content-type", "application/json")
        .body(r#"{"merchant_order_id": "max", "amount": 50000, "channel": "wechat"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_eq!(ok.json::<Value>().await.unwrap()["amount"], "50000.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_with_413() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let before = snapshot(&db).await;
    let huge = format!(
        r#"{{"merchant_order_id": "big", "amount": "1.00", "channel": "wechat", "subject": "{}"}}"#,
        "x".repeat(70 * 1024)
    );

    let order = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(&merchant.api_key)
        .header("content-type", "application/json")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_problem(order, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let notify = app
        .signed_post("/notify", &listener.device, now_unix(), huge.as_bytes())
        .await;
    assert_problem(notify, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let admin = app
        .client
        .post(app.url("/admin/merchants"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_problem(admin, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(snapshot(&db).await, before);
}

/// Sends `head`, then `chunks` chunks of 1 KiB; returns the start of the answer.
async fn send_chunked(app: &TestApp, head: &str, chunks: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", "y".repeat(1024));
    for _ in 0..chunks {
        // The server may answer and close before everything is sent.
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 512];
    let read = socket.read(&mut answer).await.unwrap_or(0);
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// Every route refuses a body over the limit, whether or not it reads one, before it acts:
/// declared by `Content-Length` or sent in chunks of unknown length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_an_oversized_body_and_changes_nothing() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "1.00", "wechat").await;
    let order_id = order["id"].as_str().unwrap();
    let secrets = || async {
        db.text(&format!(
            "SELECT api_key_hash || webhook_secret || coalesce(md5_key, '') FROM merchants \
             WHERE id = '{}'",
            merchant.id
        ))
        .await
    };
    let before = (snapshot(&db).await, secrets().await);
    let huge = "x".repeat(70 * 1024);
    let merchant_key = merchant.api_key.clone();
    let admin = ADMIN_TOKEN.to_string();
    let routes = [
        (
            "POST",
            format!("/orders/{order_id}/close"),
            Some(merchant_key.clone()),
        ),
        ("GET", format!("/orders/{order_id}"), None),
        (
            "GET",
            "/orders?merchant_order_id=x".to_string(),
            Some(merchant_key),
        ),
        ("GET", "/admin/merchants".to_string(), Some(admin.clone())),
        (
            "POST",
            format!("/admin/merchants/{}/rotate-api-key", merchant.id),
            Some(admin.clone()),
        ),
        (
            "POST",
            format!("/admin/merchants/{}/rotate-webhook-secret", merchant.id),
            Some(admin.clone()),
        ),
        (
            "POST",
            format!("/admin/devices/{}/rotate-secret", listener.device.id),
            Some(admin),
        ),
        ("GET", "/healthz".to_string(), None),
        ("GET", "/appHeart?t=1&sign=x".to_string(), None),
    ];
    for (method, path, bearer) in &routes {
        let mut request = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .body(huge.clone());
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
        // The same in chunks of unknown length (sent by hand: an HTTP client sends no body with
        // a GET).
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n{}\r\n",
            bearer
                .as_ref()
                .map(|token| format!("authorization: Bearer {token}\r\n"))
                .unwrap_or_default()
        );
        let answer = send_chunked(&app, &head, 70).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{method} {path} in chunks: {answer}"
        );
    }
    assert_eq!((snapshot(&db).await, secrets().await), before);
    assert_eq!(app.get_order(order_id).await["status"], "pending");
}

/// Credentials are checked before anything else but the body limit: a wrong or malformed token
/// with a bad or missing query is `401`, every time (they raced: 400 or 401 at random).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_401_whatever_else_is_wrong_with_the_request() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let paths = [
        "/admin/summary",
        "/admin/summary?from=yesterday",
        "/admin/orders?status=bogus",
        "/admin/payments?result=bogus&limit=0",
        "/admin/webhooks?status=bogus",
        "/admin/audit?limit=-1",
        "/admin/no-such-route",
        "/orders",
        "/orders?merchant_order_id=a&colour=red",
    ];
    for path in paths {
        for token in ["test-operator-token-wrong", "sk_wrong", ""] {
            let statuses: std::collections::BTreeSet<u16> =
                futures_util::future::join_all((0..30).map(|_| {
                    let request = app.client.get(app.url(path));
                    let request = if token.is_empty() {
                        request.header("authorization", "Bearer")
                    } else {
                        request.bearer_auth(token)
                    };
                    async move { request.send().await.unwrap().status().as_u16() }
                }))
                .await
                .into_iter()
                .collect();
            assert_eq!(
                statuses,
                [401].into(),
                "{path} with {token:?}: {statuses:?}"
            );
        }
    }
    // With the right credentials, the same requests are judged on what they say.
    let bad_query = app.admin_get("/admin/orders?status=bogus").await;
    assert_problem(bad_query, StatusCode::BAD_REQUEST, "invalid_request").await;
    let missing = app
        .client
        .get(app.url("/orders"))
        .bearer_auth(&merchant.api_key)
        .send()
        .await
        .unwrap();
    assert_problem(missing, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_and_change_nothing() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let before = snapshot(&db).await;
    let order = json!({"merchant_order_id": "x", "amount": "1.00", "channel": "wechat"});

    let attempts = [
        None,
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some("Bearer sk_wrong".to_string()),
        Some(format!("Basic {}", merchant.api_key)),
        Some(format!("Bearer {ADMIN_TOKEN}")),
        Some(format!("Bearer {}x", merchant.api_key)),
    ];
    for authorization in &attempts {
        let mut request = app.client.post(app.url("/orders")).json(&order);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        assert_problem(
            request.send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // A wrong key is answered as such whatever the body holds, within the body limit (which
    // comes first of all: see every_route_refuses_an_oversized_body_and_changes_nothing).
    for body in [
        "{".to_string(),
        json!({"merchant_order_id": "x", "amount": "-1", "channel": "wechat"}).to_string(),
        "x".repeat(60_000),
    ] {
        let response = app
            .client
            .post(app.url("/orders"))
            .bearer_auth("sk_wrong")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    // A merchant key is not an operator token, nor is a wrong token.
    for token in [merchant.api_key.as_str(), "test-operator-token-wrong"] {
        let response = app
            .client
            .post(app.url("/admin/merchants"))
            .bearer_auth(token)
            .json(&json!({"name": "evil"}))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let response = app
            .client
            .get(app.url("/admin/devices"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_eq!(snapshot(&db).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_operator_requests_are_refused_and_change_nothing() {
    let TestEnv { app, db } = spawn_app().await;
    let device = app.create_device("phone").await;
    app.create_payee(&device, "wechat", json!({})).await;
    let before = snapshot(&db).await;

    let cases = [
        (
            "/admin/merchants",
            json!({}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/admin/merchants",
            json!({"name": ""}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/admin/merchants",
            json!({"name": "a", "notify_url": "javascript:alert(1)"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/admin/merchants",
            json!({"name": "a", "api_key": "mine"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/admin/devices",
            json!({"name": "x".repeat(129)}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/admin/payees",
            json!({"channel": "wechat", "name": "p", "qr_code": "q", "device_id": "dev_nope"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/admin/payees",
            json!({"channel": "bitcoin", "name": "p", "qr_code": "q", "device_id": device.id}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/admin/payees",
            json!({"channel": "wechat", "name": "p", "qr_code": "", "device_id": device.id}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/admin/payees",
            json!({"channel": "alipay", "name": "p", "qr_code": "q", "device_id": device.id,
                                 "fixed_amount_codes": [{"amount": "1.001", "qr_code": "q1"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_amount",
        ),
        (
            "/admin/payees",
            json!({"channel": "alipay", "name": "p", "qr_code": "q", "device_id": device.id,
                                 "fixed_amount_codes": [{"amount": "1.00", "qr_code": "a"}, {"amount": "1", "qr_code": "b"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        // One payee per device and channel: a notification could not tell two apart.
        (
            "/admin/payees",
            json!({"channel": "wechat", "name": "second", "qr_code": "q", "device_id": device.id}),
            StatusCode::CONFLICT,
            "conflict",
        ),
    ];
    for (path, body, status, code) in cases {
        assert_problem(app.admin_post(path, &body).await, status, code).await;
    }
    assert_eq!(snapshot(&db).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_problem_json() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let response = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app.client.delete(app.url("/orders")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}
