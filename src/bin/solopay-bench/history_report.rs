//! What the history phase measured on each database, and the growth table: each figure on the
//! empty database and on each history (whole, then cut by retention), with the ratio of the
//! largest whole history to the empty one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::thousands;
use crate::measure::Latency;
use crate::report::{CreateOrderRun, NotifyRun};
use crate::statements::{self, StatementCost};

#[derive(Debug, Serialize)]
pub struct HistoryReport {
    /// The private cluster's settings that shape the figures.
    pub server_settings: Vec<(String, String)>,
    /// The empty database first, then each history size.
    pub runs: Vec<HistoryRun>,
}

#[derive(Debug, Serialize)]
pub struct HistoryRun {
    /// Historic orders filled in before measuring (0: the empty database).
    pub orders: u64,
    /// How long the fill took, ANALYZE included.
    pub fill_seconds: Option<f64>,
    /// Measured after retention cut this history (the run before it measured it whole).
    pub retention: Option<RetentionFigures>,
    /// Rows by table (orders by status, payments by result) before the measured runs.
    pub census: Vec<(String, i64)>,
    pub create_one: CreateOrderRun,
    pub create_spread: CreateOrderRun,
    /// PostgreSQL's costliest statements during the create-order run on many payees.
    pub create_spread_statements: Vec<StatementCost>,
    pub notify: Vec<NotifyRun>,
    /// PostgreSQL's costliest statements during the notify runs (as fast as it goes, then
    /// paced with their webhooks and long-polls).
    pub notify_statements: Vec<StatementCost>,
    pub long_poll_wake_up: Latency,
    pub payment_to_webhook: Latency,
    pub paced_failures: BTreeMap<String, usize>,
    pub sweep: SweepFigures,
    pub admin_first_page: Latency,
    pub admin_hundredth_page: Latency,
    /// Pages walked to reach the hundredth (fewer when the list is shorter).
    pub admin_pages_walked: usize,
    /// The month's summary asked for the first time: it keeps the month's days for the next.
    pub summary_month_first_ms: f64,
    /// Asked again (the days kept).
    pub summary_month: Latency,
    pub size: DatabaseSize,
}

/// What cutting a history to `days` took and removed.
#[derive(Debug, Serialize)]
pub struct RetentionFigures {
    pub days: u32,
    /// Retention passes until none left a backlog.
    pub passes: usize,
    pub seconds: f64,
    /// Rows deleted or compacted, by kind.
    pub rows: Vec<(String, usize)>,
    /// VACUUM FULL of the tables retention works on, afterwards.
    pub vacuum_full_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct SweepFigures {
    /// The service's sweep pass when nothing is overdue (it runs every second).
    pub pass_with_nothing_to_expire: Latency,
    pub overdue: usize,
    pub expired_in_one_pass: usize,
    pub pass_expiring_ms: f64,
    /// The sweep's look at the devices (offline, or listeners gone silent while orders expired
    /// on their payees; every few seconds), after that pass and before it commits: each call
    /// rolled back, so that each one does the whole check.
    pub devices_pass: Latency,
    /// The alerts each of those calls raised (the round's devices told silent).
    pub alerts_per_device_pass: usize,
}

#[derive(Debug, Serialize)]
pub struct DatabaseSize {
    pub database_bytes: i64,
    /// `pg_total_relation_size` (indexes and TOAST included) of the big tables.
    pub tables: Vec<(String, i64)>,
}

/// One line of the growth table: a figure on each database.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    pub unit: &'static str,
    pub values: Vec<Option<f64>>,
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn row(
    label: impl Into<String>,
    unit: &'static str,
    runs: &[HistoryRun],
    f: impl Fn(&HistoryRun) -> Option<f64>,
) -> Row {
    Row {
        label: label.into(),
        unit,
        values: runs.iter().map(f).collect(),
    }
}

/// The rows of the growth table, from the runs.
pub fn rows(runs: &[HistoryRun]) -> Vec<Row> {
    let notify = |r: &HistoryRun, i: usize| {
        r.notify
            .get(i)
            .map(|n| (n.notifications_per_second, n.latency))
    };
    let mut rows = vec![
        row("create-order, one payee, c=32", "orders/s", runs, |r| {
            Some(r.create_one.orders_per_second)
        }),
        row("  p99", "ms", runs, |r| Some(r.create_one.latency.p99_ms)),
        row("create-order, 16 payees, c=32", "orders/s", runs, |r| {
            Some(r.create_spread.orders_per_second)
        }),
        row("  p99", "ms", runs, |r| {
            Some(r.create_spread.latency.p99_ms)
        }),
        row("notify at a fixed rate, p50", "ms", runs, |r| {
            notify(r, 0).map(|(_, l)| l.p50_ms)
        }),
        row("  p99", "ms", runs, |r| notify(r, 0).map(|(_, l)| l.p99_ms)),
        row("notify as fast as it goes, c=32", "/s", runs, |r| {
            notify(r, 1).map(|(n, _)| n)
        }),
        row("long-poll wake-up, p50", "ms", runs, |r| {
            Some(r.long_poll_wake_up.p50_ms)
        }),
        row("payment → webhook, p50", "ms", runs, |r| {
            Some(r.payment_to_webhook.p50_ms)
        }),
        row("sweep pass, nothing to expire, p50", "ms", runs, |r| {
            Some(r.sweep.pass_with_nothing_to_expire.p50_ms)
        }),
        row("sweep pass expiring 1,000 orders", "ms", runs, |r| {
            Some(r.sweep.pass_expiring_ms)
        }),
        row("sweep's device check, p50", "ms", runs, |r| {
            Some(r.sweep.devices_pass.p50_ms)
        }),
        row("GET /admin/orders, first page, p50", "ms", runs, |r| {
            Some(r.admin_first_page.p50_ms)
        }),
        row("GET /admin/orders, 100th page, p50", "ms", runs, |r| {
            Some(r.admin_hundredth_page.p50_ms)
        }),
        row("GET /admin/summary, a month, first", "ms", runs, |r| {
            Some(r.summary_month_first_ms)
        }),
        row("GET /admin/summary, a month, p50", "ms", runs, |r| {
            Some(r.summary_month.p50_ms)
        }),
        row("database size", "MB", runs, |r| {
            Some(mb(r.size.database_bytes))
        }),
    ];
    let tables: Vec<String> = runs
        .first()
        .map(|r| r.size.tables.iter().map(|(t, _)| t.clone()).collect())
        .unwrap_or_default();
    for table in tables {
        rows.push(row(format!("  {table}"), "MB", runs, |r| {
            r.size
                .tables
                .iter()
                .find(|(t, _)| *t == table)
                .map(|(_, b)| mb(*b))
        }));
    }
    rows.push(row("database size per million orders", "MB", runs, |r| {
        let empty = runs.first()?.size.database_bytes;
        (r.orders > 0).then(|| mb(r.size.database_bytes - empty) / (r.orders as f64 / 1e6))
    }));
    rows
}

/// A figure as the table prints it: three significant digits at most, thousands separated.
fn figure(value: Option<f64>) -> String {
    match value {
        None => "–".to_string(),
        Some(v) if v.abs() >= 100.0 => thousands(v.round() as u64),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The table: one column per database, and the one at `compare` as a percentage of the first
/// (the empty one).
pub fn format_table(headers: &[String], rows: &[Row], compare: usize) -> String {
    let ratio_header = match (headers.first(), headers.get(compare)) {
        (Some(first), Some(compared)) if compare > 0 => format!("{compared} / {first}"),
        _ => String::new(),
    };
    let mut lines: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    let mut head = vec!["figure".to_string(), "unit".to_string()];
    head.extend(headers.iter().cloned());
    head.push(ratio_header);
    lines.push(head);
    for row in rows {
        let mut line = vec![row.label.clone(), row.unit.to_string()];
        line.extend(row.values.iter().map(|v| figure(*v)));
        let ratio = match (
            row.values.first().copied().flatten(),
            row.values.get(compare).copied().flatten(),
        ) {
            (Some(first), Some(compared)) if compare > 0 && first > 0.0 => {
                format!("{:.0} %", compared / first * 100.0)
            }
            _ => String::new(),
        };
        line.push(ratio);
        lines.push(line);
    }
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = " ".repeat(widths[c] - cell.chars().count());
                // The label left-aligned, the figures right-aligned.
                if c == 0 {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if n == 0 {
            // Markdown's alignment row: the figures' columns end in ':' (right-aligned).
            let rule: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(c, w)| {
                    if c == 0 {
                        "-".repeat(w + 2)
                    } else {
                        format!("{}:", "-".repeat(w + 1))
                    }
                })
                .collect();
            out.push_str(&format!("|{}|\n", rule.join("|")));
        }
    }
    out
}

/// The column of the largest history measured whole (not cut by retention).
pub fn largest_whole_history(runs: &[HistoryRun]) -> usize {
    runs.iter()
        .enumerate()
        .filter(|(_, r)| r.retention.is_none())
        .max_by_key(|(_, r)| r.orders)
        .map_or(0, |(n, _)| n)
}

/// "empty", "1,000,000 orders", ….
pub fn headers(runs: &[HistoryRun]) -> Vec<String> {
    runs.iter()
        .map(|r| match (r.orders, &r.retention) {
            (0, _) => "empty".to_string(),
            (n, None) => format!("{} orders", thousands(n)),
            (n, Some(retention)) => {
                format!("{} orders, {} days kept", thousands(n), retention.days)
            }
        })
        .collect()
}

pub fn print_history(report: &HistoryReport) {
    println!("\n== history at scale (a cluster of the bench's own)");
    let settings: Vec<String> = report
        .server_settings
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("PostgreSQL: {}", settings.join(", "));
    for run in &report.runs {
        if let Some(seconds) = run.fill_seconds {
            println!("fill of {} orders: {seconds:.0} s", thousands(run.orders));
        }
        if let Some(retention) = &run.retention {
            let rows: Vec<String> = retention
                .rows
                .iter()
                .map(|(what, n)| format!("{} {what}", thousands(*n as u64)))
                .collect();
            println!(
                "retention of {} orders to {} days: {} passes, {:.0} s ({}); VACUUM FULL {:.0} s",
                thousands(run.orders),
                retention.days,
                retention.passes,
                retention.seconds,
                rows.join(", "),
                retention.vacuum_full_seconds
            );
        }
        let failures: usize = run
            .create_one
            .errors
            .values()
            .chain(run.create_spread.errors.values())
            .sum();
        let violations =
            run.create_one.invariant_violations + run.create_spread.invariant_violations;
        let not_matched: usize = run
            .notify
            .iter()
            .map(|n| n.notifications - n.matched_as_expected)
            .sum();
        println!(
            "{}: {failures} create-order errors, {violations} invariant violations, {not_matched} \
             notifications not matched as expected, paced failures {:?}, sweep expired {}/{}, \
             device check raised {} alerts, {} pages walked",
            headers(std::slice::from_ref(run)).join(""),
            run.paced_failures,
            run.sweep.expired_in_one_pass,
            run.sweep.overdue,
            run.sweep.alerts_per_device_pass,
            run.admin_pages_walked
        );
        println!("  statements during create-order on many payees:");
        print!("{}", statements::format(&run.create_spread_statements));
        println!("  statements during the notify runs (and the orders they pay, created first):");
        print!("{}", statements::format(&run.notify_statements));
    }
    print!(
        "{}",
        format_table(
            &headers(&report.runs),
            &rows(&report.runs),
            largest_whole_history(&report.runs)
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_each_database_a_column_and_the_last_as_a_share_of_the_first() {
        let rows = vec![
            Row {
                label: "create-order".into(),
                unit: "orders/s",
                values: vec![Some(2000.0), Some(1900.4)],
            },
            Row {
                label: "  p99".into(),
                unit: "ms",
                values: vec![Some(12.345), None],
            },
        ];
        let table = format_table(&["empty".into(), "1,000,000 orders".into()], &rows, 1);
        assert_eq!(
            table,
            "| figure       |     unit | empty | 1,000,000 orders | 1,000,000 orders / empty |\n\
             |--------------|---------:|------:|-----------------:|-------------------------:|\n\
             | create-order | orders/s | 2,000 |            1,900 |                     95 % |\n\
             |   p99        |       ms |  12.3 |                – |                          |\n"
        );
    }

    #[test]
    fn figures_keep_about_three_significant_digits() {
        assert_eq!(figure(Some(1234.6)), "1,235");
        assert_eq!(figure(Some(45.67)), "45.7");
        assert_eq!(figure(Some(0.456)), "0.46");
        assert_eq!(figure(None), "–");
    }
}
