//! `solopay-bench`: the load generator of issue 7.
//!
//! It starts the release `solopay` binary on a database of its own, sets up merchants, listener
//! devices and payees through the API (devices heartbeat as a listener app would), and measures:
//!
//! - create-order throughput and p50/p99 latency at several concurrencies, (a) the same amount on
//!   one payee and (b) many amounts over 16 payees, checking after each run in SQL that no two
//!   orders of a payee with overlapping reservations share a payable amount;
//! - notify at a fixed rate and as fast as it goes, each notification paying a distinct pending
//!   order, checked to be matched exactly once;
//! - payment-to-webhook latency (a local receiver) and long-poll wake-up latency;
//! - the service's resident memory, also while 1,000 long-polls are open.
//!
//! It prints a table and writes a JSON report. `bench/run.sh` measures pgbench on the same
//! Postgres in the same run and passes its figures in, so that the service's throughput also
//! reads as a ratio of what the database itself does.
//!
//! Same-amount runs use a fresh payee per run and at most `max_offset_steps + 1` requests (the
//! payee's capacity for one base amount), so every request can succeed and every run starts from
//! the same state; the previous run's devices are disabled so that only the new payee is eligible.
// A measuring tool, not the service: a panic ends a run with its message, and its casts round
// figures for the report.
#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::as_conversions,
    clippy::too_many_lines
)]

// The modules live in solopay-bench/ beside this file, the binary's root as Cargo.toml names it.
#[path = "solopay-bench/client.rs"]
mod client;
#[path = "solopay-bench/measure.rs"]
mod measure;
#[path = "solopay-bench/orders.rs"]
mod orders;
#[path = "solopay-bench/payments.rs"]
mod payments;
#[path = "solopay-bench/report.rs"]
mod report;
#[path = "solopay-bench/service.rs"]
mod service;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio_postgres::NoTls;

use crate::client::{Api, Device, Listeners};
use crate::measure::{Probe, vacuum_analyze};
use crate::orders::{
    ONE_PAYEE, SPREAD, create_orders, online_payees, order_run, random_price, retire, warm_up,
};
use crate::payments::{WebhookReceiver, memory_with_long_polls, notify_runs, paced_payments};
use crate::report::{MachineInfo, Report, pgbench_figures, print_report, targets};
use crate::service::{Service, drop_database};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// `SOLOPAY_MAX_OFFSET_STEPS` the service is started with: a payee holds up to 1,000 reserved
/// orders of one base amount.
const MAX_OFFSET_STEPS: usize = 999;
/// Listener apps heartbeat every 30–60 s; a device is offline 90 s after its last one.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(20);
const LONG_POLL_WAIT_SECS: u64 = 30;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks a solopay release binary on a fresh database of its own")]
struct Args {
    /// The service binary [default: `solopay` next to this binary].
    #[arg(long)]
    solopay: Option<PathBuf>,
    /// The Postgres server, without a database name.
    #[arg(long, default_value = "postgres://root@127.0.0.1:5432")]
    database_server: String,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench/report.json")]
    report: PathBuf,
    /// Create-order concurrencies.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    concurrency: Vec<usize>,
    /// Requests per same-amount run (at most 1,000, one payee's capacity for one amount).
    #[arg(long, default_value_t = 1000)]
    one_payee_orders: usize,
    /// Requests per many-amounts run.
    #[arg(long, default_value_t = 2000)]
    spread_orders: usize,
    /// Payees of the many-amounts runs.
    #[arg(long, default_value_t = 16)]
    payees: usize,
    /// Notifications per second of the fixed-rate run.
    #[arg(long, default_value_t = 200)]
    notify_rate: u32,
    /// Seconds of the fixed-rate run.
    #[arg(long, default_value_t = 15)]
    notify_secs: u32,
    /// Notifications of the as-fast-as-it-goes run.
    #[arg(long, default_value_t = 3000)]
    notify_fast: usize,
    /// Notifications in flight in the as-fast-as-it-goes run.
    #[arg(long, default_value_t = 32)]
    notify_concurrency: usize,
    /// Payments whose webhook and long-poll wake-up are timed, one every 50 ms.
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// Long-polls held open while the service's memory is read.
    #[arg(long, default_value_t = 1000)]
    long_polls: usize,
    /// pgbench TPC-B tps measured in the same run (by bench/run.sh), for the ratio.
    #[arg(long)]
    pgbench_tpcb_tps: Option<f64>,
    /// pgbench tps of the service's own create-order statement on one payee, same amount.
    #[arg(long)]
    pgbench_allocation_tps: Option<f64>,
    /// pgbench tps of the service's own create-order statement over 16 payees, many amounts.
    #[arg(long)]
    pgbench_allocation_spread_tps: Option<f64>,
    /// Clients pgbench used (for the record).
    #[arg(long)]
    pgbench_clients: Option<usize>,
    /// The commit measured, as bench/run.sh found it (for the record).
    #[arg(long)]
    source: Option<String>,
    /// Keep the database afterwards (to look at it with EXPLAIN ANALYZE).
    #[arg(long)]
    keep_database: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.one_payee_orders > MAX_OFFSET_STEPS + 1 {
        return Err(format!(
            "--one-payee-orders must be at most {} (one payee's capacity for one amount)",
            MAX_OFFSET_STEPS + 1
        )
        .into());
    }
    let database = format!(
        "solopay_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut service = Service::start(&args, &database)?;
    let outcome = match service.wait_until_ready().await {
        Ok(()) => run(&args, &service).await,
        Err(error) => Err(error),
    };
    let stopped = service.stop().await;
    if !args.keep_database {
        drop_database(&args.database_server, &database).await?;
    } else {
        eprintln!("kept database {database}");
    }
    // A crashed service explains the failed requests better than they do.
    stopped?;
    let report = outcome?;
    print_report(&report);
    if let Some(dir) = args.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.report, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("\nJSON report: {}", args.report.display());
    Ok(())
}

async fn run(args: &Args, service: &Service) -> Result<Report> {
    let started_at = chrono::Utc::now().to_rfc3339();
    let load_average_at_start = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    let api = Api::new(service)?;
    let (db, connection) = tokio_postgres::connect(&service.database_url, NoTls).await?;
    tokio::spawn(connection);
    let db = Arc::new(db);
    let postgres: String = db.query_one("SHOW server_version", &[]).await?.get(0);
    let autovacuum: String = db.query_one("SHOW autovacuum", &[]).await?.get(0);

    let listeners = Listeners::default();
    let heartbeats = listeners.keep_alive(api.clone());
    let receiver = WebhookReceiver::start()?;
    let shop = api.create_merchant("bench shop", None).await?;
    let webhook_shop = api
        .create_merchant("bench shop with webhooks", Some(&receiver.url()))
        .await?;

    warm_up(&api, &shop, &listeners).await?;
    let after_setup = service.memory();

    let mut create_order = Vec::new();
    for &concurrency in &args.concurrency {
        println!("create-order, one payee, same amount, c={concurrency} ...");
        let devices = online_payees(&api, &listeners, 1, "one payee", "alipay").await?;
        vacuum_analyze(&db).await?;
        let probe = Probe::start(service.pid, &db, &service.database);
        let batch = create_orders(
            &api,
            &shop,
            "alipay",
            &format!("one-c{concurrency}"),
            args.one_payee_orders,
            concurrency,
            |_| "10.00".to_string(),
        )
        .await?;
        let resources = probe.finish().await;
        retire(&api, &listeners, &devices).await?;
        create_order.push(order_run(ONE_PAYEE, concurrency, batch, resources, &db).await?);

        println!(
            "create-order, {} payees, many amounts, c={concurrency} ...",
            args.payees
        );
        let devices = online_payees(&api, &listeners, args.payees, "spread", "wechat").await?;
        vacuum_analyze(&db).await?;
        let probe = Probe::start(service.pid, &db, &service.database);
        let batch = create_orders(
            &api,
            &shop,
            "wechat",
            &format!("spread-c{concurrency}"),
            args.spread_orders,
            concurrency,
            |_| random_price(),
        )
        .await?;
        let resources = probe.finish().await;
        retire(&api, &listeners, &devices).await?;
        create_order.push(order_run(SPREAD, concurrency, batch, resources, &db).await?);
    }

    // Payees for everything that follows: notify, webhooks, long-polls.
    let devices = online_payees(&api, &listeners, args.payees, "listener", "wechat").await?;
    let devices: HashMap<String, Device> = devices.into_iter().map(|d| (d.id.clone(), d)).collect();
    let notify = notify_runs(args, &api, &shop, &db, service, &devices).await?;

    println!("payment-to-webhook and long-poll wake-up latency ...");
    let paced = paced_payments(args, &api, &webhook_shop, &db, &devices, &receiver).await?;

    println!("memory with {} open long-polls ...", args.long_polls);
    let memory =
        memory_with_long_polls(args, &api, &shop, &db, &devices, service, after_setup).await?;

    heartbeats.abort();
    let pgbench = pgbench_figures(args, &create_order);
    let targets = targets(&create_order, &notify, &paced, &memory, pgbench.as_ref());
    Ok(Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        source: args.source.clone(),
        started_at,
        machine: MachineInfo {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average_at_start,
            postgres,
            autovacuum,
            maintenance: "VACUUM ANALYZE of the benchmark database before each measured run",
            service_settings: BTreeMap::from([
                ("SOLOPAY_MAX_OFFSET_STEPS", MAX_OFFSET_STEPS.to_string()),
                ("SOLOPAY_DB_POOL_SIZE", "16 (default)".to_string()),
                ("SOLOPAY_WORKERS", "CPU count (default)".to_string()),
                ("SOLOPAY_LOG", "warn".to_string()),
            ]),
        },
        create_order,
        notify,
        payment_to_webhook: paced.webhook,
        long_poll_wake_up: paced.long_poll,
        paced_notify: paced.notify,
        paced_failures: paced.failures,
        memory,
        pgbench,
        targets,
    })
}
