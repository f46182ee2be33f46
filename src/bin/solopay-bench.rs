//! `solopay-bench`: the load generator of issues 7 and 19.
//!
//! It starts the release `solopay` binary on a database of its own, sets up merchants, listener
//! devices and payees through the API (devices heartbeat as a listener app would), and measures
//! the native API (phase `native`):
//!
//! - create-order throughput and p50/p99 latency at several concurrencies, (a) the same amount on
//!   one payee and (b) many amounts over 16 payees, checking after each run in SQL that no two
//!   orders of a payee with overlapping reservations share a payable amount;
//! - notify at a fixed rate and as fast as it goes, each notification paying a distinct pending
//!   order, checked to be matched exactly once;
//! - payment-to-webhook latency (a local receiver) and long-poll wake-up latency;
//! - the service's resident memory, also while 1,000 long-polls are open;
//!
//! and then, on another service and database of its own, the older protocols (phase
//! `protocols`, see `protocols.rs`): V免签's createOrder, appHeart and appPush and 易支付's
//! mapi.php, with a new connection per request and with keep-alive. With `--base-url` it
//! measures only those, against any server that speaks them.
//!
//! Phase `history` (see `history.rs`) starts a PostgreSQL cluster of its own with autovacuum on,
//! and measures the native API on an empty database and on a year of history filled in SQL.
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
#[path = "solopay-bench/compat_client.rs"]
mod compat_client;
#[path = "solopay-bench/history.rs"]
mod history;
#[path = "solopay-bench/history_fill.rs"]
mod history_fill;
#[path = "solopay-bench/history_report.rs"]
mod history_report;
#[path = "solopay-bench/measure.rs"]
mod measure;
#[path = "solopay-bench/orders.rs"]
mod orders;
#[path = "solopay-bench/payments.rs"]
mod payments;
#[path = "solopay-bench/protocols.rs"]
mod protocols;
#[path = "solopay-bench/report.rs"]
mod report;
#[path = "solopay-bench/service.rs"]
mod service;
#[path = "solopay-bench/statements.rs"]
mod statements;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio_postgres::NoTls;

use crate::client::Api;
use crate::orders::{
    ONE_PAYEE, OrderRunPlan, SPREAD, measured_order_run, online_payees, random_price, set_up_shops,
};
use crate::payments::{memory_with_long_polls, notify_and_latencies};
use crate::report::{MachineInfo, NativeReport, Report, pgbench_figures, print_report, targets};
use crate::service::{Service, on_fresh_database, with_service};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// `SOLOPAY_MAX_OFFSET_STEPS` the service is started with: a payee holds up to 1,000 reserved
/// orders of one base amount.
const MAX_OFFSET_STEPS: usize = 999;
/// Listener apps heartbeat every 30–60 s; a device is offline 90 s after its last one.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(20);
const LONG_POLL_WAIT_SECS: u64 = 30;

/// What a run measures, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// The native API.
    Native,
    /// V免签 and 易支付 V1.
    Protocols,
    /// The native API on an empty database and on a year of history (`--history-orders`), on
    /// a PostgreSQL cluster of the bench's own with autovacuum on.
    History,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Native => "the native API",
            Phase::Protocols => "the old protocols (V免签, 易支付 V1)",
            Phase::History => "history at scale (a cluster of its own)",
        }
    }
}

#[derive(Debug, Clone, Parser)]
#[command(
    about = "Benchmarks a solopay release binary on a fresh database of its own, or the old \
             protocols of any server (--base-url)"
)]
struct Args {
    /// What to measure on the bench's own service.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "native,protocols"
    )]
    phases: Vec<Phase>,
    /// Measure the old protocols of the server at this URL (started by someone else) instead;
    /// the credentials below say which workloads can run.
    #[arg(long)]
    base_url: Option<String>,
    /// With --base-url: the V免签 merchant's key (its md5 key), for createOrder.
    #[arg(long)]
    vmq_key: Option<String>,
    /// With --base-url: the V免签 app's key (a listener device's secret), for appHeart and
    /// appPush.
    #[arg(long)]
    vmq_app_secret: Option<String>,
    /// With --base-url: the 易支付 merchant's number, for mapi.php.
    #[arg(long)]
    epay_pid: Option<String>,
    /// With --base-url: the 易支付 merchant's md5 key.
    #[arg(long)]
    epay_key: Option<String>,
    /// Seconds of each old-protocol run.
    #[arg(long, default_value_t = 3)]
    protocol_secs: u64,
    /// Clients of each old-protocol run.
    #[arg(long, default_value_t = 16)]
    protocol_concurrency: usize,
    /// Requests of an old-protocol run at most.
    #[arg(long, default_value_t = 10_000)]
    protocol_max_requests: usize,
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
    /// History sizes of the history phase, in orders (the empty database is always measured
    /// first), e.g. 1000000,10000000.
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    history_orders: Vec<u64>,
    /// Leave the history phase's cluster running at the end (with --keep-database, to look at
    /// its databases).
    #[arg(long)]
    history_keep_cluster: bool,
    /// After measuring each history, keep only this many days of it (`SOLOPAY_RETENTION_DAYS`'s
    /// passes until no backlog is left, then VACUUM FULL of what they emptied) and measure again
    /// on the same database; 0 leaves retention out.
    #[arg(long, default_value_t = 30)]
    history_retention_days: u32,
    /// A server setting (`name=value`) of the history phase's cluster, after its own; repeat for
    /// more (e.g. `--history-setting wal_compression=lz4`).
    #[arg(long = "history-setting", value_name = "NAME=VALUE")]
    history_settings: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Stopped by Ctrl-C or SIGTERM, the bench drops what it is doing: the service it started is
    // killed and its private cluster stopped and removed, as at the end of a run.
    tokio::select! {
        outcome = run(args) => outcome,
        signal = stop_signal() => {
            Err(format!("stopped by {signal}: the bench's service and cluster are gone").into())
        }
    }
}

/// The name of the first stopping signal received.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

async fn run(args: Args) -> Result<()> {
    if args.one_payee_orders > MAX_OFFSET_STEPS + 1 {
        return Err(format!(
            "--one-payee-orders must be at most {} (one payee's capacity for one amount)",
            MAX_OFFSET_STEPS + 1
        )
        .into());
    }
    let started_at = chrono::Utc::now().to_rfc3339();
    let load_average_at_start = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    let (native, protocols, history) = match &args.base_url {
        Some(base_url) => {
            println!("== the old protocols against {base_url}");
            (
                None,
                Some(protocols::on_server(&args, base_url).await?),
                None,
            )
        }
        None => {
            let phases = args.phases.len();
            let mut native = None;
            let mut protocols = None;
            let mut history = None;
            for (n, phase) in args.phases.iter().enumerate() {
                println!("\n== phase {}/{phases}: {}", n + 1, phase.describe());
                match phase {
                    Phase::Native => {
                        native = Some(
                            on_fresh_database(&args, async |database| {
                                with_service(&args, database, &[], async |service| {
                                    native_phase(&args, service).await
                                })
                                .await
                            })
                            .await?,
                        );
                    }
                    Phase::Protocols => {
                        protocols = Some(protocols::on_own_service(&args).await?);
                    }
                    Phase::History => {
                        history = Some(history::history_phase(&args).await?);
                    }
                }
            }
            (native, protocols, history)
        }
    };
    let machine = machine_info(&args, load_average_at_start).await;
    let report = Report {
        command: recorded_command(std::env::args()),
        source: args.source.clone(),
        started_at,
        machine,
        native,
        protocols,
        history,
    };
    print_report(&report);
    if let Some(dir) = args.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.report, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("\nJSON report: {}", args.report.display());
    Ok(())
}

/// Flags whose values are keys, hidden in the report's command.
const SECRET_FLAGS: [&str; 3] = ["--vmq-key", "--vmq-app-secret", "--epay-key"];

/// The command line as the report records it, keys hidden.
fn recorded_command(args: impl Iterator<Item = String>) -> String {
    let mut hide_next = false;
    let recorded: Vec<String> = args
        .map(|arg| {
            let hidden = std::mem::replace(&mut hide_next, SECRET_FLAGS.contains(&arg.as_str()));
            match arg.split_once('=') {
                _ if hidden => "<hidden>".to_string(),
                Some((flag, _)) if SECRET_FLAGS.contains(&flag) => format!("{flag}=<hidden>"),
                _ => arg,
            }
        })
        .collect();
    recorded.join(" ")
}

/// The machine, and the PostgreSQL and settings of the services the bench started (none with
/// `--base-url`: that server's are not known here).
async fn machine_info(args: &Args, load_average_at_start: String) -> MachineInfo {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if args.base_url.is_some() {
        return MachineInfo {
            cores,
            load_average_at_start,
            postgres: None,
            autovacuum: None,
            maintenance: "none: the server measured is not the bench's own",
            service_settings: BTreeMap::new(),
        };
    }
    let server = format!("{}/postgres", args.database_server.trim_end_matches('/'));
    let (mut postgres, mut autovacuum) = (None, None);
    if let Ok((db, connection)) = tokio_postgres::connect(&server, NoTls).await {
        tokio::spawn(connection);
        for (setting, value) in [
            ("server_version", &mut postgres),
            ("autovacuum", &mut autovacuum),
        ] {
            if let Ok(row) = db.query_one(&format!("SHOW {setting}"), &[]).await {
                *value = Some(row.get(0));
            }
        }
    }
    MachineInfo {
        cores,
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
    }
}

/// The native API: create-order, notify, webhook and long-poll latency, memory.
async fn native_phase(args: &Args, service: &Service) -> Result<NativeReport> {
    let api = Api::new(service)?;
    let (db, connection) = tokio_postgres::connect(&service.database_url, NoTls).await?;
    tokio::spawn(connection);
    let db = Arc::new(db);

    let shops = set_up_shops(&api).await?;
    let after_setup = service.memory();

    let mut create_order = Vec::new();
    for &concurrency in &args.concurrency {
        println!("create-order, one payee, same amount, c={concurrency} ...");
        let devices = online_payees(&api, &shops.listeners, 1, "one payee", "alipay").await?;
        let plan = OrderRunPlan {
            case: ONE_PAYEE,
            channel: "alipay",
            tag: format!("one-c{concurrency}"),
            requests: args.one_payee_orders,
            concurrency,
        };
        let run = measured_order_run(&api, service, &db, &shops, &devices, plan, |_| {
            "10.00".to_string()
        });
        create_order.push(run.await?);

        println!(
            "create-order, {} payees, many amounts, c={concurrency} ...",
            args.payees
        );
        let devices =
            online_payees(&api, &shops.listeners, args.payees, "spread", "wechat").await?;
        let plan = OrderRunPlan {
            case: SPREAD,
            channel: "wechat",
            tag: format!("spread-c{concurrency}"),
            requests: args.spread_orders,
            concurrency,
        };
        let run = measured_order_run(&api, service, &db, &shops, &devices, plan, |_| {
            random_price()
        });
        create_order.push(run.await?);
    }

    // Payees for everything that follows: notify, webhooks, long-polls.
    let devices = online_payees(&api, &shops.listeners, args.payees, "listener", "wechat").await?;
    let (notify, paced, devices) =
        notify_and_latencies(args, &api, &db, service, &shops, devices).await?;

    println!("memory with {} open long-polls ...", args.long_polls);
    let memory =
        memory_with_long_polls(args, &api, &shops.shop, &db, &devices, service, after_setup)
            .await?;

    shops.heartbeats.abort();
    let pgbench = pgbench_figures(args, &create_order);
    let targets = targets(
        &create_order,
        &notify,
        &paced,
        &memory,
        pgbench.as_ref(),
        args.notify_concurrency,
    );
    Ok(NativeReport {
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

#[cfg(test)]
mod tests {
    use super::recorded_command;

    #[test]
    fn keys_given_on_the_command_line_are_hidden_in_the_report() {
        let args = [
            "solopay-bench",
            "--base-url",
            "http://shop:8080",
            "--vmq-key",
            "k1",
            "--vmq-app-secret=s1",
            "--epay-pid",
            "1001",
            "--epay-key",
            "k2",
        ];
        assert_eq!(
            recorded_command(args.into_iter().map(String::from)),
            "solopay-bench --base-url http://shop:8080 --vmq-key <hidden> \
             --vmq-app-secret=<hidden> --epay-pid 1001 --epay-key <hidden>"
        );
    }
}
