//! History at scale (phase `history`): on a PostgreSQL cluster of the bench's own with autovacuum
//! on, the same measurements on an empty database and on databases filled with a year of
//! history (see `history_fill.rs`): create-order on one payee and on 16, notify, long-poll
//! wake-up and payment-to-webhook, the sweep's pass, the operator's first and hundredth page of
//! orders and a month's summary, and the database's size. Each history is then cut to
//! `--history-retention-days` by the service's own retention passes and measured again.
//!
//! Every database gets the same merchants, devices and payees through the API (secrets are
//! sealed by the service, so they are never written in SQL); the history is spread over all of
//! those payees, and the measured runs take their payees from them, so that a run allocates and
//! matches on payees that carry the history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use serde_json::Value;
use tokio_postgres::NoTls;

use crate::client::{Api, Device, Listeners, Merchant};
use crate::history_fill::{self, FILLED_TABLES, fill};
use crate::history_report::{
    DatabaseSize, HistoryReport, HistoryRun, RetentionFigures, SweepFigures,
};
use crate::measure::Latency;
use crate::orders::{
    ONE_PAYEE, OrderRunPlan, SPREAD, create_orders, measured_order_run, random_price, set_up_shops,
};
use crate::payments::notify_and_latencies;
use crate::service::{Service, on_fresh_database, with_service};
use crate::statements;
use crate::{Args, Result};
use solopay::private_cluster::PrivateCluster;

/// Devices of every database per round of measurements, each with a WeChat and an Alipay payee:
/// one for the one-payee run, `--payees` for the many-payees run and as many listeners for
/// notify, with a spare (34 with the default 16).
fn pool_devices_per_round(args: &Args) -> usize {
    2 * args.payees + 2
}
/// Requests per timed admin read.
const ADMIN_SAMPLES: usize = 20;
/// Sweep passes timed with nothing to expire.
const SWEEP_SAMPLES: usize = 30;
/// Orders made overdue for one timed sweep pass.
const SWEEP_OVERDUE: usize = 1000;
/// The big tables whose sizes the report gives: those the fill writes, and the audit log.
fn sized_tables() -> impl Iterator<Item = &'static str> {
    FILLED_TABLES.into_iter().chain(["audit_log"])
}

/// Starts the cluster and measures the empty database, then each history size in turn.
pub async fn history_phase(args: &Args) -> Result<HistoryReport> {
    println!("history: starting a PostgreSQL cluster of the bench's own (autovacuum on) ...");
    let cluster = PrivateCluster::init("solopay-bench-cluster")?;
    // Autovacuum on, as production runs it.
    let mut options = vec![
        "autovacuum=on",
        "max_connections=100",
        "shared_buffers=512MB",
        "max_wal_size=4GB",
        // What each statement costs, for the report (`statements.rs`).
        "shared_preload_libraries=pg_stat_statements",
    ];
    options.extend(args.history_settings.iter().map(String::as_str));
    cluster.start(&options)?;
    println!(
        "history: cluster at {} in {}",
        cluster.server_url(),
        cluster.dir().display()
    );
    let mut args = args.clone();
    args.database_server = cluster.server_url();
    // Smaller runs than the native phase's: the figures compare databases, not concurrencies.
    args.notify_secs = args.notify_secs.min(10);
    args.notify_fast = args.notify_fast.min(2000);
    let server_settings = settings(&args.database_server).await?;
    let mut runs = Vec::new();
    let sizes: Vec<u64> = std::iter::once(0)
        .chain(args.history_orders.iter().copied())
        .collect();
    for (n, &orders) in sizes.iter().enumerate() {
        println!(
            "\n== history {}/{}: {} orders",
            n + 1,
            sizes.len(),
            thousands(orders)
        );
        let measured = on_fresh_database(&args, async |database| {
            with_service(&args, database, &[], async |service| {
                measure_with_history(&args, service, orders).await
            })
            .await
        })
        .await?;
        runs.extend(measured);
    }
    if args.history_keep_cluster {
        println!(
            "kept the cluster at {} ({}); stop it with pg_ctl -D {}/data stop",
            cluster.server_url(),
            cluster.dir().display(),
            cluster.dir().display()
        );
        std::mem::forget(cluster);
    }
    Ok(HistoryReport {
        server_settings,
        runs,
    })
}

/// The settings of the private cluster that shape the figures.
async fn settings(server: &str) -> Result<Vec<(String, String)>> {
    let (db, connection) = tokio_postgres::connect(&format!("{server}/postgres"), NoTls).await?;
    tokio::spawn(connection);
    let mut values = Vec::new();
    for name in [
        "server_version",
        "autovacuum",
        "shared_buffers",
        "max_wal_size",
        "synchronous_commit",
        "fsync",
        "wal_compression",
        "checkpoint_timeout",
    ] {
        let row = db.query_one(&format!("SHOW {name}"), &[]).await?;
        values.push((name.to_string(), row.get(0)));
    }
    Ok(values)
}

/// Devices made through the API, handed out to the runs that need payees with history.
struct PayeePool {
    devices: Vec<Device>,
    /// Taken by the round under way.
    taken: Vec<Device>,
}

impl PayeePool {
    async fn create(api: &Api, count: usize) -> Result<PayeePool> {
        let mut devices = Vec::with_capacity(count);
        for i in 0..count {
            let device = api
                .online_payees(&format!("shop phone {i}"), &["wechat", "alipay"])
                .await?;
            // Out of allocation until a run takes it.
            api.set_device_enabled(&device, false).await?;
            devices.push(device);
        }
        Ok(PayeePool {
            devices,
            taken: Vec::new(),
        })
    }

    /// `count` devices of the pool, enabled and online.
    async fn take(
        &mut self,
        api: &Api,
        listeners: &Listeners,
        count: usize,
    ) -> Result<Vec<Device>> {
        if count > self.devices.len() {
            return Err(format!("the pool has {} devices left", self.devices.len()).into());
        }
        let taken: Vec<Device> = self.devices.drain(..count).collect();
        for device in &taken {
            api.set_device_enabled(device, true).await?;
            api.heartbeat(device).await?;
            listeners.add(device.clone());
        }
        self.taken.extend(taken.iter().cloned());
        Ok(taken)
    }

    /// Takes the devices of the round that ends out of allocation again, so that the next
    /// round's orders go to its own payees only.
    async fn put_away(&mut self, api: &Api) -> Result<()> {
        for device in self.taken.drain(..) {
            api.set_device_enabled(&device, false).await?;
        }
        Ok(())
    }
}

/// Fills a database with `orders` of history (none: the empty database) and measures it; then,
/// with retention asked for and a history to cut, cuts it and measures again. Every database
/// gets the same pool of payees (the same rounds), so that the empty one compares.
async fn measure_with_history(
    args: &Args,
    service: &Service,
    orders: u64,
) -> Result<Vec<HistoryRun>> {
    let api = Api::new(service)?;
    let (db, connection) = tokio_postgres::connect(&service.database_url, NoTls).await?;
    tokio::spawn(connection);
    let db = Arc::new(db);
    statements::prepare(&db).await?;

    for (k, share) in history_fill::MERCHANT_SHARES.iter().enumerate() {
        let url = format!("https://shop{k}.example.com/solopay/notify");
        api.create_merchant(&format!("history shop {k} ({share} ‰)"), Some(&url))
            .await?;
    }
    let retention_days = (args.history_retention_days > 0).then_some(args.history_retention_days);
    let rounds = 1 + usize::from(retention_days.is_some());
    let mut pool = PayeePool::create(&api, pool_devices_per_round(args) * rounds).await?;
    let mut fill_seconds = None;
    if orders > 0 {
        let started = Instant::now();
        fill(&db, orders).await?;
        fill_seconds = Some(started.elapsed().as_secs_f64());
        wait_for_autovacuum(&db).await?;
        checkpoint(&db).await?;
    }
    let mut runs = vec![measure_round(args, service, &api, &db, &mut pool, orders, None).await?];
    runs[0].fill_seconds = fill_seconds;
    if let (Some(days), true) = (retention_days, orders > 0) {
        expire_leftovers(&service.database_url).await?;
        let retention = cut_history(&service.database_url, &db, days).await?;
        runs.push(
            measure_round(args, service, &api, &db, &mut pool, orders, Some(retention)).await?,
        );
    }
    Ok(runs)
}

/// One round of measurements on the database as it is.
async fn measure_round(
    args: &Args,
    service: &Service,
    api: &Api,
    db: &Arc<tokio_postgres::Client>,
    pool: &mut PayeePool,
    orders: u64,
    retention: Option<RetentionFigures>,
) -> Result<HistoryRun> {
    let census = history_fill::census(db).await?;
    for (what, count) in &census {
        println!("  {what}: {}", thousands(*count as u64));
    }

    let shops = set_up_shops(api).await?;

    println!("create-order, one payee with history, same amount, c=32 ...");
    let devices = pool.take(api, &shops.listeners, 1).await?;
    let plan = OrderRunPlan {
        case: ONE_PAYEE,
        channel: "alipay",
        tag: format!("h-one-{}", retention.is_some()),
        requests: args.one_payee_orders,
        concurrency: 32,
    };
    let create_one = measured_order_run(api, service, db, &shops, &devices, plan, |_| {
        "10.00".to_string()
    })
    .await?;

    println!(
        "create-order, {} payees with history, many amounts, c=32 ...",
        args.payees
    );
    let devices = pool.take(api, &shops.listeners, args.payees).await?;
    let plan = OrderRunPlan {
        case: SPREAD,
        channel: "wechat",
        tag: format!("h-spread-{}", retention.is_some()),
        requests: args.spread_orders,
        concurrency: 32,
    };
    statements::reset(db).await?;
    let create_spread =
        measured_order_run(api, service, db, &shops, &devices, plan, |_| random_price()).await?;
    let create_spread_statements = statements::costliest(db).await?;

    let devices = pool.take(api, &shops.listeners, args.payees).await?;
    statements::reset(db).await?;
    let (notify, paced, _) = notify_and_latencies(args, api, db, service, &shops, devices).await?;
    let notify_statements = statements::costliest(db).await?;

    println!(
        "the sweep: {SWEEP_SAMPLES} passes with nothing to expire, one with {SWEEP_OVERDUE} ..."
    );
    let sweep = sweep_figures(api, &shops.shop, &service.database_url).await?;
    println!("GET /admin/orders: first page, hundredth page; GET /admin/summary for a month ...");
    let admin = admin_figures(api).await?;
    let size = database_size(db).await?;
    shops.heartbeats.abort();
    pool.put_away(api).await?;
    Ok(HistoryRun {
        orders,
        fill_seconds: None,
        retention,
        census,
        create_one,
        create_spread,
        create_spread_statements,
        notify,
        notify_statements,
        long_poll_wake_up: paced.long_poll,
        payment_to_webhook: paced.webhook,
        paced_failures: paced.failures,
        sweep,
        admin_first_page: admin.first_page,
        admin_hundredth_page: admin.hundredth_page,
        admin_pages_walked: admin.pages_walked,
        summary_month_first_ms: admin.summary_month_first_ms,
        summary_month: admin.summary_month,
        size,
    })
}

/// The order rules of a service with default settings on `database_url` (its sweep's).
fn default_rules(database_url: &str) -> Result<solopay::core::orders::OrderRules> {
    let settings = solopay::config::Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some(database_url.to_string()),
        _ => None,
    })?;
    Ok(solopay::core::orders::OrderRules::from(&settings))
}

/// Expires the orders a round left pending (its create-order runs pay none), so that the
/// service's own sweep does not expire them in the middle of the next round's measurements.
async fn expire_leftovers(database_url: &str) -> Result<()> {
    let url = database_url.to_string();
    let expired = tokio::task::spawn_blocking(move || -> Result<usize> {
        let mut conn = solopay::db::startup::establish(&url)?;
        let rules = default_rules(&url)?;
        diesel::sql_query(
            "UPDATE orders SET expires_at = now() - interval '1 second' WHERE status = 'pending'",
        )
        .execute(&mut conn)?;
        let mut expired = 0;
        loop {
            let (now, _) = solopay::sweeper::sweep_pass(&mut conn, &rules)?;
            if now == 0 {
                return Ok(expired);
            }
            expired += now;
        }
    })
    .await??;
    println!(
        "the first round's pending orders expired: {}",
        thousands(expired as u64)
    );
    Ok(())
}

/// Keeps `days` of the history: the service's own retention passes (`solopay::retention`), as
/// its sweep runs them with `SOLOPAY_RETENTION_DAYS`, until no backlog is left; then VACUUM
/// FULL of the tables they emptied, so that the size shows what is left (plain VACUUM, as
/// autovacuum runs it, only makes the space reusable).
async fn cut_history(
    database_url: &str,
    db: &tokio_postgres::Client,
    days: u32,
) -> Result<RetentionFigures> {
    println!("retention: keeping {days} days, passes until no backlog is left ...");
    let url = database_url.to_string();
    let (passes, retired, seconds) = tokio::task::spawn_blocking(
        move || -> Result<(usize, solopay::retention::Retired, f64)> {
            let mut conn = solopay::db::startup::establish(&url)?;
            let keep = Duration::from_secs(u64::from(days) * 86_400);
            let started = Instant::now();
            let mut total = solopay::retention::Retired::default();
            let mut passes = 0;
            loop {
                total += solopay::retention::run_pass(&mut conn, keep)?;
                passes += 1;
                if !total.backlog {
                    return Ok((passes, total, started.elapsed().as_secs_f64()));
                }
            }
        },
    )
    .await??;
    println!(
        "retention: {passes} passes, {seconds:.0} s, {} rows; VACUUM FULL ...",
        thousands(retired.rows() as u64)
    );
    let started = Instant::now();
    for table in RETAINED_TABLES {
        db.batch_execute(&format!("VACUUM (FULL, ANALYZE) {table}"))
            .await?;
    }
    let vacuum_full_seconds = started.elapsed().as_secs_f64();
    checkpoint(db).await?;
    Ok(RetentionFigures {
        days,
        passes,
        seconds,
        rows: vec![
            (
                "raw notifications deleted".into(),
                retired.notifications_deleted,
            ),
            (
                "raw notifications compacted".into(),
                retired.notifications_compacted,
            ),
            ("events deleted".into(), retired.events),
            (
                "webhook deliveries deleted".into(),
                retired.webhook_deliveries,
            ),
            ("webhook attempts deleted".into(), retired.webhook_attempts),
            ("alerts deleted".into(), retired.alerts),
            ("alert deliveries deleted".into(), retired.alert_deliveries),
        ],
        vacuum_full_seconds,
    })
}

/// Writes what the fill or the cut left dirty in shared buffers before a round measures, so
/// that no checkpoint writes it in the middle of the round.
async fn checkpoint(db: &tokio_postgres::Client) -> Result<()> {
    db.batch_execute("CHECKPOINT").await?;
    Ok(())
}

/// The tables retention deletes from or compacts.
const RETAINED_TABLES: [&str; 6] = [
    "notifications",
    "events",
    "webhook_deliveries",
    "webhook_attempts",
    "alerts",
    "alert_deliveries",
];

/// Waits (up to 5 minutes) until autovacuum has vacuumed every table the fill wrote, as it
/// would have long before a real year ended; prints what it waits for.
async fn wait_for_autovacuum(db: &tokio_postgres::Client) -> Result<()> {
    let started = Instant::now();
    loop {
        let waiting: Vec<String> = db
            .query(
                "SELECT relname FROM pg_stat_user_tables \
                  WHERE relname = ANY($1) AND n_live_tup > 0 \
                    AND coalesce(last_autovacuum, last_vacuum) IS NULL ORDER BY 1",
                &[&FILLED_TABLES.to_vec()],
            )
            .await?
            .into_iter()
            .map(|row| row.get(0))
            .collect();
        if waiting.is_empty() {
            println!("history: autovacuum has been through every table");
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(300) {
            println!(
                "history: autovacuum has not reached {} after 5 minutes; measuring anyway",
                waiting.join(", ")
            );
            return Ok(());
        }
        println!(
            "  waiting for autovacuum: {} ({} s)",
            waiting.join(", "),
            started.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// The service's own sweep pass (`solopay::sweeper::sweep_pass`), called on a connection of the
/// bench's: with nothing to expire, and with `SWEEP_OVERDUE` orders made overdue in the same
/// transaction (so the service's own sweep, which skips locked rows, cannot take them first).
async fn sweep_figures(api: &Api, shop: &Merchant, database_url: &str) -> Result<SweepFigures> {
    let batch = create_orders(api, shop, "wechat", "h-sweep", SWEEP_OVERDUE, 32, |_| {
        random_price()
    })
    .await?;
    if !batch.errors.is_empty() {
        return Err(format!("orders for the sweep failed: {:?}", batch.errors).into());
    }
    let ids: Vec<String> = batch.created.into_iter().map(|o| o.id).collect();
    let url = database_url.to_string();
    tokio::task::spawn_blocking(move || -> Result<SweepFigures> {
        let mut conn = solopay::db::startup::establish(&url)?;
        let rules = default_rules(&url)?;
        let mut idle = Vec::with_capacity(SWEEP_SAMPLES);
        for _ in 0..SWEEP_SAMPLES {
            let started = Instant::now();
            solopay::sweeper::sweep_pass(&mut conn, &rules)?;
            idle.push(started.elapsed());
        }
        // The device check is timed before the expiry commits, each call rolled back to a
        // savepoint: the round's devices are online and have reported payments, and the orders
        // just expired are on their payees, so each call finds them silent and raises their
        // alerts; the service's own sweep, which cannot see those expiries yet, marks none of
        // them in the meantime.
        let (expired, elapsed, devices, alerts) =
            conn.transaction(|conn| -> Result<(usize, Duration, Vec<Duration>, usize)> {
                diesel::sql_query(
                    "UPDATE orders SET expires_at = now() - interval '1 second' \
                      WHERE id = ANY($1) AND status = 'pending'",
                )
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&ids)
                .execute(conn)?;
                let started = Instant::now();
                let (expired, _) = solopay::sweeper::sweep_pass(conn, &rules)?;
                let elapsed = started.elapsed();
                let mut devices = Vec::with_capacity(SWEEP_SAMPLES);
                let mut alerts = 0;
                for _ in 0..SWEEP_SAMPLES {
                    conn.batch_execute("SAVEPOINT device_check")?;
                    let started = Instant::now();
                    let checked =
                        solopay::core::alerts::sweep_devices(conn, rules.device_offline_after);
                    devices.push(started.elapsed());
                    conn.batch_execute("ROLLBACK TO SAVEPOINT device_check")?;
                    alerts = checked?;
                }
                Ok((expired, elapsed, devices, alerts))
            })?;
        Ok(SweepFigures {
            pass_with_nothing_to_expire: Latency::of(idle),
            overdue: ids.len(),
            expired_in_one_pass: expired,
            pass_expiring_ms: elapsed.as_secs_f64() * 1000.0,
            devices_pass: Latency::of(devices),
            alerts_per_device_pass: alerts,
        })
    })
    .await?
}

struct AdminFigures {
    first_page: Latency,
    hundredth_page: Latency,
    pages_walked: usize,
    summary_month_first_ms: f64,
    summary_month: Latency,
}

/// `GET path` as the operator, timed.
async fn admin_get(api: &Api, path: &str) -> Result<(Value, Duration)> {
    let started = Instant::now();
    let response = api
        .http
        .get(api.url(path))
        .bearer_auth(&api.admin_token)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        return Err(format!("{path}: {status} {body}").into());
    }
    Ok((body, elapsed))
}

async fn timed(api: &Api, path: &str) -> Result<Latency> {
    let mut samples = Vec::with_capacity(ADMIN_SAMPLES);
    for _ in 0..ADMIN_SAMPLES {
        samples.push(admin_get(api, path).await?.1);
    }
    Ok(Latency::of(samples))
}

async fn admin_figures(api: &Api) -> Result<AdminFigures> {
    let first_page = timed(api, "/admin/orders").await?;
    // The cursor of the 100th page: the last id of the 99th, walked to page by page.
    let mut cursor: Option<String> = None;
    let mut pages_walked = 0;
    for _ in 1..100 {
        let path = match &cursor {
            Some(after) => format!("/admin/orders?starting_after={after}"),
            None => "/admin/orders".to_string(),
        };
        let (page, _) = admin_get(api, &path).await?;
        let last = page["data"]
            .as_array()
            .and_then(|orders| orders.last())
            .and_then(|order| order["id"].as_str())
            .map(str::to_string);
        pages_walked += 1;
        match last {
            Some(last) if page["has_more"] == true => cursor = Some(last),
            _ => break,
        }
    }
    let hundredth = match &cursor {
        Some(after) => format!("/admin/orders?starting_after={after}"),
        None => "/admin/orders".to_string(),
    };
    let hundredth_page = timed(api, &hundredth).await?;
    // A whole month two months ago: in the history, far from the bench's own orders.
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Days::new(61);
    let to = from + chrono::Days::new(30);
    let summary = format!("/admin/summary?from={from}&to={to}");
    // The first time, the month's days are counted from the kept quarters and kept whole.
    let summary_month_first_ms = admin_get(api, &summary).await?.1.as_secs_f64() * 1000.0;
    let summary_month = timed(api, &summary).await?;
    Ok(AdminFigures {
        first_page,
        hundredth_page,
        pages_walked: pages_walked + 1,
        summary_month_first_ms,
        summary_month,
    })
}

async fn database_size(db: &tokio_postgres::Client) -> Result<DatabaseSize> {
    let database: i64 = db
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get(0);
    let mut tables = Vec::new();
    for table in sized_tables() {
        let bytes: i64 = db
            .query_one(
                "SELECT pg_total_relation_size($1::text::regclass)",
                &[&table],
            )
            .await?
            .get(0);
        tables.push((table.to_string(), bytes));
    }
    Ok(DatabaseSize {
        database_bytes: database,
        tables,
    })
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }
}
