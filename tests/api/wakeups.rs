//! Wake-ups (`NOTIFY`, `solopay::db::wakeups`): gathered during a `transaction_with_retry` and
//! sent once it has committed, never for one that rolled back; inside a transaction they did
//! not open, with that transaction's commit. The wake-up statement commits without waiting for
//! its WAL flush, and that setting never reaches a transaction that records money.

use std::time::Duration;

use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use solopay::db::events::ORDER_CHANGED_CHANNEL;
use solopay::db::wakeups::{Wakeup, wake};
use solopay::db::{StorageError, transaction_with_retry};
use tokio::sync::mpsc;

use crate::helpers::{TestDb, listen, migrate};

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
