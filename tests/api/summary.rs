//! The daily summary's kept counts (`summary_buckets`): what `GET /admin/summary` answers from
//! them is what counting the tables says, before and after the sweep keeps a quarter, whatever
//! changes a kept quarter later; and nothing is kept that a running transaction may still write.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDb, TestEnv, age_order, eventually, spawn_app_with};

/// The zones compared: whole hours both sides of UTC, and a quarter-hour offset.
const ZONES: [&str; 4] = ["Asia/Shanghai", "UTC", "America/New_York", "Asia/Kathmandu"];

/// A summary's days by date and channel, each with its figures.
type Days = BTreeMap<(String, Option<String>), BTreeMap<String, Value>>;

const COUNTS: [&str; 9] = [
    "orders_created",
    "orders_paid",
    "orders_expired",
    "payments_unmatched",
    "payments_unparsed",
    "payments_ambiguous",
    "payments_untrusted",
    "payments_contradicted",
    "payments_duplicate",
];

fn blank_day() -> BTreeMap<String, Value> {
    let mut day: BTreeMap<String, Value> = COUNTS.iter().map(|c| ((*c).into(), json!(0))).collect();
    day.insert("amount_paid".into(), json!("0.00"));
    day
}

async fn answered(app: &TestApp, from: &str, to: &str, zone: &str) -> Days {
    let response = app
        .admin_get(&format!("/admin/summary?from={from}&to={to}&tz={zone}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let summary: Value = response.json().await.unwrap();
    let mut days = Days::new();
    for day in summary["days"].as_array().unwrap() {
        let mut figures = blank_day();
        for (name, value) in figures.iter_mut() {
            *value = day[name].clone();
        }
        days.insert(
            (
                day["date"].as_str().unwrap().to_owned(),
                day["channel"].as_str().map(str::to_owned),
            ),
            figures,
        );
    }
    days
}

/// What counting the tables says, by the definition the summary keeps (`summary_facts`).
async fn counted(db: &TestDb, from: &str, to: &str, zone: &str) -> Days {
    let rows = db
        .client()
        .await
        .query(
            "SELECT metric, (at AT TIME ZONE $3)::date::text, channel, count(*), \
                    coalesce(sum(amount), 0)::numeric(14, 2)::text \
               FROM summary_facts \
              WHERE at >= $1::text::date::timestamp AT TIME ZONE $3 \
                AND at < ($2::text::date + 1)::timestamp AT TIME ZONE $3 \
              GROUP BY 1, 2, 3",
            &[&from, &to, &zone],
        )
        .await
        .unwrap();
    let mut days = Days::new();
    for row in rows {
        let metric: String = row.get(0);
        let figures = days
            .entry((row.get(1), row.get(2)))
            .or_insert_with(blank_day);
        let n: i64 = row.get(3);
        let name = match metric.as_str() {
            "created" => "orders_created",
            "paid" => {
                figures.insert("amount_paid".into(), json!(row.get::<_, String>(4)));
                "orders_paid"
            }
            "expired" => "orders_expired",
            other => other,
        };
        figures.insert(name.to_owned(), json!(n));
    }
    days
}

/// The summary of the last `days` days before today (in each zone) against the tables' count.
async fn check_every_zone(app: &TestApp, db: &TestDb, days: u32, when: &str) {
    for zone in ZONES {
        let today = db
            .text(&format!("SELECT (now() AT TIME ZONE '{zone}')::date::text"))
            .await
            .unwrap();
        let from = db
            .text(&format!("SELECT ('{today}'::date - {days})::text"))
            .await
            .unwrap();
        let to = db
            .text(&format!("SELECT ('{today}'::date - 1)::text"))
            .await
            .unwrap();
        let answer = answered(app, &from, &to, zone).await;
        let truth = counted(db, &from, &to, zone).await;
        assert!(!truth.is_empty(), "{when}, {zone}: nothing to count");
        assert_eq!(answer, truth, "{when}, {zone} ({from} to {to})");
    }
}

/// The summary against the tables' count, before the quarters a change marked are kept again
/// (and some are marked) and after.
async fn check_then_keep(app: &TestApp, db: &TestDb, when: &str) {
    let marked = db
        .count("SELECT count(*) FROM summary_stale WHERE bucket < solopay_summary_bucket(now())")
        .await;
    assert!(marked > 0, "{when}: no quarter marked");
    check_every_zone(app, db, 5, when).await;
    settle(db).await;
    check_every_zone(app, db, 5, &format!("{when}, kept")).await;
}

/// One pass of the sweep's keeping, with no margin and a long reach (again while another pass
/// holds the lock).
async fn settle_once(client: &tokio_postgres::Client) {
    let pass = "SELECT solopay_summary_settle('400 days', '0 seconds') IS NOT NULL";
    assert!(
        eventually(Duration::from_secs(10), || async {
            client.query_one(pass, &[]).await.unwrap().get::<_, bool>(0)
        })
        .await,
        "no pass could run"
    );
}

/// Kept days that are not the sum of their kept quarters.
const KEPT_DAYS_WRONG: &str = "SELECT count(*) FROM summary_days d \
     WHERE d.counts <> coalesce( \
             (SELECT jsonb_agg(jsonb_build_object('metric', x.metric, 'channel', x.channel, \
                                                  'n', x.n, 'total', x.total) \
                               ORDER BY x.metric, x.channel) \
                FROM (SELECT metric, channel, sum(n) AS n, sum(total) AS total \
                        FROM summary_buckets b WHERE b.bucket >= d.lo AND b.bucket < d.hi \
                       GROUP BY 1, 2) x), \
             '[]')";

/// Asks for the summary until the whole days `from` to `to` are kept in `zone` (a pass of the
/// sweep's keeping may hold the lock a moment).
async fn keep_days(app: &TestApp, db: &TestDb, from: &str, to: &str, zone: &str) {
    let whole = format!(
        "SELECT count(*) FROM summary_days \
          WHERE zone = '{zone}' AND day >= '{from}' AND day <= '{to}' \
            AND hi <= (SELECT until FROM summary_settled)"
    );
    // Asked each time: the sweep may keep another day meanwhile.
    let days = format!(
        "SELECT count(*) FROM generate_series('{from}'::date, '{to}'::date, '1 day') d \
          WHERE (d::date + 1)::timestamp AT TIME ZONE '{zone}' \
                <= (SELECT until FROM summary_settled) \
            AND d::timestamp AT TIME ZONE '{zone}' \
                < (d::date + 1)::timestamp AT TIME ZONE '{zone}'"
    );
    assert!(
        db.count(&days).await > 0,
        "no whole day to keep from {from} to {to}"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            answered(app, from, to, zone).await;
            db.count(&whole).await == db.count(&days).await
        })
        .await,
        "the days from {from} to {to} in {zone} are not all kept"
    );
}

/// One pass of the sweep's keeping that must keep nothing.
async fn settle_once_or_not(client: &tokio_postgres::Client) {
    let pass = "SELECT solopay_summary_settle('400 days', '0 seconds') IS NULL";
    assert!(client.query_one(pass, &[]).await.unwrap().get::<_, bool>(0));
}

/// A service whose sweep runs at its start, then once a minute: the tests keep quarters
/// themselves.
async fn slow_sweep() -> TestEnv {
    spawn_app_with(|s| s.sweep_interval = Duration::from_secs(60)).await
}

/// Passes of the sweep's keeping, with no margin, until every quarter that has ended is kept.
async fn settle(db: &TestDb) {
    let client = db.client().await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            settle_once(&client).await;
            let row = client
                .query_one(
                    "SELECT (SELECT until FROM summary_settled) >= solopay_summary_bucket(now()), \
                            (SELECT count(*) FROM summary_stale \
                              WHERE bucket < solopay_summary_bucket(now()))",
                    &[],
                )
                .await
                .unwrap();
            row.get::<_, bool>(0) && row.get::<_, i64>(1) == 0
        })
        .await,
        "the quarters that ended are not all kept"
    );
}

/// Moves an order or payment `interval` into the past: all of its times alike.
async fn move_back(db: &TestDb, table: &str, id: &str, interval: &str) {
    let times = match table {
        "orders" => {
            "created_at = created_at - $2::text::interval, \
             expires_at = expires_at - $2::text::interval, \
             reserved_until = reserved_until - $2::text::interval, \
             paid_at = paid_at - $2::text::interval, \
             closed_at = closed_at - $2::text::interval"
        }
        _ => "created_at = created_at - $2::text::interval",
    };
    let changed = db
        .client()
        .await
        .execute(
            &format!("UPDATE {table} SET {times} WHERE id = $1"),
            &[&id, &interval],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
}

/// Writes a copy of order `id` with `changes` (an UPDATE's SET list), holding no amount.
async fn copy_order(db: &TestDb, id: &str, changes: &str) {
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE TEMP TABLE copy AS SELECT * FROM orders WHERE id = '{id}'; \
             UPDATE copy SET holds_amount = false, {changes}; \
             INSERT INTO orders SELECT * FROM copy"
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_counts_answer_what_the_tables_say_after_every_late_change() {
    // The sweep keeps nothing itself here (its first pass is at start): each change below is
    // read first through its stale quarters, then through the quarters kept again.
    let TestEnv { app, db } = slow_sweep().await;
    let merchant = app.create_merchant("shop").await;
    let wechat = app.online_listener("wechat").await;
    let alipay = app.online_listener("alipay").await;
    let id = |order: &Value| order["id"].as_str().unwrap().to_owned();

    // A few days of history, made through the API and moved into the past (each move is a
    // write with a past time, which marks its quarters).
    let paid = id(&app.order(&merchant, "10.00", "wechat").await);
    app.pay(&wechat.device, "wechat", "10.00").await;
    let closed = id(&app.order(&merchant, "20.00", "wechat").await);
    assert_eq!(
        app.close_order(&merchant, &closed).await.status(),
        StatusCode::OK
    );
    let reopened = id(&app.order(&merchant, "21.00", "wechat").await);
    assert_eq!(
        app.close_order(&merchant, &reopened).await.status(),
        StatusCode::OK
    );
    let expired = id(&app.order(&merchant, "7.00", "alipay").await);
    let stray = app.pay(&alipay.device, "alipay", "3.33").await["payment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = app.pay(&wechat.device, "wechat", "55.55").await["payment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    move_back(&db, "orders", &paid, "3 days 2 hours").await;
    move_back(&db, "orders", &closed, "2 days 5 hours").await;
    move_back(&db, "orders", &reopened, "4 days 1 hour").await;
    move_back(&db, "orders", &expired, "1 day 7 hours").await;
    move_back(&db, "payments", &stray, "1 day 3 hours").await;
    move_back(&db, "payments", &other, "2 days 30 minutes").await;
    let paying = db
        .text(&format!(
            "SELECT id FROM payments WHERE order_id = '{paid}'"
        ))
        .await
        .unwrap();
    move_back(&db, "payments", &paying, "3 days 2 hours").await;
    // Read, the moved order expires (its expiry is a day ago).
    assert_eq!(app.get_order(&expired).await["status"], "expired");
    check_then_keep(&app, &db, "history moved into the past").await;

    // What is answered comes from the kept quarters: one changed by hand shows.
    let tamper = |by: i64| {
        format!(
            "UPDATE summary_buckets SET n = n + {by} \
              WHERE id = (SELECT min(id) FROM summary_buckets WHERE metric = 'created')"
        )
    };
    db.execute(&tamper(1000)).await;
    let today = db.text("SELECT current_date::text").await.unwrap();
    let week_ago = db.text("SELECT (current_date - 7)::text").await.unwrap();
    assert_ne!(
        answered(&app, &week_ago, &today, "UTC").await,
        counted(&db, &week_ago, &today, "UTC").await
    );
    db.execute(&tamper(-1000)).await;
    assert_eq!(
        answered(&app, &week_ago, &today, "UTC").await,
        counted(&db, &week_ago, &today, "UTC").await
    );

    // Whole days are kept once a summary has read them (a week's in UTC, here), and read from
    // then on: one changed by hand shows too.
    let kept_days = "SELECT count(*) FROM summary_days WHERE zone = 'UTC'";
    keep_days(&app, &db, &week_ago, &today, "UTC").await;
    let tamper_day = "UPDATE summary_days \
                         SET counts = jsonb_set(counts, '{0,n}', \
                                                to_jsonb((counts->0->>'n')::int8 + 1000)) \
                       WHERE zone = 'UTC' AND counts <> '[]'";
    assert!(db.execute(tamper_day).await > 0);
    assert_ne!(
        answered(&app, &week_ago, &today, "UTC").await,
        counted(&db, &week_ago, &today, "UTC").await
    );
    db.execute("DELETE FROM summary_days").await;
    // No day is kept while a pass of the sweep's keeping holds the lock (it may be writing the
    // quarters the day would add up); the answer is the same.
    let pass = db.client().await;
    pass.batch_execute("SELECT pg_advisory_lock(6, 0)")
        .await
        .unwrap();
    assert_eq!(
        answered(&app, &week_ago, &today, "UTC").await,
        counted(&db, &week_ago, &today, "UTC").await
    );
    assert_eq!(db.count(kept_days).await, 0);
    drop(pass);
    keep_days(&app, &db, &week_ago, &today, "UTC").await;

    // An operator assigns the stray payment (kept days ago) to the expired order.
    let assigned = app
        .admin_post(
            &format!("/admin/payments/{stray}/assign"),
            &json!({"order_id": expired, "accept_differences": true}),
        )
        .await;
    assert_eq!(assigned.status(), StatusCode::OK);
    check_then_keep(&app, &db, "after an assignment").await;
    // An operator pays the order closed days ago: it counts as expired on its day from now on.
    let marked = app
        .admin_post(
            &format!("/admin/orders/{closed}/mark-paid"),
            &json!({"note": "paid in cash"}),
        )
        .await;
    assert_eq!(marked.status(), StatusCode::OK);
    check_then_keep(&app, &db, "after marking paid").await;

    // Rows written and deleted with past times, as an import or a repair by hand would.
    copy_order(
        &db,
        &paid,
        "id = 'ord_copy', merchant_order_id = 'copy', payable_amount = payable_amount + 0.5, \
         created_at = created_at - interval '1 day', expires_at = expires_at - interval '1 day', \
         reserved_until = reserved_until - interval '1 day', paid_at = paid_at - interval '1 day'",
    )
    .await;
    check_then_keep(&app, &db, "after an insert with past times").await;
    db.execute("DELETE FROM orders WHERE id = 'ord_copy'").await;
    check_then_keep(&app, &db, "after a delete").await;
    age_order(&db, &paid, 3600).await;
    check_then_keep(&app, &db, "after an order moved").await;
    // A closed order made pending again by hand, then expired as pending orders are.
    db.execute(&format!(
        "UPDATE orders SET status = 'pending', closed_at = NULL WHERE id = '{reopened}'"
    ))
    .await;
    assert_eq!(app.get_order(&reopened).await["status"], "expired");
    check_then_keep(&app, &db, "after an order reopened").await;

    // Monrovia's days began at 00:44:30 UTC until 1972: an order 15 s after that is in a quarter
    // that began the day before, so those days are counted from the tables.
    copy_order(
        &db,
        &paid,
        "id = 'ord_1971', merchant_order_id = '1971', created_at = '1971-06-01 00:44:45+00', \
         expires_at = '1971-06-01 00:59:45+00', reserved_until = '1971-06-01 01:04:45+00', \
         paid_at = '1971-06-01 00:50:00+00'",
    )
    .await;
    settle(&db).await;
    let (from, to, zone) = ("1971-05-30", "1971-06-02", "Africa/Monrovia");
    let truth = counted(&db, from, to, zone).await;
    assert_eq!(
        truth.keys().collect::<Vec<_>>(),
        [&("1971-06-01".to_owned(), Some("wechat".to_owned()))]
    );
    assert_eq!(answered(&app, from, to, zone).await, truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_kept_that_a_running_transaction_or_a_pending_order_may_still_change() {
    // A slow sweep: the pending order below stays pending while it is looked at.
    let TestEnv { app, db } = slow_sweep().await;
    // Whether the horizon (and what is kept) is at or before a time, asked in SQL.
    let client = db.client().await;
    let at_or_before = async |query: &str, time: &str| -> bool {
        client
            .query_one(
                &format!("SELECT ({query}) <= $1::text::timestamptz"),
                &[&time],
            )
            .await
            .unwrap()
            .get(0)
    };
    let horizon = "SELECT solopay_summary_horizon('0 seconds')";

    // A transaction open for a while: what it writes has its start's time at the earliest.
    let open = db.client().await;
    open.batch_execute("BEGIN").await.unwrap();
    let started: String = open
        .query_one("SELECT now()::text", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(at_or_before(horizon, &started).await);
    open.batch_execute("COMMIT").await.unwrap();
    assert!(!at_or_before(horizon, &started).await);

    // A pending order past its expiry: its expiry may still be counted.
    let merchant = app.create_merchant("shop").await;
    app.online_listener("wechat").await;
    let order = app.order(&merchant, "10.00", "wechat").await;
    let id = order["id"].as_str().unwrap();
    age_order(&db, id, 2 * 86_400).await;
    let expires = db
        .text(&format!(
            "SELECT expires_at::text FROM orders WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    assert!(at_or_before(horizon, &expires).await);
    // Moved into the past, the order marked its quarters stale; a pass counts none of them
    // again while the order may still expire there.
    settle_once(&client).await;
    let still_stale = format!(
        "SELECT count(*) FROM summary_stale \
          WHERE bucket = solopay_summary_bucket('{expires}'::timestamptz)"
    );
    assert_eq!(db.count(&still_stale).await, 1);

    // Not in READ COMMITTED (a statement would not see what committed while it waited): nothing.
    let unsure = db.client().await;
    let in_transaction = |setup: &str| {
        format!(
            "BEGIN; {setup}; CREATE TEMP TABLE seen AS \
             SELECT solopay_summary_settle('400 days', '0 seconds') IS NULL AS unsure; COMMIT"
        )
    };
    unsure
        .batch_execute(&in_transaction(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        ))
        .await
        .unwrap();
    assert!(
        unsure
            .query_one("SELECT unsure FROM seen", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    );
    // A session that does not report its activity: when its transaction started is unknown.
    let silent = db.client().await;
    silent
        .batch_execute("SET track_activities = off")
        .await
        .unwrap();
    assert!(
        client
            .query_one(&format!("SELECT ({horizon}) IS NULL"), &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    );
    // Meanwhile the kept counts fall behind, and the operator's metrics say by how much.
    let behind = async || -> i64 {
        let metrics = app.metrics().await;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("solopay_summary_kept_behind_seconds "))
            .unwrap_or_else(|| panic!("no summary gauge in {metrics}"))
            .parse()
            .unwrap()
    };
    db.execute("UPDATE summary_settled SET until = until - interval '3 hours'")
        .await;
    settle_once_or_not(&client).await;
    assert!(behind().await >= 3 * 3600);
    // Kept again once every session shows when it started, and the pending order (read, it
    // expires) no longer holds the horizon back.
    drop(silent);
    assert_eq!(app.get_order(id).await["status"], "expired");
    settle_once(&client).await;
    assert!(behind().await < 3600);

    // A role that cannot see the other sessions cannot tell when they started: nothing is kept.
    let role = format!("summary_{}", &db.name[db.name.len() - 12..]);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT SELECT ON orders TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON summary_settled, summary_stale, \
                   summary_buckets TO {role}; \
             GRANT SELECT ON summary_facts, payments TO {role}"
        ))
        .await
        .unwrap();
    let mut config: tokio_postgres::Config = db.url.parse().unwrap();
    let (hidden, connection) = config
        .user(&role)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let seen = hidden
        .query_one(
            "SELECT solopay_summary_horizon('0 seconds') IS NULL, \
                    solopay_summary_settle('400 days', '0 seconds') IS NULL",
            &[],
        )
        .await
        .map(|row| (row.get::<_, bool>(0), row.get::<_, bool>(1)));
    drop(hidden);
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
    assert_eq!(seen.unwrap(), (true, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_not_yet_committed_keeps_its_quarter_counted_from_the_tables() {
    let TestEnv { app, db } = slow_sweep().await;
    let merchant = app.create_merchant("shop").await;
    let wechat = app.online_listener("wechat").await;
    let mut ids = Vec::new();
    for amount in ["10.00", "11.00"] {
        let order = app.order(&merchant, amount, "wechat").await;
        app.pay(&wechat.device, "wechat", amount).await;
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    // Both in one quarter two days ago.
    db.execute(
        "UPDATE orders SET created_at = solopay_summary_bucket(now() - interval '2 days'), \
                           paid_at = solopay_summary_bucket(now() - interval '2 days') \
                                     + interval '1 minute', \
                           expires_at = solopay_summary_bucket(now() - interval '2 days') \
                                        + interval '5 minutes', \
                           reserved_until = solopay_summary_bucket(now() - interval '2 days') \
                                            + interval '6 minutes'",
    )
    .await;
    settle(&db).await;
    let move_to_alipay =
        |id: &str| format!("UPDATE orders SET channel = 'alipay' WHERE id = '{id}'");
    // A committed change marks the quarter.
    db.execute(&move_to_alipay(&ids[0])).await;
    // A change of another order of that quarter, not committed: it holds the quarter's marker.
    let open = db.client().await;
    open.batch_execute(&format!("BEGIN; {}", move_to_alipay(&ids[1])))
        .await
        .unwrap();
    // A pass neither waits for it nor forgets the marker it holds.
    let client = db.client().await;
    tokio::time::timeout(Duration::from_secs(10), settle_once(&client))
        .await
        .expect("a pass waited for a transaction that had not committed");
    let marked = "SELECT count(*) FROM summary_stale \
                   WHERE bucket = solopay_summary_bucket(now() - interval '2 days')";
    assert_eq!(db.count(marked).await, 1);
    check_every_zone(&app, &db, 5, "before the commit").await;
    open.batch_execute("COMMIT").await.unwrap();
    check_then_keep(&app, &db, "after the commit").await;
    assert_eq!(db.count(marked).await, 0);

    // Emptied at once, the tables leave nothing kept.
    db.execute("TRUNCATE orders, payments CASCADE").await;
    let (from, to) = (
        db.text("SELECT (current_date - 5)::text").await.unwrap(),
        db.text("SELECT current_date::text").await.unwrap(),
    );
    assert!(answered(&app, &from, &to, "UTC").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_day_is_read_only_while_it_is_the_sum_of_its_quarters() {
    let TestEnv { app, db } = slow_sweep().await;
    let merchant = app.create_merchant("shop").await;
    let wechat = app.online_listener("wechat").await;
    let order = app.order(&merchant, "10.00", "wechat").await;
    let paid = app.pay(&wechat.device, "wechat", "10.00").await;
    let id = order["id"].as_str().unwrap().to_owned();
    move_back(&db, "orders", &id, "2 days").await;
    move_back(
        &db,
        "payments",
        paid["payment_id"].as_str().unwrap(),
        "2 days",
    )
    .await;
    // Samoa skipped 2011-12-30 (its clocks went from the 29th to the 31st): the day before and
    // the day after, each with an order.
    for (n, at) in ["2011-12-29 20:00-10", "2011-12-31 03:00+14"]
        .iter()
        .enumerate()
    {
        copy_order(
            &db,
            &id,
            &format!(
                "id = 'ord_2011_{n}', merchant_order_id = '2011_{n}', created_at = '{at}', \
                 expires_at = '{at}'::timestamptz + interval '15 minutes', \
                 reserved_until = '{at}'::timestamptz + interval '20 minutes', \
                 paid_at = '{at}'::timestamptz + interval '5 minutes'"
            ),
        )
        .await;
    }
    settle(&db).await;
    let today = db.text("SELECT current_date::text").await.unwrap();
    let week_ago = db.text("SELECT (current_date - 7)::text").await.unwrap();
    let right = async |from: &str, to: &str, zone: &str| {
        assert_eq!(
            answered(&app, from, to, zone).await,
            counted(&db, from, to, zone).await,
            "{zone}, {from} to {to}"
        );
    };
    keep_days(&app, &db, &week_ago, &today, "UTC").await;
    right(&week_ago, &today, "UTC").await;

    // The days around the one Samoa skipped are kept (the skipped one has no quarter), and read.
    let (from, to, samoa) = ("2011-12-28", "2012-01-01", "Pacific/Apia");
    assert_eq!(counted(&db, from, to, samoa).await.len(), 2);
    keep_days(&app, &db, from, to, samoa).await;
    assert_eq!(
        db.count("SELECT count(*) FROM summary_days WHERE day = '2011-12-30'")
            .await,
        0
    );
    right(from, to, samoa).await;

    // A kept day whose bounds or date are no longer the zone's (as after a newer time zone
    // database) is not read, and is kept again.
    for moved in ["hi = hi + interval '1 hour'", "day = day + 1"] {
        let changed = db
            .execute(&format!(
                "UPDATE summary_days \
                    SET {moved}, counts = jsonb_set(counts, '{{0,n}}', \
                                                   to_jsonb((counts->0->>'n')::int8 + 1000)) \
                  WHERE zone = 'UTC' AND counts <> '[]'"
            ))
            .await;
        assert!(changed > 0);
        right(&week_ago, &today, "UTC").await;
        keep_days(&app, &db, &week_ago, &today, "UTC").await;
        assert_eq!(
            db.count(
                "SELECT count(*) FROM summary_days \
                  WHERE lo <> day::timestamp AT TIME ZONE zone \
                     OR hi <> (day + 1)::timestamp AT TIME ZONE zone \
                     OR counts @? '$[*] ? (@.n > 500)'"
            )
            .await,
            0,
            "{moved}: not kept again"
        );
        assert_eq!(db.count(KEPT_DAYS_WRONG).await, 0);
        right(&week_ago, &today, "UTC").await;
    }

    // Starting again forgets every kept day, even from a bulk load's session, whose triggers are
    // off.
    let load = db.client().await;
    load.batch_execute(
        "SET session_replication_role = replica; SELECT solopay_summary_restart(); \
         RESET session_replication_role",
    )
    .await
    .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM summary_buckets").await, 0);
    // Only the days that had no quarter, and still have none, are left.
    assert_eq!(db.count(KEPT_DAYS_WRONG).await, 0);
    settle(&db).await;
    assert_eq!(db.count(KEPT_DAYS_WRONG).await, 0);
    right(&week_ago, &today, "UTC").await;

    // A restart in a snapshot older than a kept day (a TRUNCATE in REPEATABLE READ, say) fails
    // rather than leave that day behind.
    db.execute("DELETE FROM summary_days").await;
    let old = db.client().await;
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();
    keep_days(&app, &db, &week_ago, &today, "UTC").await;
    let restarted = old.batch_execute("SELECT solopay_summary_restart()").await;
    let code = restarted.as_ref().err().and_then(|e| e.code().cloned());
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE),
        "{restarted:?}"
    );
    old.batch_execute("ROLLBACK").await.unwrap();
    right(&week_ago, &today, "UTC").await;
}
