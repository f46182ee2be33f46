//! Notifications whose request died after storing them (a crash, a lost connection) are
//! finished by the background sweep, decided as of their arrival; a notification that cannot be
//! processed never holds up the others. Payments and allocations never deadlock.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Stores a notification as the request would have before dying, `age_secs` ago.
async fn store_stranded(db: &TestDb, device_id: &str, body: &Value, age_secs: i64) {
    db.execute(&stranded_sql(device_id, body, age_secs)).await;
}

/// The statement of [`store_stranded`].
fn stranded_sql(device_id: &str, body: &Value, age_secs: i64) -> String {
    let body = body.to_string().replace('\'', "''");
    format!(
        "INSERT INTO notifications (received_at, source, device_id, auth_result, auth_headers, \
                                    body, body_length, body_sha256) \
         VALUES (now() - interval '{age_secs} seconds', 'notify', '{device_id}', 'ok', '{{}}', \
                 convert_to('{body}', 'UTF8'), octet_length(convert_to('{body}', 'UTF8')), \
                 sha256(convert_to('{body}', 'UTF8')))"
    )
}

/// A service whose own sweep runs once at start and then not before the test ends (the test
/// runs the very same pass itself with [`sweep_once`] once the scene is set), with `configure`
/// applied; and the order rules of those settings.
async fn spawn_app_sweeping_by_hand(
    configure: impl Fn(&mut solopay::config::Settings) + Copy + Send + 'static,
) -> (TestEnv, solopay::core::orders::OrderRules) {
    let manual = move |s: &mut solopay::config::Settings| {
        configure(s);
        s.sweep_interval = Duration::from_secs(3600);
    };
    let env = spawn_app_with(manual).await;
    let mut settings = test_settings(&env.db);
    manual(&mut settings);
    (env, solopay::core::orders::OrderRules::from(&settings))
}

/// One pass of the sweep, as the service runs it; how many stranded notifications it finished.
async fn sweep_once(db: &TestDb, rules: solopay::core::orders::OrderRules) -> usize {
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        solopay::sweeper::sweep_pass(&mut conn, &rules).unwrap().1
    })
    .await
    .unwrap()
}

/// A service sweeping by hand (default settings), a merchant, an online WeChat listener, and one
/// order of 5.00 on it.
struct Scene {
    app: TestApp,
    db: TestDb,
    rules: solopay::core::orders::OrderRules,
    merchant: MerchantKeys,
    listener: Listener,
    order: Value,
    order_id: String,
}

async fn scene() -> Scene {
    scene_with(|_| {}).await
}

/// [`scene`] with `configure` applied to the service's settings.
async fn scene_with(
    configure: impl Fn(&mut solopay::config::Settings) + Copy + Send + 'static,
) -> Scene {
    let (TestEnv { app, db }, rules) = spawn_app_sweeping_by_hand(configure).await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "5.00", "wechat").await;
    let order_id = order["id"].as_str().unwrap().to_string();
    Scene {
        app,
        db,
        rules,
        merchant,
        listener,
        order,
        order_id,
    }
}

async fn status_of(db: &TestDb, id: &str) -> String {
    db.text(&format!("SELECT status FROM orders WHERE id = '{id}'"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_notification_pays_the_order_that_was_payable_when_it_arrived() {
    // The sweep by hand: with the service's sweep every 200 ms, a pass between storing the
    // notification and creating the new order paid the old order first, whose paid reservation
    // then gave the new order 5.01.
    let (scene, new_id) = amount_taken_while_a_report_waits().await;
    let (app, db, rules, old_id) = (&scene.app, &scene.db, scene.rules, &scene.order_id);

    assert_eq!(
        sweep_once(db, rules).await,
        1,
        "the sweep did not finish the stranded notification"
    );
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 1);
    assert_eq!(status_of(db, old_id).await, "paid");
    // Paid on time, as the payment arrived in time, unless the order had expired first: a sweep
    // whose look for stranded notifications came just before the commit above and whose expiry
    // pass came just after it expires the order before the next sweep pays it (rare).
    let expired = db
        .count(&format!(
            "SELECT count(*) FROM events WHERE order_id = '{old_id}' AND type = 'order.expired'"
        ))
        .await;
    assert_eq!(app.get_order(old_id).await["paid_late"], expired == 1);
    assert_eq!(
        status_of(db, &new_id).await,
        "pending",
        "a later customer's order was credited"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM payments WHERE order_id = '{old_id}' AND notification_id = 'stranded-1'"
        ))
        .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM notifications WHERE payment_id IS NULL")
            .await,
        0
    );
}

/// The scene of a payment whose first report is stranded while its order's reservation ends
/// and a new order takes the amount: an order of 5.00 created 500 s ago (expired 200 s ago, its
/// 60 s grace over 140 s ago), the stranded report of its payment (400 s ago, while the order
/// was pending, within the duplicate window of 600 s; stored in one transaction with the aging,
/// so that a sweep sees neither or both), and the new order of 5.00 (its id returned).
async fn amount_taken_while_a_report_waits() -> (Scene, String) {
    let scene = scene_with(|s| {
        s.late_payment_grace = Duration::from_secs(60);
        s.duplicate_window = Duration::from_secs(600);
    })
    .await;
    let stranded = stranded_sql(
        &scene.listener.device.id,
        &json!({"notification_id": "stranded-1", "channel": "wechat", "amount": "5.00"}),
        400,
    );
    scene
        .db
        .client()
        .await
        .batch_execute(&format!(
            "BEGIN; {}; {stranded}; COMMIT",
            age_order_sql(&scene.order_id, 500)
        ))
        .await
        .unwrap();
    let new = scene.app.order(&scene.merchant, "5.00", "wechat").await;
    assert_eq!(new["payable_amount"], "5.00");
    let new_id = new["id"].as_str().unwrap().to_string();
    (scene, new_id)
}

/// Reports the same payment again as another app on the phone would: a new notification id, no
/// times, the payment app's text (as a V免签 push or a second listener would send it); asserts
/// it was kept `unmatched` and returns the answer.
async fn second_report_is_kept(app: &TestApp, device: &DeviceKeys) -> Value {
    let body = json!({
        "notification_id": "second-report",
        "channel": "wechat",
        "package": "com.tencent.mm",
        "title": "微信支付",
        "text": "微信支付收款5.00元(朋友到店)",
    });
    let response = app.notify(device, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"], "unmatched", "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_report_while_the_first_waits_for_the_sweep_pays_no_later_order() {
    // Found by a payer's attack: the second report paid the new order, then the sweep paid the
    // old one as of the first report's arrival: one payment, two orders paid.
    let (scene, new_id) = amount_taken_while_a_report_waits().await;
    let (app, db) = (&scene.app, &scene.db);

    second_report_is_kept(app, &scene.listener.device).await;
    assert_eq!(status_of(db, &new_id).await, "pending");
    let reason = db
        .text("SELECT reason FROM payments WHERE notification_id = 'second-report'")
        .await
        .unwrap();
    assert!(reason.contains("not processed yet"), "{reason}");

    assert_eq!(sweep_once(db, scene.rules).await, 1);
    assert_eq!(status_of(db, &scene.order_id).await, "paid");
    assert_eq!(
        status_of(db, &new_id).await,
        "pending",
        "one payment paid two orders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_report_after_the_sweep_paid_the_first_pays_no_later_order() {
    let (scene, new_id) = amount_taken_while_a_report_waits().await;
    let (app, db) = (&scene.app, &scene.db);
    assert_eq!(sweep_once(db, scene.rules).await, 1);
    assert_eq!(status_of(db, &scene.order_id).await, "paid");

    second_report_is_kept(app, &scene.listener.device).await;
    assert_eq!(
        status_of(db, &new_id).await,
        "pending",
        "one payment paid two orders"
    );
    let reason = db
        .text("SELECT reason FROM payments WHERE notification_id = 'second-report'")
        .await
        .unwrap();
    assert!(reason.contains("could not see it"), "{reason}");

    // The new order's own payment, reported later than the first report's duplicate window,
    // pays it: the doubt lasts as long as a paid order's hold would have.
    db.execute(
        "UPDATE notifications SET received_at = received_at - interval '300 seconds' \
          WHERE id = (SELECT notification_row FROM payments \
                       WHERE notification_id = 'stranded-1')",
    )
    .await;
    let paid = app.pay(&scene.listener.device, "wechat", "5.00").await;
    assert_eq!(paid["result"], "matched", "{paid}");
    assert_eq!(paid["order_id"], new_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_report_pays_no_order_after_the_one_that_cut_the_first_payments_hold() {
    // Found by review: the sweep pays the old order and the new order's start cuts its hold;
    // the new order's reservation ends, a third order takes the amount; the second report of
    // the first payment, still within a paid order's hold of it, must not pay the third.
    let (scene, new_id) = amount_taken_while_a_report_waits().await;
    let (app, db) = (&scene.app, &scene.db);
    assert_eq!(sweep_once(db, scene.rules).await, 1);
    assert_eq!(status_of(db, &scene.order_id).await, "paid");
    db.execute(&format!(
        "UPDATE orders SET expires_at = created_at, reserved_until = created_at \
          WHERE id = '{new_id}'"
    ))
    .await;
    let third = app.order(&scene.merchant, "5.00", "wechat").await;
    assert_eq!(third["payable_amount"], "5.00");
    let third_id = third["id"].as_str().unwrap().to_string();

    second_report_is_kept(app, &scene.listener.device).await;
    assert_eq!(
        status_of(db, &third_id).await,
        "pending",
        "one payment paid two orders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_report_after_the_sweep_kept_the_first_pays_no_later_order() {
    // A payment nobody owed when it arrived keeps its amount from new orders; its first report
    // stranded, a new order took the amount before the sweep kept it.
    let (TestEnv { app, db }, rules) =
        spawn_app_sweeping_by_hand(|s| s.duplicate_window = Duration::from_secs(600)).await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    store_stranded(
        &db,
        &listener.device.id,
        &json!({"notification_id": "stranded-1", "channel": "wechat", "amount": "5.00"}),
        100,
    )
    .await;
    let new = app.order(&merchant, "5.00", "wechat").await;
    assert_eq!(new["payable_amount"], "5.00");
    let new_id = new["id"].as_str().unwrap().to_string();
    assert_eq!(sweep_once(&db, rules).await, 1);
    assert_eq!(
        db.text("SELECT result FROM payments WHERE notification_id = 'stranded-1'")
            .await
            .unwrap(),
        "unmatched"
    );

    second_report_is_kept(&app, &listener.device).await;
    assert_eq!(
        status_of(&db, &new_id).await,
        "pending",
        "a payment nobody owed paid a later order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_report_contests_only_the_orders_of_what_it_would_pay() {
    // A forwarder sends only texts; a report whose request died waits for the sweep. It may be
    // the payment a later report brings again only if it reads as that channel and amount:
    // before, any text-only report contested every order its phone took within a paid
    // order's hold.
    let (TestEnv { app, db }, _rules) = spawn_app_sweeping_by_hand(|_| {}).await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    fail_payment_inserts(&db, "died", "NEW.notification_id LIKE 'waiting-%'").await;
    for (id, text) in [
        ("waiting-6", "微信支付收款6.00元(朋友到店)"),
        ("waiting-chat", "你好，7.00元的那单我付过了"),
        ("waiting-7", "微信支付收款7.00元(朋友到店)"),
    ] {
        let body = json!({"notification_id": id, "channel": "wechat",
                          "package": "com.tencent.mm", "title": "微信支付", "text": text});
        let died = app.notify(&listener.device, &body).await;
        assert!(died.status().is_server_error(), "{died:?}");
    }
    db.execute("DROP TRIGGER died ON payments").await;
    let waiting = "SELECT count(*) FROM notifications \
                    WHERE auth_result = 'ok' AND payment_id IS NULL AND rejection IS NULL";
    assert_eq!(db.count(waiting).await, 3);

    // Neither the 6.00 receipt nor the chat contests an order of 5.00.
    let five = app.order(&merchant, "5.00", "wechat").await;
    let paid = app.pay(&listener.device, "wechat", "5.00").await;
    assert_eq!(paid["result"], "matched", "{paid}");
    assert_eq!(paid["order_id"], five["id"]);

    // The 7.00 receipt contests an order of 7.00 (the chat would pay nothing).
    let seven = app.order(&merchant, "7.00", "wechat").await;
    assert_eq!(seven["payable_amount"], "7.00");
    let kept = app.pay(&listener.device, "wechat", "7.00").await;
    assert_eq!(kept["result"], "unmatched", "{kept}");
    let seven_id = seven["id"].as_str().unwrap();
    assert_eq!(status_of(&db, seven_id).await, "pending");
    let reason = db
        .text(&format!(
            "SELECT reason FROM payments WHERE id = '{}'",
            kept["payment_id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert!(reason.contains("not processed yet"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_first_report_that_cannot_pay_still_contests_its_notifications_next_report() {
    // Found by review: a report is matched as of an earlier report of its notification only
    // when that one may pay its amount (a refused look-alike chat shares a receipt's key). A
    // waiting first report of the same notification that cannot pay as it was read (it named
    // an app that is not a payment app) may still be this payment's: while it waits, the
    // notification sent again pays no order that took the amount after it.
    let scene = scene_with(|s| {
        s.late_payment_grace = Duration::from_secs(60);
        s.duplicate_window = Duration::from_secs(600);
    })
    .await;
    let (app, db, device) = (&scene.app, &scene.db, &scene.listener.device);
    let posted_at = chrono::Utc::now().to_rfc3339();
    let report = |id: &str, package: &str| {
        json!({"notification_id": id, "channel": "wechat", "package": package,
               "title": "微信支付", "text": "微信支付收款5.00元(朋友到店)",
               "posted_at": posted_at})
    };
    fail_payment_inserts(db, "died", "NEW.notification_id = 'first-read'").await;
    let first = app
        .notify(device, &report("first-read", "com.example.notes"))
        .await;
    assert!(first.status().is_server_error(), "{first:?}");
    db.execute("DROP TRIGGER died ON payments").await;
    db.client()
        .await
        .batch_execute(&format!(
            "BEGIN; {}; UPDATE notifications SET received_at = received_at - interval '400 seconds'; \
             COMMIT",
            age_order_sql(&scene.order_id, 500)
        ))
        .await
        .unwrap();
    let new = app.order(&scene.merchant, "5.00", "wechat").await;
    assert_eq!(new["payable_amount"], "5.00");

    let again: Value = app
        .notify(device, &report("second-read", "com.tencent.mm"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["result"], "unmatched", "{again}");
    assert_eq!(status_of(db, new["id"].as_str().unwrap()).await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_assigns_a_second_report_only_as_a_second_payment() {
    // The report the matching kept shares no key with the first: without asking, the operator's
    // assign would have done what the matching refused.
    let (scene, new_id) = amount_taken_while_a_report_waits().await;
    let (app, db) = (&scene.app, &scene.db);
    let second = second_report_is_kept(app, &scene.listener.device).await;
    let path = format!(
        "/admin/payments/{}/assign",
        second["payment_id"].as_str().unwrap()
    );
    let assign = |second_payment: bool| {
        let body = json!({"order_id": new_id, "second_payment": second_payment});
        let path = path.clone();
        async move { app.admin_post(&path, &body).await }
    };
    let refused = |answer: Value, names: &str| {
        assert_eq!(answer["code"], "invalid_state", "{answer}");
        let detail = answer["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains(names), "{answer}");
    };

    let waiting: Value = assign(false).await.json().await.unwrap();
    refused(waiting, "not processed yet");
    assert_eq!(status_of(db, &new_id).await, "pending");

    assert_eq!(sweep_once(db, scene.rules).await, 1);
    assert_eq!(status_of(db, &scene.order_id).await, "paid");
    let paid: Value = assign(false).await.json().await.unwrap();
    refused(paid, &format!("paid order {}", scene.order_id));
    assert_eq!(status_of(db, &new_id).await, "pending");
    assert_eq!(
        db.count("SELECT count(*) FROM audit_log WHERE action = 'payment.assign'")
            .await,
        0
    );

    assert_eq!(assign(true).await.status(), StatusCode::OK);
    assert_eq!(status_of(db, &new_id).await, "paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_cannot_be_processed_does_not_hold_up_the_others() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "8.00", "wechat").await;
    // Created two minutes ago (still pending): older than the notifications below.
    age_order(&db, order["id"].as_str().unwrap(), 120).await;

    // A poisoned one first (a NUL character Postgres text cannot hold), a genuine one behind it.
    store_stranded(
        &db,
        &listener.device.id,
        &json!({"notification_id": "poison", "channel": "wechat", "amount": "1.00", "title": "a\u{0}b"}),
        60,
    )
    .await;
    store_stranded(
        &db,
        &listener.device.id,
        &json!({"notification_id": "genuine", "channel": "wechat", "amount": "8.00"}),
        50,
    )
    .await;

    let paid = eventually(Duration::from_secs(5), || {
        let (db, id) = (&db, order["id"].as_str().unwrap());
        async move { status_of(db, id).await == "paid" }
    })
    .await;
    assert!(
        paid,
        "the genuine notification behind the poisoned one was not finished"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM notifications WHERE rejection LIKE 'invalid_request:%'")
            .await,
        1
    );
    // It is not dropped: the operator sees it as an unparsed payment, and the owner is told.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM payments WHERE result = 'unparsed' AND amount IS NULL \
             AND notification_id LIKE 'stored-%' AND reason LIKE 'invalid_request:%' \
             AND text LIKE '%poison%'"
        )
        .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM alerts WHERE kind = 'payment.kept'")
            .await,
        1
    );

    // Sent live, the same body is refused with 400, stored and never retried.
    let live = app
        .notify(
            &listener.device,
            &json!({"notification_id": "poison-2", "channel": "wechat", "amount": "1.00", "text": "x\u{0}"}),
        )
        .await;
    assert_problem(live, StatusCode::BAD_REQUEST, "invalid_request").await;
}

/// Makes inserts of payments for which `when` holds fail as a full disk does (SQLSTATE 53100),
/// through a trigger named `name` (`DROP TRIGGER <name> ON payments` ends it).
async fn fail_payment_inserts(db: &TestDb, name: &str, when: &str) {
    db.execute(&format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$"
    ))
    .await;
    db.execute(&format!(
        "CREATE TRIGGER {name} BEFORE INSERT ON payments \
         FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}()"
    ))
    .await;
}

/// Whether the one stored notification whose body names `notification_id` is still the row
/// version its store wrote, in the statement that also marked its device heard from (both then
/// carry that statement's transaction id).
async fn as_stored(db: &TestDb, notification_id: &str) -> bool {
    let same = db
        .text(&format!(
            "SELECT (n.xmin = d.xmin)::text FROM notifications n JOIN devices d ON d.id = n.device_id \
             WHERE position('{notification_id}' IN convert_from(n.body, 'UTF8')) > 0"
        ))
        .await;
    same.expect("the notification is stored") == "true"
}

/// A notification that will be matched is stored without waiting for the disk; the matching's
/// commit, which waits, puts it there before the answer. When the matching fails, the row is
/// flushed by a commit of its own (a write of it, nothing changed) before the error is
/// answered; one whose answer is its store's own (unreadable) waits at its store. The store's
/// setting ends with it: the connection's next transaction waits for the disk again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_whose_matching_fails_is_on_disk_before_the_error_is_answered() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    app.order(&merchant, "9.00", "wechat").await;

    // Unreadable: answered from its store, which waited; not written again.
    let unreadable = app
        .notify(
            &listener.device,
            &json!({"notification_id": "unreadable-7", "channel": "wechat", "amount": "nine"}),
        )
        .await;
    assert!(unreadable.status().is_client_error(), "{unreadable:?}");
    assert!(as_stored(&db, "unreadable-7").await);

    // Its matching fails: written again (flushed) before the error is answered.
    fail_payment_inserts(&db, "no_space", "NEW.notification_id = 'full-disk'").await;
    let failed = app
        .notify(
            &listener.device,
            &json!({"notification_id": "full-disk", "channel": "wechat", "amount": "9.00"}),
        )
        .await;
    assert!(failed.status().is_server_error(), "{failed:?}");
    assert!(
        !as_stored(&db, "full-disk").await,
        "not flushed before the answer"
    );
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 0);

    // The store on a connection of the test's own: unflushed for that statement alone.
    let (url, device_id) = (db.url.clone(), listener.device.id.clone());
    let after = tokio::task::spawn_blocking(move || {
        use solopay::db::notifications::{Commit, NewRawNotification, insert_heard};
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        let headers = json!({});
        let new = NewRawNotification {
            source: solopay::domain::NotificationSource::Notify,
            device_id: Some(&device_id),
            auth_result: solopay::domain::AuthResult::Ok,
            auth_headers: &headers,
            body: b"{}",
            body_length: 2,
            body_sha256: &[0; 32],
            remote_addr: None,
            reading: None,
            rejection: None,
            same_payment_key: None,
        };
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = diesel::sql_types::Text)]
            synchronous_commit: String,
        }
        let setting = |conn: &mut diesel::PgConnection| {
            diesel::RunQueryDsl::get_result::<Setting>(
                diesel::sql_query("SHOW synchronous_commit"),
                conn,
            )
            .unwrap()
            .synchronous_commit
        };
        insert_heard(&mut conn, &new, &device_id, Commit::Unflushed).unwrap();
        let after = setting(&mut conn);
        // Inside a transaction (no caller stores so), it would hold for the whole of it: the
        // store waits for the disk there.
        let inside = diesel::Connection::transaction(&mut conn, |conn| {
            insert_heard(conn, &new, &device_id, Commit::Unflushed)?;
            Ok::<_, diesel::result::Error>(setting(conn))
        })
        .unwrap();
        (after, inside)
    })
    .await
    .unwrap();
    assert_eq!(after, ("on".to_owned(), "on".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_notification_that_meets_a_storage_failure_is_tried_again_not_dropped() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "9.00", "wechat").await;
    age_order(&db, order["id"].as_str().unwrap(), 120).await;
    // Every payment insert fails as a full disk would.
    fail_payment_inserts(&db, "no_space", "true").await;
    let body = json!({"notification_id": "full-disk", "channel": "wechat", "amount": "9.00"});
    store_stranded(&db, &listener.device.id, &body, 60).await;
    let unfinished = "SELECT count(*) FROM notifications \
                      WHERE payment_id IS NULL AND rejection IS NULL";
    // Passes go by: it stays unfinished (not refused, not kept as unreadable).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(db.count(unfinished).await, 1);
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 0);

    // The disk has room again: the next pass pays the order.
    db.execute("DROP TRIGGER no_space ON payments").await;
    let paid = eventually(Duration::from_secs(10), || {
        let (db, id) = (&db, order["id"].as_str().unwrap());
        async move { status_of(db, id).await == "paid" }
    })
    .await;
    assert!(paid, "the notification was not tried again");
    assert_eq!(db.count(unfinished).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_notification_that_keeps_failing_for_an_hour_is_kept_for_the_operator() {
    let TestEnv { app, db } = spawn_app().await;
    let listener = app.online_listener("wechat").await;
    // A failure of these payments' own, with a storage error's code: every payment with an
    // amount is refused, one kept for the operator (without an amount) is stored.
    fail_payment_inserts(&db, "refuse_amounts", "NEW.amount IS NOT NULL").await;
    // Stored 50 minutes ago: tried again. Stored 61 minutes ago: kept for the operator, and
    // so is its retry stored 10 minutes ago, when an order of another payer held its amount.
    let recent = json!({"notification_id": "recent", "channel": "wechat", "amount": "9.00"});
    store_stranded(&db, &listener.device.id, &recent, 50 * 60).await;
    let old = json!({"notification_id": "old", "channel": "wechat", "amount": "9.01"});
    store_stranded(&db, &listener.device.id, &old, 61 * 60).await;
    store_stranded(&db, &listener.device.id, &old, 10 * 60).await;
    let merchant = app.create_merchant("shop").await;
    let other = app.order(&merchant, "9.01", "wechat").await;
    assert_eq!(other["payable_amount"], "9.01");
    let other_id = other["id"].as_str().unwrap().to_string();
    db.execute(&format!(
        "UPDATE orders SET created_at = now() - interval '15 minutes' WHERE id = '{other_id}'"
    ))
    .await;
    let kept = "SELECT count(*) FROM payments WHERE result = 'unparsed' AND amount IS NULL \
                AND reason LIKE '%could not extend file%' \
                AND text LIKE '%\"old\"%'";
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.count(kept).await == 1
        })
        .await
    );
    // The operator lists it, and the owner is told; the recent one waits, untouched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listed: Value = app
        .admin_get("/admin/payments?result=unparsed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(
        db.count("SELECT count(*) FROM alerts WHERE kind = 'payment.kept'")
            .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 1);
    let unfinished = "SELECT count(*) FROM notifications \
                      WHERE payment_id IS NULL AND rejection IS NULL";
    assert_eq!(db.count(unfinished).await, 2);

    // The failure is gone: the recent one is finished (no order owed 9.00: kept unmatched), and
    // the retry of the kept one is that payment again: it pays nothing, least of all the order
    // that held its amount when the retry arrived.
    db.execute("DROP TRIGGER refuse_amounts ON payments").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            db.count(unfinished).await == 0
        })
        .await
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM payments WHERE notification_id = 'recent' AND amount = 9.00"
        )
        .await,
        1
    );
    assert_eq!(status_of(&db, &other_id).await, "pending");
    assert_eq!(db.count("SELECT count(*) FROM payments").await, 2);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM notifications n JOIN payments p ON p.id = n.payment_id \
             WHERE p.notification_id = 'old'"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_late_payments_and_new_orders_on_one_payee_never_deadlock() {
    // No sweep: the overdue orders are expired by the allocations and payments themselves.
    let TestEnv { app, db } = spawn_app_with(|s| s.sweep_interval = Duration::from_secs(60)).await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    const N: usize = 24;
    for i in 1..=N {
        let order = app.order(&merchant, &format!("{i}.00"), "wechat").await;
        age_order(&db, order["id"].as_str().unwrap(), 301).await;
    }

    let payments = (1..=N).map(|i| {
        let (app, device) = (app.clone(), listener.device.clone());
        tokio::spawn(async move {
            let body = json!({"notification_id": format!("late-{i}"), "channel": "wechat",
                              "amount": format!("{i}.00")});
            app.notify(&device, &body).await.status()
        })
    });
    let creations = (1..=N).map(|i| {
        let (app, merchant) = (app.clone(), merchant.clone());
        tokio::spawn(async move {
            let body = json!({"merchant_order_id": format!("new-{i}"), "amount": "50.00",
                              "channel": "wechat"});
            app.create_order(&merchant, &body).await.status()
        })
    });
    let payments = futures_util::future::join_all(payments).await;
    let creations = futures_util::future::join_all(creations).await;
    assert!(
        payments
            .iter()
            .all(|s| *s.as_ref().unwrap() == StatusCode::OK)
    );
    assert!(
        creations
            .iter()
            .all(|s| *s.as_ref().unwrap() == StatusCode::CREATED)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE status = 'paid' AND paid_late")
            .await,
        N as i64
    );

    assert_eq!(db.deadlocks().await, 0, "Postgres detected a deadlock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_being_recorded_never_blocks_an_order_on_its_payee() {
    // Any wait for the payee's lock would end in a 503 after 2 s.
    let TestEnv { app, db } =
        spawn_app_with(|s| s.statement_timeout = Duration::from_secs(2)).await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;

    // Recording a payment references the payee, which takes this lock on its row until commit.
    let client = db.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            &format!(
                "SELECT 1 FROM payees WHERE id = '{}' FOR KEY SHARE",
                listener.payee_id
            ),
            &[],
        )
        .await
        .unwrap();

    let response = app
        .create_order(
            &merchant,
            &json!({"merchant_order_id": "during", "amount": "3.00", "channel": "wechat"}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text().await
    );
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// Stores an authenticated copy of a notification, read and not yet processed, `age_secs` ago:
/// what a request leaves behind when it dies between storing and matching.
async fn store_unprocessed_copy(
    db: &TestDb,
    device_id: &str,
    notification_id: &str,
    amount: &str,
    age_secs: i64,
) {
    store_stranded(
        db,
        device_id,
        &json!({"notification_id": notification_id, "channel": "wechat", "amount": amount}),
        age_secs,
    )
    .await;
    let reading = json!({
        "notification_id": notification_id, "channel": "wechat", "amount": amount,
        "package": null, "title": null, "text": null, "reported_at": null,
        "listener_vouches": true,
    });
    db.execute(&format!(
        "UPDATE notifications SET reading = '{reading}' \
          WHERE id = (SELECT max(id) FROM notifications)"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_matched_as_of_the_first_copy_that_arrived() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;

    // An order whose reservation ended 5 s ago; 15 s ago its payment arrived, but the request
    // died before matching (too recent for the sweep, which waits 30 s).
    let first = app.order(&merchant, "6.00", "wechat").await;
    let first_id = first["id"].as_str().unwrap().to_string();
    end_reservation(&db, &first_id).await;
    store_unprocessed_copy(&db, &listener.device.id, "retry-1", "6.00", 15).await;
    // The amount has gone to the next customer.
    let next = app.order(&merchant, "6.00", "wechat").await;
    assert_eq!(next["payable_amount"], "6.00");
    let next_id = next["id"].as_str().unwrap().to_string();

    // The phone retries: the payment is the one that arrived 15 s ago, and pays that order.
    let response = app
        .notify(
            &listener.device,
            &json!({"notification_id": "retry-1", "channel": "wechat", "amount": "6.00"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["order_id"].as_str(),
        Some(first_id.as_str()),
        "{answer}"
    );
    assert_eq!(status_of(&db, &first_id).await, "paid");
    assert_eq!(
        status_of(&db, &next_id).await,
        "pending",
        "the next customer's order was credited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_arrived_in_time_is_on_time_however_late_it_is_processed() {
    let TestEnv { app, db } = spawn_app_with(|s| {
        // No background expiry while the test arranges the order's clock.
        s.sweep_interval = Duration::from_secs(3600);
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;

    // Expired 10 s ago, still pending (nothing has looked at it since); its payment arrived
    // 20 s ago and is processed only now, by the phone's retry.
    let order = app.order(&merchant, "7.00", "wechat").await;
    let id = order["id"].as_str().unwrap().to_string();
    age_order(&db, &id, 310).await;
    store_unprocessed_copy(&db, &listener.device.id, "in-time-1", "7.00", 20).await;
    let response = app
        .notify(
            &listener.device,
            &json!({"notification_id": "in-time-1", "channel": "wechat", "amount": "7.00"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let paid = app.get_order(&id).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["paid_late"], false, "{paid}");
    let events = db
        .count(&format!(
            "SELECT count(*) FROM events WHERE order_id = '{id}' AND type = 'order.expired'"
        ))
        .await;
    assert_eq!(events, 0, "an order paid in time does not expire first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_ended_fail_one_request_at_most_and_are_replaced() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let _listener = app.online_listener("wechat").await;
    let order = app.order(&merchant, "8.00", "wechat").await;
    let id = order["id"].as_str().unwrap().to_string();
    let pool_size = test_settings(&db).db_pool_size as usize;

    // Every pooled connection was used just now, so none is tested at check-out for a second.
    let reads = (0..pool_size).map(|_| app.get_order(&id));
    futures_util::future::join_all(reads).await;
    assert!(db.end_connections().await > 0);

    let mut failures = 0;
    let mut last = Vec::new();
    for _ in 0..(pool_size * 2 + 10) {
        let response = app
            .create_order(
                &merchant,
                &json!({"merchant_order_id": format!("after-{}", last.len() + failures),
                        "amount": "9.00", "channel": "wechat"}),
            )
            .await;
        match response.status() {
            StatusCode::CREATED => last.push(()),
            _ => {
                assert_problem(
                    response,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                )
                .await;
                failures += 1;
                assert!(last.is_empty(), "a request failed after one had succeeded");
            }
        }
    }
    println!(
        "{failures} of {} requests failed after {pool_size} connections were ended",
        pool_size * 2 + 10
    );
    // The first request that meets an ended connection fails; it has every other connection
    // tested before its next use, so no other request fails (none at all when the connections
    // were no longer trusted untested by the time the first request came).
    assert!(
        failures <= 1,
        "{failures} requests failed with {pool_size} connections ended"
    );
    assert_eq!(last.len(), pool_size * 2 + 10 - failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_notification_the_phone_saw_before_the_order_held_its_amount_pays_nothing() {
    let Scene {
        app,
        db,
        rules,
        listener,
        order,
        order_id,
        ..
    } = scene().await;
    // The order has held 5.00 for 90 s.
    age_order(&db, &order_id, 90).await;
    let held_since = order_created_at(&db, &order).await;

    // 40 s ago a request arrived and died after storing it: signed by a phone whose clock is
    // 100 s ahead, reporting a notification it saw 5 s before the order held the amount (by
    // that clock, 95 s after).
    let now = now_unix();
    let seen_by_phone = held_since + chrono::Duration::seconds(95);
    let body = json!({"notification_id": "held", "channel": "wechat", "amount": "5.00",
                      "received_at": seen_by_phone.to_rfc3339()});
    let reading = json!({"notification_id": "held", "channel": "wechat", "amount": "5.00",
                         "package": null, "title": null, "text": null,
                         "reported_at": seen_by_phone.to_rfc3339(), "listener_vouches": true});
    let headers = json!({"scheme": "signed", "device_id": listener.device.id,
                         "timestamp": (now - 40 + 100).to_string(), "signature": "as received"});
    let body = body.to_string();
    db.execute(&format!(
        "INSERT INTO notifications (received_at, source, device_id, auth_result, auth_headers, \
                                    body, body_length, body_sha256, reading) \
         VALUES (to_timestamp({}), 'notify', '{}', 'ok', '{headers}', \
                 convert_to('{body}', 'UTF8'), octet_length(convert_to('{body}', 'UTF8')), \
                 sha256(convert_to('{body}', 'UTF8')), '{reading}')",
        now - 40,
        listener.device.id
    ))
    .await;

    assert_eq!(sweep_once(&db, rules).await, 1);
    assert_eq!(status_of(&db, &order_id).await, "pending");
    let reason = db
        .text("SELECT result || ': ' || reason FROM payments WHERE notification_id = 'held'")
        .await
        .unwrap();
    assert!(
        reason.starts_with("unmatched: ") && reason.contains("before order"),
        "{reason}"
    );
    // The order's own payment, seen now, pays it.
    assert_eq!(
        app.pay(&listener.device, "wechat", "5.00").await["order_id"],
        order["id"]
    );
}

/// Whether an order still holds its amount (is read by allocation and matching), and when its
/// reservation ends, as text.
async fn hold_of(db: &TestDb, id: &str) -> (String, String) {
    let row = db
        .text(&format!(
            "SELECT holds_amount::text || ' ' || reserved_until::text FROM orders WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    let (holds, until) = row.split_once(' ').unwrap();
    (holds.to_owned(), until.to_owned())
}

/// The sweep's release pass alone, as the service runs it; how many orders it released.
async fn release_once(db: &TestDb) -> usize {
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        solopay::db::orders::release_ended_holds(&mut conn, 1000).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_released_hours_after_its_reservation_ended_and_never_holds_again() {
    let Scene {
        app,
        db,
        rules,
        merchant,
        listener,
        order_id: old_id,
        ..
    } = scene().await;

    // Reservation ended more than 2 hours ago: released. Ended less than that: still holds.
    age_order(&db, &old_id, 4 * 3600).await;
    let recent = app.order(&merchant, "6.00", "wechat").await;
    let recent_id = recent["id"].as_str().unwrap().to_string();
    age_order(&db, &recent_id, 3600).await;
    let (_, old_until) = hold_of(&db, &old_id).await;

    sweep_once(&db, rules.clone()).await;
    let released = hold_of(&db, &old_id).await;
    assert_eq!(released, ("false".to_owned(), old_until));
    assert_eq!(hold_of(&db, &recent_id).await.0, "true");

    // Paid by the operator's hand now: not held again, the reservation stays as it ended.
    let response = app
        .admin_post(
            &format!("/admin/orders/{old_id}/mark-paid"),
            &json!({"note": "paid in cash"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(status_of(&db, &old_id).await, "paid");
    assert_eq!(hold_of(&db, &old_id).await, released);

    // The amount is a new order's, and its payment pays that order alone.
    let new = app.order(&merchant, "5.00", "wechat").await;
    assert_eq!(new["payable_amount"], "5.00");
    let paid = app.pay(&listener.device, "wechat", "5.00").await;
    assert_eq!(paid["result"], "matched", "{paid}");
    assert_eq!(paid["order_id"], new["id"], "{paid}");
    sweep_once(&db, rules).await;
    assert_eq!(hold_of(&db, new["id"].as_str().unwrap()).await.0, "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranded_notification_keeps_its_orders_hold_until_the_sweep_finishes_it() {
    let Scene {
        app,
        db,
        rules,
        merchant,
        listener,
        order_id: old_id,
        ..
    } = scene().await;
    // An order as old on another phone's payee, and one on this phone's that ended more than
    // 2 hours before the notification arrived.
    app.online_listener("alipay").await;
    let other = app.order(&merchant, "5.00", "alipay").await;
    let other_id = other["id"].as_str().unwrap().to_string();
    age_order(&db, &other_id, 4 * 3600).await;
    let older = app.order(&merchant, "7.00", "wechat").await;
    let older_id = older["id"].as_str().unwrap().to_string();
    age_order(&db, &older_id, 7 * 3600).await;

    // An order of 4 hours ago, its reservation long over; its payment arrived while it was
    // pending, and the request died before matching (the service was down since, say).
    let stranded = stranded_sql(
        &listener.device.id,
        &json!({"notification_id": "stranded-hold", "channel": "wechat", "amount": "5.00"}),
        4 * 3600 - 60,
    );
    db.client()
        .await
        .batch_execute(&format!(
            "BEGIN; {}; {stranded}; COMMIT",
            age_order_sql(&old_id, 4 * 3600)
        ))
        .await
        .unwrap();

    // A release before the sweep gets to the notification keeps the order holding; the other
    // two are released.
    assert_eq!(release_once(&db).await, 2);
    assert_eq!(hold_of(&db, &old_id).await.0, "true");
    assert_eq!(hold_of(&db, &other_id).await.0, "false");
    assert_eq!(hold_of(&db, &older_id).await.0, "false");
    assert_eq!(sweep_once(&db, rules).await, 1);
    assert_eq!(status_of(&db, &old_id).await, "paid");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM payments WHERE order_id = '{old_id}' \
             AND notification_id = 'stranded-hold'"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_of_one_amount_are_released_in_the_order_they_were_made() {
    let Scene {
        app,
        db,
        merchant,
        order_id: first_id,
        ..
    } = scene().await;
    // An order of 6.00, then two of 5.00 on one payee, all reservations long over.
    let other = app.order(&merchant, "6.00", "wechat").await;
    let other_id = other["id"].as_str().unwrap().to_string();
    age_order(&db, &other_id, 6 * 3600).await;
    age_order(&db, &first_id, 5 * 3600).await;
    let second = app.order(&merchant, "5.00", "wechat").await;
    assert_eq!(second["payable_amount"], "5.00");
    let second_id = second["id"].as_str().unwrap().to_string();
    age_order(&db, &second_id, 3 * 3600).await;

    // While a transaction holds the first (a payment paying it would then hold the amount from
    // now on, up to the next order of the amount), the second stays holding too.
    let locker = db.client().await;
    let lock =
        |ids: String| format!("BEGIN; SELECT 1 FROM orders WHERE id IN ({ids}) FOR NO KEY UPDATE");
    locker
        .batch_execute(&lock(format!("'{first_id}', '{other_id}'")))
        .await
        .unwrap();
    assert_eq!(release_once(&db).await, 0);
    assert_eq!(hold_of(&db, &second_id).await.0, "true");
    locker.batch_execute("COMMIT").await.unwrap();
    // An earlier order of another amount held meanwhile holds up nothing.
    locker
        .batch_execute(&lock(format!("'{other_id}'")))
        .await
        .unwrap();
    assert_eq!(release_once(&db).await, 2);
    locker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(release_once(&db).await, 1);
}
