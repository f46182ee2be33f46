//! A year of history, generated in bulk with SQL: orders spread over the past year across the
//! merchants and payees the service created through its API, with the raw notifications and
//! payments that paid them, their events, webhook deliveries and attempts, and a few payments no
//! order owed and notifications refused at the door.
//!
//! Every historic order is in a final state (paid, expired or closed) and its reservation ended
//! at least a day ago, so the history holds no amount. A payee's payable amounts are a
//! permutation of 1.00–999.99 over its consecutive orders (`cents`), so two orders of a payee
//! share a payable amount only 99,900 orders apart (weeks, even at 10 million orders): far
//! outside each other's reservation, as the exclusion constraint requires. Ids are
//! `<prefix>_<32 hex>` as the service makes them (md5 of what the row is, so a rerun is
//! reproducible). Which fate an order has is decided by PostgreSQL's `hashint8extended` of its
//! number, in the proportions of [`Mix`].

use std::time::Instant;

use crate::Result;

/// Per mille of orders (and of payments besides them), in a shop's usual year: most orders are
/// paid on time, some a little late; some expire unpaid or are closed by the shop; a few
/// payments match no order and a few notifications are refused (bad signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub paid_on_time: u64,
    pub paid_late: u64,
    pub expired: u64,
    pub closed: u64,
    /// Payments that paid nothing (a wrong amount, a payment with no order), per mille of orders.
    pub unmatched_payments: u64,
    /// Notifications refused before reading (bad signature), per mille of orders.
    pub refused_notifications: u64,
    /// Webhook deliveries that succeeded at the first attempt, at a retry, or failed for good.
    pub deliveries_first_try: u64,
    pub deliveries_retried: u64,
    pub deliveries_failed: u64,
}

pub const MIX: Mix = Mix {
    paid_on_time: 880,
    paid_late: 20,
    expired: 70,
    closed: 30,
    unmatched_payments: 10,
    refused_notifications: 2,
    deliveries_first_try: 960,
    deliveries_retried: 30,
    deliveries_failed: 10,
};

/// Merchants' shares of the orders, in per mille (a big shop, two middling ones, a small one).
pub const MERCHANT_SHARES: [u64; 4] = [500, 250, 150, 100];

/// Attempts of a delivery that failed for good.
const FAILED_DELIVERY_ATTEMPTS: i64 = 8;

/// Orders written per transaction (and per progress line).
pub const CHUNK: u64 = 100_000;

/// How many rows of each kind a history of `orders` orders should have, from [`MIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub orders: u64,
    pub paid: u64,
    pub expired_unpaid: u64,
    pub closed: u64,
    pub unmatched_payments: u64,
    pub refused_notifications: u64,
}

impl Mix {
    pub fn expected(&self, orders: u64) -> Expected {
        let share = |per_mille: u64| orders * per_mille / 1000;
        Expected {
            orders,
            paid: share(self.paid_on_time + self.paid_late),
            expired_unpaid: share(self.expired),
            closed: share(self.closed),
            unmatched_payments: share(self.unmatched_payments),
            refused_notifications: share(self.refused_notifications),
        }
    }

    /// The orders' fates add up to the whole, and so do the deliveries'.
    #[cfg(test)]
    pub fn is_whole(&self) -> bool {
        self.paid_on_time + self.paid_late + self.expired + self.closed == 1000
            && self.deliveries_first_try + self.deliveries_retried + self.deliveries_failed == 1000
    }
}

/// `[start, end)` ranges of `CHUNK` numbers covering `0..total`.
pub fn chunks(total: u64) -> Vec<(u64, u64)> {
    (0..total.div_ceil(CHUNK))
        .map(|k| (k * CHUNK, ((k + 1) * CHUNK).min(total)))
        .collect()
}

/// A number from 0 to 999 for `i`, different for each `salt`: PostgreSQL's 64-bit hash of it.
fn per_mille(i: &str, salt: u32) -> String {
    format!("((hashint8extended({i}, {salt}) % 1000 + 1000) % 1000)")
}

/// The SQL of the merchant a hash (0–999) picks, by [`MERCHANT_SHARES`].
fn merchant_pick(hash: &str) -> String {
    let mut bound = 0;
    let mut cases = String::from("CASE");
    for (k, share) in MERCHANT_SHARES.iter().enumerate() {
        bound += share;
        cases.push_str(&format!(" WHEN {hash} < {bound} THEN {k}"));
    }
    cases.push_str(" END");
    cases
}

/// The history's start, the time between two orders, and how many payees and merchants share it.
struct Plan {
    start: String,
    step: String,
    payees: u64,
    merchants: u64,
}

/// Writes the history's plan (its start, the step between orders, the payees and merchants by
/// number) into temporary tables of this session.
async fn plan(db: &tokio_postgres::Client, orders: u64) -> Result<Plan> {
    db.batch_execute(&format!(
        "CREATE TEMP TABLE history_plan AS \
           SELECT date_trunc('second', now()) - interval '365 days' AS start, \
                  interval '364 days' / {orders} AS step, \
                  interval '364 days' / greatest({orders} * {unmatched} / 1000, 1) AS unmatched_step, \
                  interval '364 days' / greatest({orders} * {refused} / 1000, 1) AS refused_step; \
         CREATE TEMP TABLE history_payees AS \
           SELECT (row_number() OVER (ORDER BY id) - 1)::bigint AS k, id, device_id, channel, \
                  qr_code FROM payees; \
         CREATE TEMP TABLE history_merchants AS \
           SELECT (row_number() OVER (ORDER BY id) - 1)::bigint AS k, id, notify_url, \
                  coalesce(lower(substring(notify_url from '^([A-Za-z][A-Za-z0-9+.-]*://)')) || \
                           lower(substring(notify_url from \
                               '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^/?#]+)')), \
                           notify_url) AS destination \
             FROM merchants; \
         ANALYZE history_plan; ANALYZE history_payees; ANALYZE history_merchants;",
        unmatched = MIX.unmatched_payments,
        refused = MIX.refused_notifications,
    ))
    .await?;
    let payees: i64 = db
        .query_one("SELECT count(*) FROM history_payees", &[])
        .await?
        .get(0);
    let merchants: i64 = db
        .query_one("SELECT count(*) FROM history_merchants", &[])
        .await?
        .get(0);
    if payees == 0 || merchants < MERCHANT_SHARES.len() as i64 {
        return Err(format!(
            "the history needs payees and {} merchants; found {payees} and {merchants}",
            MERCHANT_SHARES.len()
        )
        .into());
    }
    let times = db
        .query_one("SELECT start::text, step::text FROM history_plan", &[])
        .await?;
    Ok(Plan {
        start: times.get(0),
        step: times.get(1),
        payees: payees as u64,
        merchants: merchants as u64,
    })
}

/// Orders `[lo, hi)`: order i is created in the i-th step of the year, on payee i mod P. Each
/// is released (`holds_amount` false), as the sweep would have: the year ends a day ago.
fn orders_sql(lo: u64, hi: u64, payees: u64) -> String {
    let fate = per_mille("i", 1);
    let timing = per_mille("i", 2);
    let merchant_hash = per_mille("i", 3);
    let merchant = merchant_pick("s.merchant_hash");
    let (on_time, late, expired) = (
        MIX.paid_on_time,
        MIX.paid_on_time + MIX.paid_late,
        MIX.paid_on_time + MIX.paid_late + MIX.expired,
    );
    format!(
        "INSERT INTO orders (id, merchant_id, merchant_order_id, request_fingerprint, status, \
                             channel, amount, payable_amount, payee_id, qr_code, qr_fixed_amount, \
                             subject, created_at, expires_at, reserved_until, paid_at, paid_late, \
                             closed_at, holds_amount) \
         SELECT 'ord_' || md5('history order ' || s.i), m.id, 'h' || s.i, \
                sha256(convert_to('h' || s.i, 'UTF8')), s.status, p.channel, \
                CASE WHEN s.timing % 5 = 0 THEN (s.cents / 100)::numeric \
                     ELSE s.cents / 100.0 END, \
                s.cents / 100.0, p.id, p.qr_code, false, 'Order h' || s.i, \
                s.created_at, s.created_at + interval '300 s', \
                coalesce(s.paid_at, s.closed_at, s.created_at + interval '300 s') \
                    + interval '600 s', \
                s.paid_at, s.status = 'paid' AND s.fate >= {on_time}, s.closed_at, false \
           FROM (SELECT i, f.fate, t.timing, {merchant_hash} AS merchant_hash, \
                        (100 + ((i / {payees}) * 7919) % 99900)::bigint AS cents, \
                        CASE WHEN f.fate < {late} THEN 'paid' \
                             WHEN f.fate < {expired} THEN 'expired' ELSE 'closed' END AS status, \
                        c.created_at, \
                        CASE WHEN f.fate < {on_time} \
                                  THEN c.created_at + (10 + t.timing % 280) * interval '1 s' \
                             WHEN f.fate < {late} \
                                  THEN c.created_at + (301 + t.timing % 500) * interval '1 s' \
                        END AS paid_at, \
                        CASE WHEN f.fate >= {expired} \
                                  THEN c.created_at + (5 + t.timing % 250) * interval '1 s' \
                        END AS closed_at \
                   FROM generate_series({lo}::bigint, {hi}::bigint - 1) i \
                  CROSS JOIN history_plan plan \
                  CROSS JOIN LATERAL (SELECT {fate} AS fate) f \
                  CROSS JOIN LATERAL (SELECT {timing} AS timing) t \
                  CROSS JOIN LATERAL (SELECT plan.start + plan.step * i \
                                             + plan.step * (t.timing / 1000.0) AS created_at) c \
                ) s \
           JOIN history_payees p ON p.k = s.i % {payees} \
           JOIN history_merchants m ON m.k = {merchant}"
    )
}

/// The orders of a chunk, by their creation time (order i is created within the i-th step).
fn chunk_orders(plan: &Plan, lo: u64, hi: u64) -> String {
    let Plan { start, step, .. } = plan;
    format!(
        "(SELECT * FROM orders \
           WHERE created_at >= '{start}'::timestamptz + '{step}'::interval * {lo} \
             AND created_at < '{start}'::timestamptz + '{step}'::interval * {hi}) o"
    )
}

/// What a listener reports for a payment of `amount` (SQL text) on `channel`: package, title
/// and text.
const REPORT: &str = "CROSS JOIN LATERAL (SELECT \
        CASE o.channel WHEN 'wechat' THEN 'com.tencent.mm' \
                       ELSE 'com.eg.android.AlipayGphone' END AS package, \
        CASE o.channel WHEN 'wechat' THEN '微信支付' ELSE '支付宝通知' END AS title, \
        CASE o.channel WHEN 'wechat' THEN '微信支付收款' || o.payable_amount || '元' \
                       ELSE '支付宝成功收款' || o.payable_amount || '元' END AS text) r";

/// The raw notifications, payments, events, webhook deliveries and attempts of a chunk's
/// orders. Notification row n + 1 reported the payment of order n.
fn paid_sql(plan: &Plan, lo: u64, hi: u64) -> String {
    let orders = chunk_orders(plan, lo, hi);
    format!(
        "INSERT INTO notifications (id, received_at, source, device_id, auth_result, \
                                    auth_headers, body, body_length, body_sha256, remote_addr, \
                                    payment_id, reading, same_payment_key) \
         SELECT substr(o.merchant_order_id, 2)::bigint + 1, o.paid_at - interval '1 s', \
                'notify', p.device_id, 'ok', \
                jsonb_build_object('x-solopay-device', p.device_id, \
                                   'x-solopay-timestamp', \
                                   extract(epoch FROM o.paid_at)::bigint::text, \
                                   'x-solopay-signature', \
                                   'v1=' || encode(sha256(convert_to(o.id, 'UTF8')), 'hex')), \
                b.body, length(b.body), sha256(b.body), '10.1.0.7', \
                'pay_' || md5('history payment ' || o.id), \
                jsonb_build_object('notification_id', 'n-' || o.merchant_order_id, \
                                   'channel', o.channel, 'amount', o.payable_amount::text, \
                                   'package', r.package, 'title', r.title, 'text', r.text, \
                                   'android', jsonb_build_object('posted_at', b.posted_at)), \
                sha256(b.body) \
           FROM {orders} \
           JOIN history_payees p ON p.id = o.payee_id \
           {REPORT} \
           CROSS JOIN LATERAL (SELECT to_char((o.paid_at - interval '2 s') AT TIME ZONE 'UTC', \
                                              'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS posted_at) t \
           CROSS JOIN LATERAL (SELECT t.posted_at, convert_to(json_build_object( \
                'notification_id', 'n-' || o.merchant_order_id, 'channel', o.channel, \
                'amount', o.payable_amount::text, 'package', r.package, 'title', r.title, \
                'text', r.text, 'posted_at', t.posted_at)::text, 'UTF8') AS body) b \
          WHERE o.status = 'paid'; \
         INSERT INTO payments (id, device_id, notification_id, channel, amount, package, title, \
                               text, reported_at, payee_id, result, order_id, notification_row, \
                               created_at) \
         SELECT 'pay_' || md5('history payment ' || o.id), p.device_id, \
                'n-' || o.merchant_order_id, o.channel, o.payable_amount, r.package, r.title, \
                r.text, o.paid_at - interval '2 s', o.payee_id, 'matched', o.id, \
                substr(o.merchant_order_id, 2)::bigint + 1, o.paid_at \
           FROM {orders} \
           JOIN history_payees p ON p.id = o.payee_id \
           {REPORT} \
          WHERE o.status = 'paid'; \
         INSERT INTO events (id, type, order_id, merchant_id, data, created_at) \
         SELECT 'evt_' || md5(e.type || o.id), e.type, o.id, o.merchant_id, \
                jsonb_build_object('id', o.id, 'merchant_order_id', o.merchant_order_id, \
                    'status', e.status, 'channel', o.channel, 'amount', o.amount::text, \
                    'payable_amount', o.payable_amount::text, 'qr_code', o.qr_code, \
                    'subject', o.subject, 'created_at', o.created_at, \
                    'expires_at', o.expires_at, 'paid_at', \
                    CASE WHEN e.status = 'paid' THEN o.paid_at END, \
                    'paid_late', o.paid_late AND e.status = 'paid', \
                    'closed_at', o.closed_at), \
                e.at \
           FROM {orders} \
           CROSS JOIN LATERAL (VALUES \
                ('order.paid', 'paid', o.paid_at, o.status = 'paid'), \
                ('order.expired', 'expired', o.expires_at, o.status = 'expired' OR o.paid_late), \
                ('order.closed', 'closed', o.closed_at, o.status = 'closed') \
           ) e (type, status, at, happened) \
          WHERE e.happened;"
    )
}

/// A delivery per event of a chunk's orders (their merchants all have a notify URL), and its
/// attempts.
fn deliveries_sql(plan: &Plan, lo: u64, hi: u64) -> String {
    let orders = chunk_orders(plan, lo, hi);
    let outcome = per_mille("substr(o.merchant_order_id, 2)::bigint", 4);
    let first_try = MIX.deliveries_first_try;
    let retried = MIX.deliveries_first_try + MIX.deliveries_retried;
    format!(
        "INSERT INTO webhook_deliveries (id, event_id, merchant_id, order_id, url, status, \
                                         attempts, retry_step, next_attempt_at, \
                                         last_attempt_at, last_status_code, last_error, \
                                         created_at, completed_at, kind, destination) \
         SELECT 'whd_' || md5('history delivery ' || e.id), e.id, e.merchant_id, e.order_id, \
                m.notify_url, d.status, d.attempts, \
                CASE WHEN d.status = 'failed' THEN d.attempts ELSE d.attempts - 1 END, \
                d.done, d.done, CASE WHEN d.status = 'failed' THEN 502 ELSE 200 END, \
                CASE WHEN d.status = 'failed' THEN 'answered 502' END, \
                e.created_at, d.done, 'standard', m.destination \
           FROM {orders} \
           JOIN events e ON e.order_id = o.id \
           JOIN history_merchants m ON m.id = e.merchant_id \
           CROSS JOIN LATERAL (SELECT {outcome} AS outcome) h \
           CROSS JOIN LATERAL (SELECT \
                CASE WHEN h.outcome < {retried} THEN 'succeeded' ELSE 'failed' END AS status, \
                CASE WHEN h.outcome < {first_try} THEN 1 \
                     WHEN h.outcome < {retried} THEN 2 + h.outcome % 2 \
                     ELSE {FAILED_DELIVERY_ATTEMPTS} END AS attempts, \
                e.created_at + CASE WHEN h.outcome < {first_try} THEN interval '0.05 s' \
                                    WHEN h.outcome < {retried} THEN interval '90 s' \
                                    ELSE interval '26 hours' END AS done) d \
          WHERE m.notify_url IS NOT NULL; \
         INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, \
                                       status_code, response_excerpt, error) \
         SELECT w.id, a, w.created_at + (a - 1) * (w.completed_at - w.created_at) \
                                        / greatest(w.attempts - 1, 1), \
                20 + hashint8(a) & 127, \
                CASE WHEN a = w.attempts AND w.status = 'succeeded' THEN 200 ELSE 502 END, \
                CASE WHEN a = w.attempts AND w.status = 'succeeded' THEN 'success' \
                     ELSE '<html>502 Bad Gateway</html>' END, \
                NULL \
           FROM {orders} \
           JOIN webhook_deliveries w ON w.order_id = o.id \
           CROSS JOIN LATERAL generate_series(1, w.attempts) a;"
    )
}

/// Payments that paid nothing `[lo, hi)` (a wrong amount, a payment with no order; their hold
/// on the amount long over), and refused notifications, numbered after the paid ones.
fn unpaid_sql(lo: u64, hi: u64, orders: u64, payees: u64, refused_total: u64) -> String {
    let unmatched_total = orders * MIX.unmatched_payments / 1000;
    let (refused_lo, refused_hi) = (lo.min(refused_total), hi.min(refused_total));
    let amount = per_mille("j", 5);
    format!(
        "INSERT INTO notifications (id, received_at, source, device_id, auth_result, \
                                    auth_headers, body, body_length, body_sha256, remote_addr, \
                                    payment_id, reading) \
         SELECT {orders} + j + 1, u.at, 'notify', p.device_id, 'ok', '{{}}'::jsonb, \
                convert_to(u.text, 'UTF8'), length(u.text), sha256(convert_to(u.text, 'UTF8')), \
                '10.1.2.3', 'pay_' || md5('history unmatched ' || j), \
                jsonb_build_object('notification_id', 'u-' || j, 'channel', p.channel, \
                                   'amount', u.amount::text) \
           FROM generate_series({lo}::bigint, {hi}::bigint - 1) j \
           CROSS JOIN history_plan plan \
           JOIN history_payees p ON p.k = j % {payees} \
           CROSS JOIN LATERAL (SELECT plan.start + plan.unmatched_step * j AS at, \
                                      ((1 + {amount}) * 7 + 0.01)::numeric(12, 2) AS amount) u0 \
           CROSS JOIN LATERAL (SELECT u0.at, u0.amount, \
                                      '{{\"notification_id\": \"u-' || j || '\", \"amount\": \"' \
                                      || u0.amount || '\"}}' AS text) u \
          WHERE j < {unmatched_total}; \
         INSERT INTO payments (id, device_id, notification_id, channel, amount, package, title, \
                               text, reported_at, payee_id, result, notification_row, \
                               created_at, reason, holds_amount_until) \
         SELECT 'pay_' || md5('history unmatched ' || j), p.device_id, 'u-' || j, p.channel, \
                n.amount, CASE p.channel WHEN 'wechat' THEN 'com.tencent.mm' \
                                         ELSE 'com.eg.android.AlipayGphone' END, \
                '收款通知', '收款' || n.amount || '元', n.received_at, p.id, 'unmatched', \
                n.id, n.received_at, 'no pending order of this payee owes this amount', \
                n.received_at + interval '600 s' \
           FROM (SELECT id, received_at, device_id, (reading ->> 'amount')::numeric AS amount, \
                        id - {orders} - 1 AS j \
                   FROM notifications \
                  WHERE id > {orders} + {lo} AND id <= {orders} + least({hi}, {unmatched_total})) n \
           JOIN history_payees p ON p.k = n.j % {payees}; \
         INSERT INTO notifications (id, received_at, source, device_id, auth_result, \
                                    auth_headers, body, body_length, body_sha256, remote_addr) \
         SELECT {orders} + {unmatched_total} + j + 1, \
                plan.start + plan.refused_step * j, 'notify', p.device_id, 'bad_signature', \
                '{{\"x-solopay-signature\": \"v1=00\"}}'::jsonb, \
                convert_to('{{\"amount\": \"1.00\"}}', 'UTF8'), 18, \
                sha256(convert_to('{{\"amount\": \"1.00\"}}', 'UTF8')), '203.0.113.9' \
           FROM generate_series({refused_lo}::bigint, {refused_hi}::bigint - 1) j \
           CROSS JOIN history_plan plan \
           JOIN history_payees p ON p.k = j % {payees};"
    )
}

/// Fills the database with a history of `orders` orders over the past year, printing how far
/// it is; then ANALYZE. The merchants, devices and payees must exist (made through the API).
pub async fn fill(db: &tokio_postgres::Client, orders: u64) -> Result<()> {
    let started = Instant::now();
    let plan = plan(db, orders).await?;
    let (payees, merchants) = (plan.payees, plan.merchants);
    println!(
        "history: {orders} orders over a year on {payees} payees of {merchants} merchants, in \
         chunks of {CHUNK} ..."
    );
    let deferred = Deferred::drop_from(db).await?;
    println!(
        "history: {} indexes and {} foreign keys set aside for the fill (made again after it)",
        deferred.indexes.len(),
        deferred.foreign_keys.len()
    );
    // Whatever happens to the fill, the indexes and keys are made again (a kept cluster must
    // not be left without them); the fill's error, if any, is the one returned.
    let written = write_chunks(db, &plan, orders, started).await;
    if written.is_err() {
        // A chunk that failed leaves its transaction open and aborted.
        let _ = db.batch_execute("ROLLBACK").await;
    }
    deferred.restore(db, started).await?;
    written?;
    println!("history: ANALYZE ...");
    db.batch_execute("ANALYZE").await?;
    keep_summary(db, started).await?;
    println!("history: filled in {} s", started.elapsed().as_secs());
    Ok(())
}

/// Keeps the summary's counts of the whole history, as the service's sweep would have kept them
/// day by day (`solopay_summary_settle`, a year at a time here), so that the measurements do
/// not share the machine with the sweep catching up.
async fn keep_summary(db: &tokio_postgres::Client, started: Instant) -> Result<()> {
    db.batch_execute("SELECT solopay_summary_restart()").await?;
    // Passes until one keeps nothing more; NULL while the service's own sweep holds the lock.
    let mut kept: Option<String> = None;
    loop {
        let until: Option<String> = db
            .query_one(
                "SELECT solopay_summary_settle('400 days', '1 minute')::text",
                &[],
            )
            .await?
            .get(0);
        match until {
            Some(until) if kept.as_ref() == Some(&until) => break,
            Some(until) => kept = Some(until),
            None => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    println!(
        "history: the summary's counts kept, {} s",
        started.elapsed().as_secs()
    );
    Ok(())
}

/// Writes the history's orders chunk by chunk, with what goes with them, printing how far.
async fn write_chunks(
    db: &tokio_postgres::Client,
    plan: &Plan,
    orders: u64,
    started: Instant,
) -> Result<()> {
    let payees = plan.payees;
    let expected = MIX.expected(orders);
    for (lo, hi) in chunks(orders) {
        // Without the summary's triggers (a marker per row written with a past time): the
        // summary's kept counts are made again once the history is written, below.
        let mut sql = String::from("BEGIN; SET LOCAL session_replication_role = replica; ");
        sql.push_str(&orders_sql(lo, hi, payees));
        sql.push_str("; ");
        sql.push_str(&paid_sql(plan, lo, hi));
        sql.push_str(&deliveries_sql(plan, lo, hi));
        // The unpaid payments and refused notifications, in proportion to the chunk.
        let per_chunk = |total: u64| (lo * total / orders, hi * total / orders);
        let (u_lo, u_hi) = per_chunk(
            expected
                .unmatched_payments
                .max(expected.refused_notifications),
        );
        sql.push_str(&unpaid_sql(
            u_lo,
            u_hi,
            orders,
            payees,
            expected.refused_notifications,
        ));
        sql.push_str(" COMMIT;");
        db.batch_execute(&sql).await?;
        println!(
            "  history: {hi}/{orders} orders with their payments, notifications, events and \
             webhooks, {} s",
            started.elapsed().as_secs()
        );
    }
    let last_notification = orders + expected.unmatched_payments + expected.refused_notifications;
    db.batch_execute(&format!(
        "SELECT setval('notifications_id_seq', {last_notification} + 1)"
    ))
    .await?;
    Ok(())
}

/// The tables the fill writes.
pub const FILLED_TABLES: [&str; 6] = [
    "orders",
    "payments",
    "notifications",
    "events",
    "webhook_deliveries",
    "webhook_attempts",
];

/// The secondary indexes of the filled tables and the foreign keys from or to them, set aside
/// while the history is written and made again after it, as a bulk load is done: each index
/// built once by sorting, each key checked once by a join, instead of an index entry and a
/// locked lookup per row (the fill of 3 million orders took 18 minutes with them in place).
/// What enforces uniqueness and the amounts' exclusion stays in place throughout, so the fill
/// is checked as it is written, and so do the partial indexes: the running service's periodic
/// work reads them (the sweep, the webhook and stranded-notification pollers; without the
/// webhooks' due index their poll read the whole growing table every second), and the
/// history's rows enter them in time order or not at all. The indexes come out as freshly built ones (compact, no page
/// splits), where a year of inserts leaves them partly empty: a note on the figures, not a
/// change of what is measured.
struct Deferred {
    /// Name and definition.
    indexes: Vec<(String, String)>,
    /// Table, name and definition.
    foreign_keys: Vec<(String, String, String)>,
}

impl Deferred {
    async fn drop_from(db: &tokio_postgres::Client) -> Result<Deferred> {
        let tables: Vec<String> = FILLED_TABLES.iter().map(|t| (*t).to_owned()).collect();
        let indexes = db
            .query(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) \
                   FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid \
                  WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1) \
                    AND i.indpred IS NULL AND NOT i.indisunique AND NOT i.indisexclusion \
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
                                     WHERE c.conindid = i.indexrelid \
                                       AND c.contype IN ('p', 'u', 'x')) \
                  ORDER BY 1",
                &[&tables],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect::<Vec<(String, String)>>();
        let foreign_keys = db
            .query(
                "SELECT c.conrelid::regclass::text, quote_ident(c.conname), \
                        pg_get_constraintdef(c.oid) \
                   FROM pg_constraint c \
                  WHERE c.contype = 'f' \
                    AND EXISTS (SELECT 1 FROM pg_class t \
                                 WHERE t.relnamespace = 'public'::regnamespace \
                                   AND t.relname = ANY($1) \
                                   AND t.oid IN (c.conrelid, c.confrelid)) \
                  ORDER BY 1, 2",
                &[&tables],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect::<Vec<(String, String, String)>>();
        // The running service may hold locks on these tables a moment (its sweep, its
        // pollers): waited for, up to a bound, rather than failing at once or hanging.
        let mut sql = String::from("BEGIN; SET LOCAL lock_timeout = '30s'; ");
        for (table, name, _) in &foreign_keys {
            sql.push_str(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}; "));
        }
        for (name, _) in &indexes {
            sql.push_str(&format!("DROP INDEX {name}; "));
        }
        sql.push_str("COMMIT;");
        db.batch_execute(&sql).await?;
        Ok(Deferred {
            indexes,
            foreign_keys,
        })
    }

    /// Builds the indexes and checks the keys, printing each.
    async fn restore(self, db: &tokio_postgres::Client, started: Instant) -> Result<()> {
        db.batch_execute(
            "SET maintenance_work_mem = '512MB'; SET max_parallel_maintenance_workers = 2",
        )
        .await?;
        for (name, definition) in &self.indexes {
            db.batch_execute(definition).await?;
            println!(
                "  history: index {name} built, {} s",
                started.elapsed().as_secs()
            );
        }
        // Added without a check and then checked: the check reads both tables without
        // blocking the running service's writes to them, as adding a checked key would.
        for (table, name, definition) in &self.foreign_keys {
            db.batch_execute(&format!(
                "ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID; \
                 ALTER TABLE {table} VALIDATE CONSTRAINT {name}"
            ))
            .await?;
            println!(
                "  history: foreign key {name} checked, {} s",
                started.elapsed().as_secs()
            );
        }
        db.batch_execute("RESET maintenance_work_mem; RESET max_parallel_maintenance_workers")
            .await?;
        Ok(())
    }
}

/// What the fill wrote, counted: orders by status, payments by result, notifications, events,
/// deliveries, attempts.
pub async fn census(db: &tokio_postgres::Client) -> Result<Vec<(String, i64)>> {
    let rows = db
        .query(
            "SELECT 'orders ' || status, count(*) FROM orders GROUP BY status \
             UNION ALL SELECT 'payments ' || result, count(*) FROM payments GROUP BY result \
             UNION ALL SELECT 'notifications', count(*) FROM notifications \
             UNION ALL SELECT 'events', count(*) FROM events \
             UNION ALL SELECT 'webhook_deliveries', count(*) FROM webhook_deliveries \
             UNION ALL SELECT 'webhook_attempts', count(*) FROM webhook_attempts \
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_adds_up_to_every_order_and_every_delivery() {
        assert!(MIX.is_whole());
        assert_eq!(MERCHANT_SHARES.iter().sum::<u64>(), 1000);
    }

    #[test]
    fn a_million_orders_are_mostly_paid_with_a_few_unmatched_payments() {
        let expected = MIX.expected(1_000_000);
        assert_eq!(expected.paid, 900_000);
        assert_eq!(expected.expired_unpaid, 70_000);
        assert_eq!(expected.closed, 30_000);
        assert_eq!(
            expected.paid + expected.expired_unpaid + expected.closed,
            expected.orders
        );
        assert_eq!(expected.unmatched_payments, 10_000);
        assert_eq!(expected.refused_notifications, 2_000);
    }

    #[test]
    fn chunks_cover_every_order_once() {
        assert_eq!(chunks(0), vec![]);
        assert_eq!(chunks(5), vec![(0, 5)]);
        assert_eq!(
            chunks(250_000),
            vec![(0, 100_000), (100_000, 200_000), (200_000, 250_000)]
        );
    }

    #[test]
    fn merchants_are_picked_by_their_share() {
        assert_eq!(
            merchant_pick("h"),
            "CASE WHEN h < 500 THEN 0 WHEN h < 750 THEN 1 WHEN h < 900 THEN 2 \
             WHEN h < 1000 THEN 3 END"
        );
    }

    #[test]
    fn a_payees_payable_amounts_repeat_only_99900_orders_apart() {
        // The fill's `100 + (j * 7919) % 99900` cents for the payee's j-th order.
        let cents = |j: u64| 100 + (j * 7919) % 99_900;
        let mut seen = std::collections::HashSet::new();
        for j in 0..99_900 {
            let c = cents(j);
            assert!((100..100_000).contains(&c));
            assert!(seen.insert(c), "order {j} repeats {c}");
        }
        assert_eq!(cents(99_900), cents(0));
    }
}
