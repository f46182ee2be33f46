//! The operator console over HTTP (its refusals; the browser flow is in `browser.rs`): no
//! session, an expired or ended session, a wrong CSRF token, wrong operator tokens and the
//! lock-out, images that are not collection codes, oversized uploads; and the public QR images.

use reqwest::StatusCode;

use crate::helpers::*;

/// A browser-like client: cookies kept, redirects not followed.
fn browser() -> reqwest::Client {
    solopay::webhooks::sender::http_client_builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of `name="<field>" value="…"` in a page.
fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

/// Signs in; returns the session's CSRF token (from the overview page).
async fn sign_in(app: &TestApp, client: &reqwest::Client, token: &str) -> reqwest::Response {
    let page = client
        .get(app.url("/console/sign-in"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = field(&page, "csrf");
    client
        .post(app.url("/console/sign-in"))
        .form(&[("token", token), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

async fn csrf_of(app: &TestApp, client: &reqwest::Client) -> String {
    let page = client
        .get(app.url("/console/devices"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    field(&page, "csrf")
}

fn png_of(text: &str) -> Vec<u8> {
    use image::ImageEncoder;
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let image = code
        .render::<image::Luma<u8>>()
        .min_dimensions(300, 300)
        .build();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::L8,
        )
        .unwrap();
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_without_a_session_or_a_csrf_token_and_locks_out_guessers() {
    let TestEnv { app, db } = spawn_app().await;
    let client = browser();

    // No session: every page and form sends to the sign-in page, and changes nothing.
    for path in [
        "/console",
        "/console/orders",
        "/console/devices",
        "/console/webhooks/whd_x",
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()["location"], "/console/sign-in");
    }
    let posted = client
        .post(app.url("/console/devices"))
        .form(&[("name", "evil"), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    // A sign-in without the sign-in form's own token is refused.
    let forged = client
        .post(app.url("/console/sign-in"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // Signed in: the cookie is HttpOnly and SameSite=Strict.
    let signed = sign_in(&app, &client, ADMIN_TOKEN).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let overview = client.get(app.url("/console")).send().await.unwrap();
    assert_eq!(overview.status(), StatusCode::OK);
    let policy = overview.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));

    // A form with a wrong or missing CSRF token is refused and changes nothing.
    for csrf in ["", "wrong"] {
        let refused = client
            .post(app.url("/console/devices"))
            .form(&[("name", "evil"), ("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{csrf:?}");
    }
    assert_eq!(db.count("SELECT count(*) FROM devices").await, 0);
    // With it, the device is made and the action audited under the token's name.
    let csrf = csrf_of(&app, &client).await;
    let made = client
        .post(app.url("/console/devices"))
        .form(&[("name", "Counter"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::OK);
    assert!(made.text().await.unwrap().contains("device-secret"));
    assert_eq!(
        db.count(
            "SELECT count(*) FROM audit_log WHERE action = 'device.create' AND operator = 'admin'"
        )
        .await,
        1
    );

    // Signed out: the session is over; so is an expired one.
    let sign_out = client
        .post(app.url("/console/sign-out"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(sign_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        client
            .get(app.url("/console"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SEE_OTHER
    );
    let again = browser();
    sign_in(&app, &again, ADMIN_TOKEN).await;
    assert_eq!(
        again
            .get(app.url("/console"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    db.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
        .await;
    assert_eq!(
        again
            .get(app.url("/console"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SEE_OTHER
    );

    // Wrong tokens: refused; after five, even the right one is refused for a while.
    let guesser = browser();
    for _ in 0..5 {
        let wrong = sign_in(&app, &guesser, "not-the-token").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = sign_in(&app, &guesser, ADMIN_TOKEN).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.text().await.unwrap().contains("15 minutes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payees_are_made_only_from_one_collection_code_of_wechat_or_alipay() {
    let TestEnv { app, db } = spawn_app().await;
    let client = browser();
    sign_in(&app, &client, ADMIN_TOKEN).await;
    let device = app.create_device("Counter").await;
    let csrf = csrf_of(&app, &client).await;
    let upload = |image: Vec<u8>, name: &str| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", csrf.clone())
            .text("name", name.to_string())
            .text("device_id", device.id.clone())
            .part(
                "code",
                reqwest::multipart::Part::bytes(image).file_name("code.png"),
            );
        client
            .post(app.url("/console/payees"))
            .multipart(form)
            .send()
    };

    let mut two = image::GrayImage::from_pixel(700, 320, image::Luma([255u8]));
    for (offset, text) in [(0u32, "wxp://f2f0aaaa"), (360, "wxp://f2f0bbbb")] {
        let one = image::load_from_memory(&png_of(text)).unwrap().to_luma8();
        image::imageops::overlay(&mut two, &one, i64::from(offset), 0);
    }
    let mut two_png = Vec::new();
    image::DynamicImage::ImageLuma8(two)
        .write_to(
            &mut std::io::Cursor::new(&mut two_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    for (image, why) in [
        (b"this is not an image".to_vec(), "not an image"),
        (Vec::new(), "upload an image"),
        (
            {
                let mut blank = Vec::new();
                image::DynamicImage::new_luma8(200, 200)
                    .write_to(
                        &mut std::io::Cursor::new(&mut blank),
                        image::ImageFormat::Png,
                    )
                    .unwrap();
                blank
            },
            "no QR code",
        ),
        (
            png_of("https://example.com/not-a-payment"),
            "not a WeChat or Alipay collection code",
        ),
        (two_png, "2 QR codes"),
    ] {
        let refused = upload(image, "Shop").await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{why}");
        assert!(refused.text().await.unwrap().contains(why), "{why}");
    }
    // Over the upload limit: 413, before anything is read.
    let huge = upload(vec![0u8; 9 * 1024 * 1024], "Shop").await.unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(db.count("SELECT count(*) FROM payees").await, 0);

    for (code, channel) in [
        ("wxp://f2f0d1e2f3a4b5c6", "wechat"),
        ("https://qr.alipay.com/fkx12345abcdef", "alipay"),
    ] {
        let made = upload(png_of(code), channel).await.unwrap();
        assert_eq!(made.status(), StatusCode::SEE_OTHER, "{code}");
        assert_eq!(
            db.text(&format!(
                "SELECT channel FROM payees WHERE qr_code = '{code}'"
            ))
            .await
            .as_deref(),
            Some(channel)
        );
    }

    // Fixed-amount codes: the amount the code carries, or the one typed beside it; never two
    // amounts that disagree, never none, never a code of the other channel.
    let add_codes = |payee: String, images: Vec<(Vec<u8>, &'static str)>| {
        let mut form = reqwest::multipart::Form::new().text("csrf", csrf.clone());
        for (n, (image, amount)) in images.into_iter().enumerate() {
            form = form.text(format!("amount{n}"), amount).part(
                format!("code{n}"),
                reqwest::multipart::Part::bytes(image).file_name("code.png"),
            );
        }
        client
            .post(app.url(&format!("/console/payees/{payee}/codes")))
            .multipart(form)
            .send()
    };
    let wechat = db
        .text("SELECT id FROM payees WHERE channel = 'wechat'")
        .await
        .unwrap();
    let alipay = db
        .text("SELECT id FROM payees WHERE channel = 'alipay'")
        .await
        .unwrap();
    for (payee, images, why) in [
        (
            wechat.clone(),
            vec![(png_of("wxp://f2f1fixed5"), "")],
            "carries no amount",
        ),
        (
            wechat.clone(),
            vec![(png_of("wxp://f2f1fixed5"), "five")],
            "the amount beside it",
        ),
        (
            wechat.clone(),
            vec![(png_of("https://qr.alipay.com/fkx5?amount=5.00"), "5.00")],
            "this payee collects with wechat",
        ),
        (
            alipay.clone(),
            vec![(png_of("https://qr.alipay.com/fkx5?amount=5.00"), "6.00")],
            "the code is for ¥5.00 but ¥6.00 was typed",
        ),
        (
            alipay.clone(),
            vec![(png_of("https://qr.alipay.com/fkx5?amount=0"), "")],
            "the amount in the code",
        ),
    ] {
        let refused = add_codes(payee, images).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{why}");
        assert!(refused.text().await.unwrap().contains(why), "{why}");
    }
    assert_eq!(db.count("SELECT count(*) FROM payee_fixed_codes").await, 0);
    let added = add_codes(
        wechat.clone(),
        vec![
            (png_of("wxp://f2f1fixed5"), "5.00"),
            (png_of("wxp://f2f1fixed8?money=8.80"), ""),
        ],
    )
    .await
    .unwrap();
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let added = add_codes(
        alipay.clone(),
        vec![(png_of("https://qr.alipay.com/fkx5?amount=5.00"), "5")],
    )
    .await
    .unwrap();
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        db.text(
            "SELECT string_agg(payee_id || ' ' || amount::text || ' ' || qr_code, ', ' \
             ORDER BY payee_id = (SELECT id FROM payees WHERE channel = 'alipay'), amount) \
             FROM payee_fixed_codes"
        )
        .await
        .unwrap(),
        format!(
            "{wechat} 5.00 wxp://f2f1fixed5, {wechat} 8.80 wxp://f2f1fixed8?money=8.80, \
             {alipay} 5.00 https://qr.alipay.com/fkx5?amount=5.00"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_speaks_chinese_or_english_and_can_be_switched_off() {
    let TestEnv { app, db } = spawn_app().await;
    let page = |lang: &'static str| {
        let client = browser();
        let app = app.clone();
        async move {
            client
                .get(app.url("/console/sign-in"))
                .header("accept-language", lang)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert!(page("zh-CN,zh;q=0.9").await.contains("管理令牌"));
    assert!(page("en-US").await.contains("Operator token"));
    let off = spawn_instance(&db, |s| s.console = false).await;
    let refused = browser()
        .get(off.url("/console/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_qr_images_read_back_the_orders_code() {
    let TestEnv { app, db: _db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "1.00", "wechat").await;
    let id = order["id"].as_str().unwrap();
    let png = app
        .client
        .get(app.url(&format!("/orders/{id}/qr.png?size=300")))
        .send()
        .await
        .unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(
        png.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let bytes = png.bytes().await.unwrap();
    let read = solopay::http::html::read_qr_codes(&bytes).unwrap();
    assert_eq!(read, [order["qr_code"].as_str().unwrap()]);
    let svg = app
        .client
        .get(app.url(&format!("/orders/{id}/qr.svg")))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));
    for bad in ["?size=10", "?size=5000", "?colour=red"] {
        let refused = app
            .client
            .get(app.url(&format!("/orders/{id}/qr.png{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let missing = app
        .client
        .get(app.url("/orders/ord_nope/qr.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let vmq = app
        .client
        .get(app.url("/enQrcode?url=https%3A%2F%2Fpay.example%2Fp%2F1"))
        .send()
        .await
        .unwrap();
    let read = solopay::http::html::read_qr_codes(&vmq.bytes().await.unwrap()).unwrap();
    assert_eq!(read, ["https://pay.example/p/1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_the_operator_token_that_opened_it_is_replaced() {
    let TestEnv { app, db } = spawn_app().await;
    let client = browser();
    let overview = |client: &reqwest::Client, app: &TestApp| {
        let request = client.get(app.url("/console"));
        async move { request.send().await.unwrap().status() }
    };
    sign_in(&app, &client, ADMIN_TOKEN).await;
    assert_eq!(overview(&client, &app).await, StatusCode::OK);
    // An instance configured with another SOLOPAY_ADMIN_TOKEN (the token was changed) refuses
    // the session opened with the old one.
    let changed = spawn_instance(&db, |s| {
        s.admin_token = Some(solopay::config::Secret::new(
            "a-new-operator-token-0123".into(),
        ));
    })
    .await;
    assert_eq!(overview(&client, &changed).await, StatusCode::SEE_OTHER);
    // An instance still configured with the old token (a rolling change) still takes it.
    assert_eq!(overview(&client, &app).await, StatusCode::OK);

    // A generated token rotated by `solopay admin-token` ends the sessions it opened.
    let dir = temp_dir();
    let generated = spawn_instance(&db, |s| {
        s.admin_token = None;
        s.admin_token_file = dir.join("admin-token");
    })
    .await;
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    let client = browser();
    sign_in(&generated, &client, token.trim()).await;
    assert_eq!(overview(&client, &generated).await, StatusCode::OK);
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        solopay::core::operators::rotate_generated_token(&mut conn).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(overview(&client, &generated).await, StatusCode::SEE_OTHER);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM console_sessions WHERE operator = 'generated' AND ended_at IS NULL"
        )
            .await,
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_upload_forms_take_bodies_larger_than_the_services_limit() {
    let TestEnv { app, .. } = spawn_app().await;
    let client = browser();
    let post = |path: &str, bytes: usize| {
        let request = client
            .post(app.url(path))
            .header("content-type", "multipart/form-data; boundary=x")
            .body(vec![b'a'; bytes]);
        async move { request.send().await.unwrap().status() }
    };
    // Any other console path refuses it before anything reads it, signed in or not.
    for path in [
        "/console/sign-in",
        "/console/devices",
        "/console/payees/pay_x/enabled",
        "/console/nothing",
    ] {
        let status = post(path, 200 * 1024).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
    // The upload forms take it as far as their own limit, and then want a session.
    for path in ["/console/payees", "/console/payees/pay_x/codes"] {
        assert_eq!(
            post(path, 200 * 1024).await,
            StatusCode::SEE_OTHER,
            "{path}"
        );
    }
    let too_large = post("/console/payees", 8 * 1024 * 1024 + 1).await;
    assert_eq!(too_large, StatusCode::PAYLOAD_TOO_LARGE);
}
