//! The operator console in a real Chromium (Debian's `chromium`, driven by `playwright-core`
//! from `tests/browser/`, which `.ci/run` installs): the whole flow of `tests/browser/console.mjs`
//! against a live instance, then what it did is checked here: the set-up code decoded from the
//! screenshot, the orders paid, the audit log, the redelivered webhook. The screenshots stay in
//! `target/browser-artefacts/` (CI's artefacts).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::receiver::Receiver;

fn browser_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_runs_solopay_from_the_console_in_a_real_browser() {
    let chromium = std::env::var("SOLOPAY_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the browser test needs Chromium at {chromium} (apt-get install chromium; .ci/run does)"
    );
    assert!(
        browser_folder()
            .join("node_modules/playwright-core")
            .exists(),
        "the browser test needs playwright-core: (cd tests/browser && npm ci) (.ci/run does)"
    );
    let receiver = Receiver::start().await;
    let TestEnv { app, db } = spawn_app_with(|s| {
        s.allow_private_webhooks = true;
        s.webhook_poll_interval = Duration::from_millis(100);
    })
    .await;
    let artefacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let code = "wxp://f2f0c0ffee0123456789";
    let qr_image = artefacts.join("collection-code.png");
    std::fs::write(&qr_image, solopay::http::html::qr_png(code, 320).unwrap()).unwrap();

    let run = tokio::process::Command::new("node")
        .arg(browser_folder().join("console.mjs"))
        .env("SOLOPAY_URL", &app.address)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("QR_IMAGE", &qr_image)
        .env("RECEIVER_URL", receiver.url())
        .env("ARTEFACTS", &artefacts)
        .env("CHROMIUM", &chromium)
        .current_dir(browser_folder())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser flow finishes within 4 minutes")
        .expect("node runs");
    assert!(
        output.status.success(),
        "the browser flow failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(artefacts.join("report.json")).unwrap()).unwrap();

    // The set-up code, read back from the screenshot, is V免签's `host/key` of this device.
    let screenshot = std::fs::read(artefacts.join("vmq-setup-qr.png")).unwrap();
    let decoded = solopay::http::html::read_qr_codes(&screenshot).unwrap();
    let host = app.address.trim_start_matches("http://");
    let secret = report["device_secret"].as_str().unwrap();
    assert_eq!(decoded, [format!("{host}/{secret}")]);
    assert_eq!(report["vmq_config"], format!("{host}/{secret}"));

    // The uploaded code became the payee; both orders were paid; the overview said so.
    assert_eq!(
        db.text("SELECT qr_code FROM payees").await.as_deref(),
        Some(code)
    );
    for key in ["paid_order", "assigned_order"] {
        let id = report[key].as_str().unwrap();
        assert_eq!(app.get_order(id).await["status"], "paid", "{key}");
    }
    assert_eq!(report["overview_paid"], "1");
    // Every change was audited under the token's name, as through the API.
    for action in [
        "device.create",
        "payee.create",
        "merchant.create",
        "payment.assign",
        "webhook.redeliver",
    ] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM audit_log WHERE action = '{action}' AND operator = 'admin'"
            ))
            .await,
            1,
            "{action}"
        );
    }
    // The redelivered webhook arrived again.
    let redelivered = report["redelivered"].as_str().unwrap();
    let delivered = eventually(Duration::from_secs(10), || async {
        db.count(&format!(
            "SELECT count(*) FROM webhook_attempts WHERE delivery_id = '{redelivered}'"
        ))
        .await
            >= 2
    })
    .await;
    assert!(delivered, "the redelivery was not attempted");
    assert_eq!(report["signed_out"], true);
    assert_eq!(report["csp_violations"], serde_json::json!([]));
    for page in [
        "01-sign-in",
        "02-overview-empty",
        "03-device-setup",
        "04-payees",
        "06-overview-paid",
        "08-assign-confirm",
        "10-webhooks",
        "13-overview-chinese",
    ] {
        assert!(artefacts.join(format!("{page}.png")).exists(), "{page}");
    }
}
