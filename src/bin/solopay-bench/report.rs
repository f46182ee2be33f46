//! The report: what each run measured, the pgbench comparison, the targets of issues 7 and 19, and the
//! printed table.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::measure::{Latency, ResourceUse};
use crate::orders::{ONE_PAYEE, SPREAD};
use crate::payments::PacedLatencies;
use crate::service::Memory;
use crate::{Args, MAX_OFFSET_STEPS};

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    /// The commit measured (`--source`), when bench/run.sh passed it.
    pub source: Option<String>,
    pub started_at: String,
    pub machine: MachineInfo,
    /// The native API (absent when it was not measured: `--base-url`, `--phases protocols`).
    #[serde(flatten)]
    pub native: Option<NativeReport>,
    /// The older protocols (absent with `--phases native`).
    pub protocols: Option<ProtocolReport>,
    /// History at scale (with `--phases history`).
    pub history: Option<crate::history_report::HistoryReport>,
}

#[derive(Debug, Serialize)]
pub struct NativeReport {
    pub create_order: Vec<CreateOrderRun>,
    pub notify: Vec<NotifyRun>,
    pub payment_to_webhook: Latency,
    pub long_poll_wake_up: Latency,
    /// The notify request's own latency in the paced webhook/long-poll run.
    pub paced_notify: Latency,
    pub paced_failures: BTreeMap<String, usize>,
    pub memory: MemoryReport,
    pub pgbench: Option<PgbenchFigures>,
    pub targets: Vec<Target>,
}

/// The older protocols' runs, against one server.
#[derive(Debug, Serialize)]
pub struct ProtocolReport {
    /// The base URL measured (or the bench's own service).
    pub server: String,
    /// Clients of each closed-loop run.
    pub concurrency: usize,
    pub seconds_per_run: u64,
    pub runs: Vec<ProtocolRun>,
}

#[derive(Debug, Serialize)]
pub struct ProtocolRun {
    pub protocol: &'static str,
    pub workload: String,
    pub connection: &'static str,
    pub requests: usize,
    /// Answered `code: 1`.
    pub succeeded: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub succeeded_per_second: f64,
    pub latency: Latency,
    /// Every other answer, by the server's message (`msg`), or `HTTP <status>`, or
    /// `transport: …`.
    pub refusals: BTreeMap<String, usize>,
    /// `appPush` on a service of the bench's own: the pushed orders found paid in SQL.
    pub orders_paid: Option<i64>,
    /// On a service of the bench's own.
    pub resources: Option<ResourceUse>,
}

#[derive(Debug, Serialize)]
pub struct MachineInfo {
    pub cores: usize,
    /// `/proc/loadavg` when the run started: anything well above 0 means another load shared
    /// the machine (see `other_cpu_cores` of each run).
    pub load_average_at_start: String,
    /// The server's version and `autovacuum` setting (unknown for a server the bench did not
    /// start).
    pub postgres: Option<String>,
    pub autovacuum: Option<String>,
    /// What the harness does in its place (and so that every run starts alike).
    pub maintenance: &'static str,
    pub service_settings: BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
pub struct CreateOrderRun {
    pub case: &'static str,
    pub concurrency: usize,
    pub requests: usize,
    pub created: usize,
    pub errors: BTreeMap<String, usize>,
    pub seconds: f64,
    pub orders_per_second: f64,
    pub latency: Latency,
    /// Pairs of orders of one payee with overlapping reservations and the same payable amount,
    /// over the whole orders table after the run; must be 0.
    pub invariant_violations: i64,
    pub resources: ResourceUse,
}

#[derive(Debug, Serialize)]
pub struct NotifyRun {
    pub case: String,
    pub notifications: usize,
    pub seconds: f64,
    pub notifications_per_second: f64,
    /// From the moment each notification was due (fixed rate) or sent (flat out) to its answer.
    pub latency: Latency,
    /// At the fixed rate only: a one-row insert committed on its own at the same rate, from one
    /// connection with nothing else running, just before: the disk's floor under this p99.
    pub commit_alone: Option<Latency>,
    /// Answered `matched` with the order it was sent for (after retries of refusals).
    pub matched_as_expected: usize,
    /// Final answers other than that.
    pub errors: BTreeMap<String, usize>,
    /// First answers that refused the notification (503: overloaded), each then sent again
    /// with the same notification id, as a listener app does.
    pub refused_first: BTreeMap<String, usize>,
    /// Checked in SQL: the orders paid, and the matched payments naming them (one each).
    pub orders_paid: i64,
    pub matched_payments: i64,
    pub distinct_orders_matched: i64,
    pub resources: ResourceUse,
}

#[derive(Debug, Serialize)]
pub struct MemoryReport {
    /// Right after start-up and set-up.
    pub after_setup: Memory,
    /// Highest RSS sampled while `long_polls` long-polls were open.
    pub with_long_polls: Memory,
    /// The service's threads by name at that moment.
    pub threads_by_name: BTreeMap<String, u32>,
    pub long_polls: usize,
    /// Long-polls that had answered before the payments (should be 0).
    pub long_polls_answered_early: usize,
    /// Wake-up of all of them when their orders were paid at once.
    pub burst_wake_up: Latency,
    pub long_polls_answered_paid: usize,
    /// At the end of the run (peak_rss_mb is the peak of the whole run).
    pub at_end: Memory,
}

#[derive(Debug, Serialize)]
pub struct PgbenchFigures {
    pub clients: Option<usize>,
    pub tpcb_tps: Option<f64>,
    pub allocation_one_payee_tps: Option<f64>,
    pub allocation_16_payees_tps: Option<f64>,
    /// Service one-payee create-order at the pgbench client count / its own SQL in pgbench.
    pub one_payee_ratio: Option<f64>,
    /// Service 16-payee create-order at the pgbench client count / TPC-B.
    pub spread_vs_tpcb_ratio: Option<f64>,
    /// Service 16-payee create-order / its own SQL over 16 payees in pgbench.
    pub spread_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub what: &'static str,
    pub target: &'static str,
    pub measured: String,
    pub met: Option<bool>,
}

pub fn pgbench_figures(args: &Args, runs: &[CreateOrderRun]) -> Option<PgbenchFigures> {
    if args.pgbench_tpcb_tps.is_none()
        && args.pgbench_allocation_tps.is_none()
        && args.pgbench_allocation_spread_tps.is_none()
    {
        return None;
    }
    let clients = args.pgbench_clients.unwrap_or(32);
    let service_tps = |case: &str| {
        runs.iter()
            .find(|r| r.case == case && r.concurrency == clients)
            .map(|r| r.orders_per_second)
    };
    let ratio = |service: Option<f64>, pgbench: Option<f64>| match (service, pgbench) {
        (Some(s), Some(p)) if p > 0.0 => Some(s / p),
        _ => None,
    };
    Some(PgbenchFigures {
        clients: Some(clients),
        tpcb_tps: args.pgbench_tpcb_tps,
        allocation_one_payee_tps: args.pgbench_allocation_tps,
        allocation_16_payees_tps: args.pgbench_allocation_spread_tps,
        one_payee_ratio: ratio(service_tps(ONE_PAYEE), args.pgbench_allocation_tps),
        spread_vs_tpcb_ratio: ratio(service_tps(SPREAD), args.pgbench_tpcb_tps),
        spread_ratio: ratio(service_tps(SPREAD), args.pgbench_allocation_spread_tps),
    })
}

pub fn targets(
    create_order: &[CreateOrderRun],
    notify: &[NotifyRun],
    paced: &PacedLatencies,
    memory: &MemoryReport,
    pgbench: Option<&PgbenchFigures>,
    notify_concurrency: usize,
) -> Vec<Target> {
    let ratio_target = |what, target, ratio: Option<f64>, floor: f64| Target {
        what,
        target,
        measured: ratio.map_or("not measured (run bench/run.sh)".into(), |r| {
            format!("{:.0} %", r * 100.0)
        }),
        met: ratio.map(|r| r >= floor),
    };
    let violations: i64 = create_order.iter().map(|r| r.invariant_violations).sum();
    let fixed_rate = notify.first();
    let flat_out = notify.get(1).map(|n| n.notifications_per_second);
    let create_spread = create_order
        .iter()
        .find(|r| r.case == SPREAD && r.concurrency == notify_concurrency)
        .map(|r| r.orders_per_second);
    let every_payment_once = notify.iter().all(|n| {
        n.matched_as_expected == n.notifications
            && n.orders_paid as usize == n.notifications
            && n.matched_payments == n.distinct_orders_matched
            && n.matched_payments as usize == n.notifications
    });
    vec![
        ratio_target(
            "create-order, one payee, c=32 / its own SQL in pgbench",
            ">= 75 %",
            pgbench.and_then(|p| p.one_payee_ratio),
            0.75,
        ),
        Target {
            what: "invariant violations, all create-order runs",
            target: "0",
            measured: violations.to_string(),
            met: Some(violations == 0),
        },
        ratio_target(
            "create-order, 16 payees, c=32 / pgbench TPC-B",
            ">= 50 %",
            pgbench.and_then(|p| p.spread_vs_tpcb_ratio),
            0.50,
        ),
        Target {
            what: "notify p99 at the fixed rate",
            target: "< 20 ms",
            measured: fixed_rate.map_or("-".into(), |n| match &n.commit_alone {
                Some(alone) => format!(
                    "{:.1} ms ({}; a one-row commit alone: {:.1} ms)",
                    n.latency.p99_ms, n.case, alone.p99_ms
                ),
                None => format!("{:.1} ms ({})", n.latency.p99_ms, n.case),
            }),
            met: fixed_rate.map(|n| n.latency.p99_ms < 20.0),
        },
        Target {
            what: "notify flat out / create-order, 16 payees, same c",
            target: ">= 100 %",
            measured: match (flat_out, create_spread) {
                (Some(notify), Some(create)) if create > 0.0 => {
                    format!(
                        "{:.0} % ({notify:.0} / {create:.0} per s)",
                        notify / create * 100.0
                    )
                }
                _ => "not measured".into(),
            },
            met: match (flat_out, create_spread) {
                (Some(notify), Some(create)) if create > 0.0 => Some(notify >= create),
                _ => None,
            },
        },
        Target {
            what: "every payment matched exactly once",
            target: "all",
            measured: notify
                .iter()
                .map(|n| format!("{}/{}", n.matched_as_expected, n.notifications))
                .collect::<Vec<_>>()
                .join(", "),
            met: Some(every_payment_once),
        },
        Target {
            what: "payment-to-webhook median",
            target: "< 100 ms",
            measured: format!("{:.1} ms", paced.webhook.p50_ms),
            met: Some(paced.webhook.samples > 0 && paced.webhook.p50_ms < 100.0),
        },
        Target {
            what: "long-poll wake-up median",
            target: "< 50 ms",
            measured: format!("{:.1} ms", paced.long_poll.p50_ms),
            met: Some(paced.long_poll.samples > 0 && paced.long_poll.p50_ms < 50.0),
        },
        Target {
            what: "service RSS with 1,000 open long-polls",
            target: "< 60 MB",
            measured: format!(
                "{:.1} MB ({} long-polls, {} threads)",
                memory.with_long_polls.rss_mb, memory.long_polls, memory.with_long_polls.threads
            ),
            met: Some(memory.long_polls >= 1000 && memory.with_long_polls.rss_mb < 60.0),
        },
    ]
}

pub fn print_report(report: &Report) {
    let machine = &report.machine;
    let unknown = || "unknown".to_string();
    println!();
    println!("solopay-bench  {}", report.started_at);
    println!(
        "machine: {} cores, load average at start {}; PostgreSQL {}",
        machine.cores,
        machine.load_average_at_start,
        machine.postgres.clone().unwrap_or_else(unknown)
    );
    println!(
        "autovacuum {}; {}",
        machine.autovacuum.clone().unwrap_or_else(unknown),
        machine.maintenance
    );
    if !machine.service_settings.is_empty() {
        println!(
            "service: SOLOPAY_MAX_OFFSET_STEPS={MAX_OFFSET_STEPS}, pool 16 and workers = cores (defaults)"
        );
    }
    println!("command: {}", report.command);
    if let Some(source) = &report.source {
        println!("source: {source}");
    }
    if let Some(native) = &report.native {
        print_native(native);
    }
    if let Some(protocols) = &report.protocols {
        print_protocols(protocols);
    }
    if let Some(history) = &report.history {
        crate::history_report::print_history(history);
    }
}

fn print_protocols(report: &ProtocolReport) {
    println!(
        "\nold protocols against {} (closed loop, c={}, {} s a run)",
        report.server, report.concurrency, report.seconds_per_run
    );
    println!(
        "{:>8} {:>8} {:>9} {:>8} {:>8}  {:<19}  workload",
        "requests", "ok", "ok/s", "p50 ms", "p99 ms", "CPU svc/pg/gen/oth"
    );
    for run in &report.runs {
        println!(
            "{:>8} {:>8} {:>9.1} {:>8.1} {:>8.1}  {:<19}  {} {}, {}",
            run.requests,
            run.succeeded,
            run.succeeded_per_second,
            run.latency.p50_ms,
            run.latency.p99_ms,
            run.resources.as_ref().map_or("-".to_string(), cpu_split),
            run.protocol,
            run.workload,
            run.connection,
        );
        if let Some(paid) = run.orders_paid {
            println!("{:>20} orders found paid in SQL: {paid}", "");
        }
        if !run.refusals.is_empty() {
            println!("{:>20} refused: {}", "", errors_text(&run.refusals));
        }
    }
}

fn print_native(report: &NativeReport) {
    println!("\ncreate-order (closed loop: each client sends its next request when answered)");
    println!(
        "{:<24} {:>4} {:>8} {:>8} {:>9} {:>8} {:>8} {:>5}  {:<19} {:>12}  errors",
        "case",
        "c",
        "requests",
        "created",
        "orders/s",
        "p50 ms",
        "p99 ms",
        "viol",
        "CPU svc/pg/gen/oth",
        "db act/lock"
    );
    for run in &report.create_order {
        println!(
            "{:<24} {:>4} {:>8} {:>8} {:>9.1} {:>8.1} {:>8.1} {:>5}  {:<19} {:>5.1}/{:<6.1}  {}",
            run.case,
            run.concurrency,
            run.requests,
            run.created,
            run.orders_per_second,
            run.latency.p50_ms,
            run.latency.p99_ms,
            run.invariant_violations,
            cpu_split(&run.resources),
            run.resources.db_sessions_active,
            run.resources.db_sessions_waiting_for_lock,
            errors_text(&run.errors),
        );
    }

    println!("\nnotify (each pays a distinct pending order over 16 payees)");
    println!(
        "{:<28} {:>6} {:>9} {:>8} {:>8} {:>20}  {:<19}  refused first (then retried) / errors",
        "case", "sent", "notify/s", "p50 ms", "p99 ms", "matched once", "CPU svc/pg/gen/oth"
    );
    for run in &report.notify {
        let matched = format!(
            "{}/{} (sql {})",
            run.matched_as_expected, run.notifications, run.distinct_orders_matched
        );
        println!(
            "{:<28} {:>6} {:>9.1} {:>8.1} {:>8.1} {:>20}  {:<19}  {} / {}",
            run.case,
            run.notifications,
            run.notifications_per_second,
            run.latency.p50_ms,
            run.latency.p99_ms,
            matched,
            cpu_split(&run.resources),
            errors_text(&run.refused_first),
            errors_text(&run.errors),
        );
        if let Some(alone) = &run.commit_alone {
            println!(
                "{:<28} {:>6} {:>9} {:>8.1} {:>8.1}  (max {:.1} ms; the disk's floor under the p99 above)",
                "  a one-row commit alone",
                alone.samples,
                "",
                alone.p50_ms,
                alone.p99_ms,
                alone.max_ms,
            );
        }
    }

    println!("\nlatency (from sending the payment notification; one payment every 50 ms)");
    println!(
        "{:<28} {:>7} {:>8} {:>8} {:>8}",
        "", "samples", "p50 ms", "p99 ms", "max ms"
    );
    for (name, latency) in [
        ("payment -> webhook", &report.payment_to_webhook),
        ("payment -> long-poll answer", &report.long_poll_wake_up),
        ("notify request itself", &report.paced_notify),
    ] {
        println!(
            "{:<28} {:>7} {:>8.1} {:>8.1} {:>8.1}",
            name, latency.samples, latency.p50_ms, latency.p99_ms, latency.max_ms
        );
    }
    if !report.paced_failures.is_empty() {
        println!("failures: {}", errors_text(&report.paced_failures));
    }

    let m = &report.memory;
    println!("\nservice memory");
    println!(
        "after set-up: RSS {:.1} MB (its own {:.1}, mapped files {:.1}), {} threads",
        m.after_setup.rss_mb, m.after_setup.anon_mb, m.after_setup.file_mb, m.after_setup.threads
    );
    println!(
        "with {} open long-polls: RSS {:.1} MB (its own {:.1}, mapped files {:.1}), {} threads \
         ({} answered early)",
        m.long_polls,
        m.with_long_polls.rss_mb,
        m.with_long_polls.anon_mb,
        m.with_long_polls.file_mb,
        m.with_long_polls.threads,
        m.long_polls_answered_early
    );
    let threads: Vec<String> = m
        .threads_by_name
        .iter()
        .map(|(name, count)| format!("{count} {name}"))
        .collect();
    println!("  threads by name: {}", threads.join(", "));
    println!(
        "all {} paid at once: {} answered paid, wake-up p50 {:.1} ms, p99 {:.1} ms",
        m.long_polls, m.long_polls_answered_paid, m.burst_wake_up.p50_ms, m.burst_wake_up.p99_ms
    );
    println!(
        "at the end: RSS {:.1} MB; peak RSS of the whole run (VmHWM) {:.1} MB",
        m.at_end.rss_mb, m.at_end.peak_rss_mb
    );

    if let Some(p) = &report.pgbench {
        let clients = p.clients.unwrap_or(32);
        let service = |case: &str| {
            report
                .create_order
                .iter()
                .find(|r| r.case == case && r.concurrency == clients)
                .map(|r| r.orders_per_second)
        };
        let tps = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0} %", v * 100.0));
        println!("\nside by side, c={clients}, same machine, same run (tps)");
        println!(
            "{:<34} {:>10} {:>26} {:>10} {:>8}",
            "", "pgbench", "", "service", "ratio"
        );
        println!(
            "{:<34} {:>10} {:>26} {:>10} {:>8}",
            "one payee, same amount",
            tps(p.allocation_one_payee_tps),
            "(its own allocation SQL)",
            tps(service(ONE_PAYEE)),
            pct(p.one_payee_ratio)
        );
        println!(
            "{:<34} {:>10} {:>26} {:>10} {:>8}",
            "16 payees, many amounts vs TPC-B",
            tps(p.tpcb_tps),
            "(TPC-B)",
            tps(service(SPREAD)),
            pct(p.spread_vs_tpcb_ratio)
        );
        println!(
            "{:<34} {:>10} {:>26} {:>10} {:>8}",
            "16 payees, many amounts",
            tps(p.allocation_16_payees_tps),
            "(its own allocation SQL)",
            tps(service(SPREAD)),
            pct(p.spread_ratio)
        );
    }

    println!("\ntargets (issues 7 and 19)");
    for target in &report.targets {
        let verdict = match target.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!(
            "{:<7} {:<55} {:<9} {}",
            verdict, target.what, target.target, target.measured
        );
    }
}

/// "service/postgres/load generator/other" CPU in cores.
fn cpu_split(r: &ResourceUse) -> String {
    format!(
        "{:.2}/{:.2}/{:.2}/{:.2}",
        r.service_cpu_cores, r.postgres_cpu_cores, r.load_generator_cpu_cores, r.other_cpu_cores
    )
}

fn errors_text(errors: &BTreeMap<String, usize>) -> String {
    if errors.is_empty() {
        return "-".into();
    }
    errors
        .iter()
        .map(|(error, count)| format!("{count}x {error}"))
        .collect::<Vec<_>>()
        .join(", ")
}
