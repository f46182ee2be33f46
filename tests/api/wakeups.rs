//! Wake-ups (`NOTIFY`, `solopay::db::wakeups`): gathered during a `transaction_with_retry` and
//! sent once it has committed, never for one that rolled back; inside a transaction they did
//! not open, with that transaction's commit. The wake-up statement commits without waiting for
//! its WAL flush, and that setting never reaches a transaction that records money. An
//! instance's own work hands them to its listener's connection, which sends them off the
//! request; while it has none, the work sends its own.

use std::time::Duration;

use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use solopay::db::events::ORDER_CHANGED_CHANNEL;
use solopay::db::wakeups::{Wakeup, wake};
use solopay::db::{StorageError, transaction_with_retry};
use tokio::sync::mpsc;

use crate::helpers::{TestDb, TestEnv, listen, migrate, spawn_app, spawn_app_with};

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    synchronous_commit: String,
}

fn synchronous_commit(conn: &mut PgConnection) -> String {
    diesel::sql_query("SHOW synchronous_commit")
        .get_result::<Setting>(conn)
        .unwrap()
        .synchronous_commit
}

/// What the listener hears within a second after `work` ran on a connection of its own.
async fn heard_after(
    db: &TestDb,
    rx: &mut mpsc::UnboundedReceiver<String>,
    work: impl FnOnce(&mut PgConnection) + Send + 'static,
) -> Vec<String> {
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = solopay::db::startup::establish(&url).unwrap();
        work(&mut conn);
    })
    .await
    .unwrap();
    // A marker sent after the work, on the listener's own channel: everything the work sent
    // arrives before it.
    let mut heard = Vec::new();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let client = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await;
    let (client, connection) = client.unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&ORDER_CHANGED_CHANNEL, &marker],
        )
        .await
        .unwrap();
    while let Ok(Some(payload)) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
        if payload == marker {
            return heard;
        }
        heard.push(payload);
    }
    panic!("the marker never arrived; heard {heard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_follow_the_commit_and_never_a_rollback() {
    let db = TestDb::fresh();
    migrate(&db).await;
    let (_listener, mut rx) = listen(&db, ORDER_CHANGED_CHANNEL).await;

    // Committed: sent once, after the commit; the connection's durability is untouched.
    let heard = heard_after(&db, &mut rx, |conn| {
        transaction_with_retry(conn, |conn| -> Result<(), StorageError> {
            wake(
                conn,
                Wakeup::OrdersChanged(&["ord_committed", "ord_committed"]),
            )?;
            wake(conn, Wakeup::DeliveryDue)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(synchronous_commit(conn), "on");
    })
    .await;
    assert_eq!(heard, ["ord_committed"]);

    // Rolled back: nothing; and the next wake-up outside any transaction still goes out (the
    // failed transaction left no gathering behind on the thread).
    let heard = heard_after(&db, &mut rx, |conn| {
        let failed = transaction_with_retry(conn, |conn| -> Result<(), StorageError> {
            wake(conn, Wakeup::OrdersChanged(&["ord_rolled_back"]))?;
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(failed.is_err());
        wake(conn, Wakeup::OrdersChanged(&["ord_alone"])).unwrap();
    })
    .await;
    assert_eq!(heard, ["ord_alone"]);

    // Inside a transaction it did not open: queued in it, sent with its commit, and the
    // unflushed commit of a wake-up of its own never becomes that transaction's.
    let heard = heard_after(&db, &mut rx, |conn| {
        conn.transaction(|conn| -> Result<(), StorageError> {
            transaction_with_retry(conn, |conn| -> Result<(), StorageError> {
                Ok(wake(conn, Wakeup::OrdersChanged(&["ord_nested"]))?)
            })?;
            wake(conn, Wakeup::OrdersChanged(&["ord_outer"]))?;
            assert_eq!(synchronous_commit(conn), "on");
            Ok(())
        })
        .unwrap();
    })
    .await;
    assert_eq!(heard, ["ord_nested", "ord_outer"]);

    // …and with its rollback, nothing.
    let heard = heard_after(&db, &mut rx, |conn| {
        let failed = conn.transaction(|conn| -> Result<(), StorageError> {
            transaction_with_retry(conn, |conn| -> Result<(), StorageError> {
                Ok(wake(
                    conn,
                    Wakeup::OrdersChanged(&["ord_nested_rolled_back"]),
                )?)
            })?;
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(failed.is_err());
    })
    .await;
    assert!(heard.is_empty(), "{heard:?}");
}

/// A `LISTEN` session on `channel` of `db`: what it hears, with the process id of the session
/// that sent it.
async fn listen_with_senders(
    db: &TestDb,
    channel: &str,
) -> (
    tokio_postgres::Client,
    mpsc::UnboundedReceiver<(i32, String)>,
) {
    use futures_util::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (heard, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = heard.send((n.process_id(), n.payload().to_owned()));
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();
    (client, rx)
}

/// The next `n` wake-ups heard within `within`.
async fn next_heard(
    rx: &mut mpsc::UnboundedReceiver<(i32, String)>,
    n: usize,
    within: Duration,
) -> Vec<(i32, String)> {
    let mut heard = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while heard.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(one)) => heard.push(one),
            _ => break,
        }
    }
    heard
}

/// Sends `signal` to the server process `pid` (the tests run as root, the server as postgres).
fn signal(signal: &str, pid: i32) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// Lets a stopped server process run again, however the test ends.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instances_wake_ups_are_sent_off_the_request_by_its_listener_connection() {
    let TestEnv { app, db } = spawn_app().await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let (_session, mut heard) = listen_with_senders(&db, ORDER_CHANGED_CHANNEL).await;
    let name = solopay::watch::LISTENER_NAME;
    let listening = format!(
        "SELECT pid::int8 FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = '{name}'"
    );
    let pid = listener_pid(&app, &db, &listening).await;

    // A payment's wake-up is sent by the listener's connection.
    let order = app.order(&merchant, "2.00", "wechat").await;
    app.pay(&listener.device, "wechat", "2.00").await;
    let first = next_heard(&mut heard, 1, Duration::from_secs(5)).await;
    assert_eq!(first, [(pid, order["id"].as_str().unwrap().to_owned())]);

    // With that connection's server process stopped, payments are answered all the same (no
    // request waits for its wake-up); their wake-ups wait, and all arrive once it runs again.
    let mut paid = Vec::new();
    for amount in ["3.00", "4.00", "5.00"] {
        let order = app.order(&merchant, amount, "wechat").await;
        paid.push((amount, order["id"].as_str().unwrap().to_owned()));
    }
    signal("-STOP", pid);
    let resume = Resume(pid);
    let stopped = std::time::Instant::now();
    for (amount, _) in &paid {
        let payment = tokio::time::timeout(
            Duration::from_secs(10),
            app.pay(&listener.device, "wechat", amount),
        )
        .await
        .expect("a payment waited for its wake-up");
        assert_eq!(payment["result"], "matched", "{payment}");
    }
    let early = next_heard(&mut heard, 1, Duration::from_millis(300)).await;
    // Stopped longer than it may take to answer (a loaded machine), the connection is given up
    // and what it owed sent by another: the wake-ups may then come early.
    if stopped.elapsed() < Duration::from_secs(4) {
        assert!(
            early.is_empty(),
            "heard {early:?} from a stopped connection"
        );
    }
    drop(resume);
    let mut later = early;
    later.extend(next_heard(&mut heard, 3 - later.len(), Duration::from_secs(10)).await);
    let mut orders: Vec<&str> = later.iter().map(|(_, order)| order.as_str()).collect();
    orders.sort_unstable();
    let mut expected: Vec<&str> = paid.iter().map(|(_, order)| order.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(orders, expected);
    // Sent by that connection, or (had it been stopped longer than it may take to answer) by
    // the listener's next one: never by the requests.
    let listeners = db
        .count(&format!("SELECT count(*) FROM ({listening}) AS listener"))
        .await;
    for (sender, order) in &later {
        let current = db
            .count(&format!(
                "SELECT count(*) FROM ({listening}) AS l WHERE pid = {sender}"
            ))
            .await;
        assert!(
            *sender == pid || current == 1,
            "{order} was announced by {sender}, not by a listener ({listeners} now)"
        );
    }

    // Its server process ended while it owed wake-ups (terminated while stopped): what it
    // owed is sent by whoever sends next (the pool, or its next connection), never dropped.
    let pid = listener_pid(&app, &db, &listening).await;
    let mut owed = Vec::new();
    for amount in ["6.00", "7.00"] {
        let order = app.order(&merchant, amount, "wechat").await;
        owed.push((amount, order["id"].as_str().unwrap().to_owned()));
    }
    signal("-STOP", pid);
    let resume = Resume(pid);
    for (amount, _) in &owed {
        let payment = app.pay(&listener.device, "wechat", amount).await;
        assert_eq!(payment["result"], "matched", "{payment}");
    }
    db.execute(&format!("SELECT pg_terminate_backend({pid})"))
        .await;
    drop(resume);
    let heard = next_heard(&mut heard, 2, Duration::from_secs(20)).await;
    let mut orders: Vec<&str> = heard.iter().map(|(_, order)| order.as_str()).collect();
    orders.sort_unstable();
    let mut expected: Vec<&str> = owed.iter().map(|(_, order)| order.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(orders, expected, "the wake-ups owed by a lost connection");
}

/// The process id of `app`'s listener connection (`listening` selects it), once it listens.
async fn listener_pid(app: &crate::helpers::TestApp, db: &TestDb, listening: &str) -> i32 {
    for _ in 0..200 {
        let metrics = app.client.get(format!("{}/metrics", app.address)).send();
        let metrics = metrics.await.unwrap().text().await.unwrap();
        let pid = db
            .count(&format!("SELECT coalesce(({listening}), 0)"))
            .await;
        if metrics.contains("solopay_order_listener_connected 1") && pid != 0 {
            return i32::try_from(pid).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the instance's listener never connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listener_connection_the_work_sends_its_own_wake_ups() {
    // TLS required: the pool connects with it, the listener (which has none) never does.
    let TestEnv { app, db } = spawn_app_with(|settings| {
        let url = format!("{}?sslmode=require", settings.database_url.as_str());
        settings.database_url = url.into();
    })
    .await;
    let merchant = app.create_merchant("shop").await;
    let listener = app.online_listener("wechat").await;
    let metrics = app.client.get(format!("{}/metrics", app.address)).send();
    let metrics = metrics.await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("solopay_order_listener_connected 0"),
        "the listener connected: {metrics}"
    );
    let (_session, mut heard) = listen_with_senders(&db, ORDER_CHANGED_CHANNEL).await;

    let order = app.order(&merchant, "2.00", "wechat").await;
    let payment = app.pay(&listener.device, "wechat", "2.00").await;
    assert_eq!(payment["result"], "matched", "{payment}");
    let heard = next_heard(&mut heard, 1, Duration::from_secs(5)).await;
    assert_eq!(heard.len(), 1, "the payment's wake-up was never sent");
    assert_eq!(heard[0].1, order["id"].as_str().unwrap());
}
