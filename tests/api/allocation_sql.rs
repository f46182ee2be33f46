//! The allocation rule at its own level: `solopay_create_order` and `solopay_free_offset` called
//! directly on fixtures in a fresh, migrated database (no HTTP), including their refusals as
//! SQLSTATEs.

use std::time::Duration;

use tokio_postgres::Client;

use crate::helpers::*;

/// A fresh database, migrated and with the SQL sources applied, and a client on it.
async fn migrated() -> (TestDb, Client) {
    let db = TestDb::fresh();
    solopay::app::prepare_database(&db.url, Duration::ZERO)
        .await
        .unwrap();
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO merchants (id, name, api_key_hash, webhook_secret, md5_key) \
             VALUES ('mch_t', 'shop', '\\x00', 'whsec_x', 'k')",
        )
        .await
        .unwrap();
    (db, client)
}

/// An online device with a payee of `channel`.
async fn payee(client: &Client, id: &str, channel: &str) {
    client
        .batch_execute(&format!(
            "INSERT INTO devices (id, name, secret, last_seen_at) VALUES ('dev_{id}', '{id}', 's', now()); \
             INSERT INTO payees (id, channel, name, qr_code, device_id) \
             VALUES ('{id}', '{channel}', '{id}', 'code://{id}', 'dev_{id}')"
        ))
        .await
        .unwrap();
}

/// What one call made: the order's payable amount, payee and whether its code carries the amount.
#[derive(Debug, PartialEq)]
struct Made {
    payable: String,
    payee: String,
    fixed: bool,
}

/// Calls `solopay_create_order` for `amount` with offsets of `step` (0.01 up, -0.01 down) and
/// at most `max_steps`; the order, or the SQLSTATE it refused with.
async fn create(
    client: &Client,
    merchant_order_id: &str,
    amount: &str,
    max_steps: i32,
    step: &str,
) -> Result<Made, String> {
    let rows = client
        .query(
            &format!(
                "SELECT payable_amount::text, payee_id, qr_fixed_amount \
                   FROM solopay_create_order('ord_{merchant_order_id}', 'mch_t', '{merchant_order_id}', \
                        '\\x00', 'wechat', {amount}, 300, NULL, NULL, NULL, NULL, 600, {max_steps}, \
                        {step}, 90, 'native', NULL)"
            ),
            &[],
        )
        .await
        .map_err(|e| e.code().map_or_else(|| e.to_string(), |c| c.code().to_string()))?;
    let row = rows.first().ok_or("no row")?;
    Ok(Made {
        payable: row.get(0),
        payee: row.get(1),
        fixed: row.get(2),
    })
}

fn payable(made: &Result<Made, String>) -> &str {
    made.as_ref().map_or("refused", |m| m.payable.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_go_up_from_the_price_and_a_freed_gap_is_taken_first() {
    let (_db, client) = migrated().await;
    payee(&client, "pye_a", "wechat").await;
    let mut made = Vec::new();
    for n in 0..3 {
        made.push(create(&client, &format!("up-{n}"), "10.00", 99, "0.01").await);
    }
    let amounts: Vec<&str> = made.iter().map(payable).collect();
    assert_eq!(amounts, ["10.00", "10.01", "10.02"]);
    // The middle one's reservation ends: its amount is the smallest free one again.
    client
        .batch_execute("UPDATE orders SET reserved_until = created_at WHERE id = 'ord_up-1'")
        .await
        .unwrap();
    assert_eq!(
        payable(&create(&client, "up-3", "10.00", 99, "0.01").await),
        "10.01"
    );
    assert_eq!(
        payable(&create(&client, "up-4", "10.00", 99, "0.01").await),
        "10.03"
    );
    // The same merchant_order_id again: the existing order, not a second one.
    assert_eq!(
        payable(&create(&client, "up-0", "10.00", 99, "0.01").await),
        "10.00"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_go_down_never_below_one_fen_and_exhaustion_is_sp002() {
    let (_db, client) = migrated().await;
    payee(&client, "pye_a", "wechat").await;
    assert_eq!(
        payable(&create(&client, "d-0", "0.02", 99, "-0.01").await),
        "0.02"
    );
    assert_eq!(
        payable(&create(&client, "d-1", "0.02", 99, "-0.01").await),
        "0.01"
    );
    assert_eq!(
        create(&client, "d-2", "0.02", 99, "-0.01").await,
        Err("SP002".to_string())
    );
    // With one step allowed, two orders of one price, then SP002.
    assert_eq!(
        payable(&create(&client, "e-0", "5.00", 1, "0.01").await),
        "5.00"
    );
    assert_eq!(
        payable(&create(&client, "e-1", "5.00", 1, "0.01").await),
        "5.01"
    );
    assert_eq!(
        create(&client, "e-2", "5.00", 1, "0.01").await,
        Err("SP002".to_string())
    );
    // solopay_free_offset says the same on its own.
    let free: Option<i32> = client
        .query_one("SELECT solopay_free_offset('pye_a', 5.00, 1, 0.01)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(free, None);
    let free: Option<i32> = client
        .query_one("SELECT solopay_free_offset('pye_a', 5.00, 5, 0.01)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(free, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_enabled_payee_with_an_online_device_is_sp001() {
    let (_db, client) = migrated().await;
    assert_eq!(
        create(&client, "n-0", "1.00", 99, "0.01").await,
        Err("SP001".to_string())
    );
    payee(&client, "pye_a", "wechat").await;
    client
        .batch_execute("UPDATE devices SET last_seen_at = now() - interval '1 hour'")
        .await
        .unwrap();
    assert_eq!(
        create(&client, "n-1", "1.00", 99, "0.01").await,
        Err("SP001".to_string())
    );
    client
        .batch_execute("UPDATE devices SET last_seen_at = now(); UPDATE payees SET enabled = false")
        .await
        .unwrap();
    assert_eq!(
        create(&client, "n-2", "1.00", 99, "0.01").await,
        Err("SP001".to_string())
    );
    // An alipay payee does not take wechat orders.
    client
        .batch_execute("UPDATE payees SET enabled = true, channel = 'alipay'")
        .await
        .unwrap();
    assert_eq!(
        create(&client, "n-3", "1.00", 99, "0.01").await,
        Err("SP001".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_amount_code_wins_a_tie_and_otherwise_the_least_recently_used_payee() {
    let (_db, client) = migrated().await;
    payee(&client, "pye_a", "wechat").await;
    payee(&client, "pye_b", "wechat").await;
    client
        .batch_execute(
            "UPDATE payees SET last_used_at = now() - interval '1 hour' WHERE id = 'pye_a'; \
             UPDATE payees SET last_used_at = now() WHERE id = 'pye_b'; \
             INSERT INTO payee_fixed_codes (payee_id, amount, qr_code) \
             VALUES ('pye_b', 20.00, 'code://pye_b/20.00')",
        )
        .await
        .unwrap();
    // pye_a was used longer ago, but pye_b has a code that carries 20.00 itself.
    let first = create(&client, "f-0", "20.00", 99, "0.01").await.unwrap();
    assert_eq!(
        first,
        Made {
            payable: "20.00".into(),
            payee: "pye_b".into(),
            fixed: true
        }
    );
    // 20.00 is free on pye_a (offset 0 beats pye_b's 20.01).
    let second = create(&client, "f-1", "20.00", 99, "0.01").await.unwrap();
    assert_eq!(
        (second.payable.as_str(), second.payee.as_str()),
        ("20.00", "pye_a")
    );
    assert!(!second.fixed);
    // Without fixed codes, equal offsets go to the payee used least recently.
    let third = create(&client, "f-2", "7.00", 99, "0.01").await.unwrap();
    let fourth = create(&client, "f-3", "7.00", 99, "0.01").await.unwrap();
    assert_ne!(third.payee, fourth.payee);
    assert_eq!(
        (third.payable.as_str(), fourth.payable.as_str()),
        ("7.00", "7.00")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_being_allocated_is_skipped_for_an_equally_good_one() {
    let (db, client) = migrated().await;
    payee(&client, "pye_a", "wechat").await;
    payee(&client, "pye_b", "wechat").await;
    // pye_a is the least recently used, but another allocation holds its lock right now.
    client
        .batch_execute(
            "UPDATE payees SET last_used_at = now() - interval '1 hour' WHERE id = 'pye_a'; \
             UPDATE payees SET last_used_at = now() WHERE id = 'pye_b'",
        )
        .await
        .unwrap();
    let holder = db.client().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM payees WHERE id = 'pye_a' FOR NO KEY UPDATE",
            &[],
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let made = create(&client, "s-0", "3.00", 99, "0.01").await.unwrap();
    assert_eq!(made.payee, "pye_b");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it waited for the lock"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amount_held_by_a_payment_nobody_owed_is_taken() {
    let (_db, client) = migrated().await;
    payee(&client, "pye_a", "wechat").await;
    client
        .batch_execute(
            "INSERT INTO notifications (source, device_id, auth_result, auth_headers, body, \
                                        body_length, body_sha256) \
             VALUES ('notify', 'dev_pye_a', 'ok', '{}', '\\x00', 1, '\\x00'); \
             INSERT INTO payments (id, device_id, notification_id, channel, amount, payee_id, \
                                   result, notification_row, holds_amount_until) \
             SELECT 'pay_held', 'dev_pye_a', 'n', 'wechat', 4.00, 'pye_a', 'unmatched', id, \
                    now() + interval '1 minute' FROM notifications",
        )
        .await
        .unwrap();
    assert_eq!(
        payable(&create(&client, "h-0", "4.00", 99, "0.01").await),
        "4.01"
    );
    client
        .batch_execute("UPDATE payments SET holds_amount_until = now()")
        .await
        .unwrap();
    assert_eq!(
        payable(&create(&client, "h-1", "4.00", 99, "0.01").await),
        "4.00"
    );
}
