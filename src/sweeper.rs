//! The background sweep: expires overdue pending orders whether or not anyone asks, finishes
//! notifications whose request died between being stored and being matched, forgets forwarder
//! signatures too old to be presented again, tells the owner of devices gone offline or
//! silent, and (with `SOLOPAY_RETENTION_DAYS`) deletes history older than the retention.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use diesel::PgConnection;

use crate::core::alerts::sweep_devices;
use crate::core::error::RuleError;
use crate::core::notifications::finish_stranded;
use crate::core::orders::{OrderRules, expire_overdue_batch};
use crate::db::{Db, forwarder_signatures, transaction_with_retry};

const EXPIRY_BATCH: i64 = 500;
/// Orders released per statement: each a short transaction of its own.
const RELEASE_BATCH: i64 = 1000;
const RELEASE_BATCHES_PER_PASS: usize = 10;
/// How often the devices are looked at for alerts.
const DEVICE_SWEEP_EVERY: Duration = Duration::from_secs(2);
/// A live request finishes its own notification well within this time.
const STRANDED_AFTER: Duration = Duration::from_secs(30);
/// Longer than the largest forwarder window (`SOLOPAY_COMPAT_WINDOW_SECS` is at most 3600).
const FORGET_SIGNATURES_AFTER: Duration = Duration::from_secs(2 * 3600);
/// How long retention waits after a pass that found no backlog: history ages by the day.
const RETENTION_IDLE: Duration = Duration::from_secs(60);
/// The most of the summary's history kept in one pass: a day of quarters, so that catching up
/// (after the upgrade that brought it, or a long outage) is many short passes.
const SUMMARY_SPAN: Duration = Duration::from_secs(24 * 3600);
/// How long after a moment its quarter may be kept, at the earliest: far more than it takes a
/// transaction that has just started to show its start in `pg_stat_activity`.
const SUMMARY_MARGIN: Duration = Duration::from_secs(60);

pub fn spawn(
    db: Db,
    rules: OrderRules,
    interval: Duration,
    retention: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut devices_looked_at: Option<std::time::Instant> = None;
        // The first pass comes with the first tick.
        let mut retention_due = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            // The owner hears of devices gone offline or silent (a few seconds apart: the
            // offline window is counted in tens of seconds).
            if devices_looked_at.is_none_or(|at| at.elapsed() >= DEVICE_SWEEP_EVERY) {
                devices_looked_at = Some(std::time::Instant::now());
                let offline_after = rules.device_offline_after;
                let told = db
                    .run(move |conn| -> Result<_, RuleError> {
                        Ok(transaction_with_retry(conn, |conn| {
                            sweep_devices(conn, offline_after)
                        })?)
                    })
                    .await;
                match told {
                    Ok(0) => {}
                    Ok(alerts) => tracing::info!(alerts, "device alerts raised"),
                    Err(error) => tracing::warn!(%error, "cannot look at the devices"),
                }
            }
            let rules = rules.clone();
            let outcome = db.run(move |conn| sweep_pass(conn, &rules)).await;
            match outcome {
                Ok((0, 0)) => {}
                Ok((expired, finished)) => {
                    tracing::info!(expired, finished_notifications = finished, "sweep");
                }
                Err(error) => tracing::warn!(%error, "sweep failed; retrying at the next tick"),
            }
            // After the expiry and the stranded notifications, in batches of its own.
            if let Some(keep) = retention
                && std::time::Instant::now() >= retention_due
            {
                let retired = db
                    .run(move |conn| crate::retention::run_pass(conn, keep))
                    .await;
                let idle = match retired {
                    Ok(retired) => {
                        if retired.rows() > 0 {
                            tracing::info!(
                                notifications_deleted = retired.notifications_deleted,
                                notifications_compacted = retired.notifications_compacted,
                                events_deleted = retired.events,
                                webhook_deliveries_deleted = retired.webhook_deliveries,
                                webhook_attempts_deleted = retired.webhook_attempts,
                                alerts_deleted = retired.alerts,
                                alert_deliveries_deleted = retired.alert_deliveries,
                                "retention"
                            );
                        }
                        !retired.backlog
                    }
                    Err(error) => {
                        tracing::warn!(%error, "retention pass failed; trying again later");
                        true
                    }
                };
                retention_due =
                    std::time::Instant::now() + if idle { RETENTION_IDLE } else { Duration::ZERO };
            }
        }
    })
}

/// How far behind the summary's kept counts may fall before the sweep says why.
const SUMMARY_BEHIND_WARNING: Duration = Duration::from_secs(3600);
/// How often the sweep looks at it.
const SUMMARY_BEHIND_CHECK: Duration = Duration::from_secs(60);

/// What the sweep last saw of how far behind the summary's counts are.
#[derive(Clone, Copy)]
struct SummaryLook {
    at: Instant,
    behind_secs: i64,
}

/// The sweep's last look at the summary's counts, and its last warning about them.
struct SummaryWatch {
    last: Option<SummaryLook>,
    warned: Option<Instant>,
}

/// Per process: one warning an hour whatever the number of sweeps it runs.
static SUMMARY_WATCH: std::sync::Mutex<SummaryWatch> = std::sync::Mutex::new(SummaryWatch {
    last: None,
    warned: None,
});

fn summary_watch() -> std::sync::MutexGuard<'static, SummaryWatch> {
    SUMMARY_WATCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Once a minute: if the summary's kept counts are an hour behind, warns why (once an hour at
/// most; `solopay_summary_kept_behind_seconds` shows it too). Never fails the pass.
fn summary_behind(conn: &mut PgConnection) {
    // Not held while the database is asked.
    let previous = summary_watch().last;
    if previous.is_some_and(|look| look.at.elapsed() < SUMMARY_BEHIND_CHECK) {
        return;
    }
    let (behind, horizon_behind) =
        match crate::db::summary::kept_behind_secs(conn).and_then(|behind| {
            Ok((
                behind,
                crate::db::summary::horizon_behind_secs(conn, SUMMARY_MARGIN)?,
            ))
        }) {
            Ok(figures) => figures,
            Err(error) => {
                tracing::warn!(%error, "cannot tell how far behind the summary's counts are");
                return;
            }
        };
    let warning_secs = i64::try_from(SUMMARY_BEHIND_WARNING.as_secs()).unwrap_or(i64::MAX);
    // Catching up (a day a pass, after an upgrade or an outage) shrinks the lag at every look.
    let not_catching_up = previous.is_some_and(|look| behind >= look.behind_secs);
    let why = match horizon_behind {
        _ if behind < warning_secs => None,
        None => Some(
            "the sweep cannot tell when every transaction on the database started (a session of \
             another role is hidden from this role: GRANT pg_read_all_stats TO it; or a session \
             runs with track_activities off, or a prepared transaction waits)",
        ),
        Some(horizon) if horizon >= warning_secs => Some(
            "a transaction has been open that long on the database (or a pending order should \
             have expired then)",
        ),
        Some(_) if not_catching_up => Some(
            "the sweep's passes keep nothing: another session holds the summary's lock (advisory \
             lock 6, 0) or a pass fails (see the warnings before)",
        ),
        Some(_) => None,
    };
    let mut watch = summary_watch();
    watch.last = Some(SummaryLook {
        at: Instant::now(),
        behind_secs: behind,
    });
    if let Some(why) = why
        && watch
            .warned
            .is_none_or(|at| at.elapsed() >= SUMMARY_BEHIND_WARNING)
    {
        watch.warned = Some(Instant::now());
        tracing::warn!(
            behind_seconds = behind,
            "the summary's counts are not being kept: {why}. Summaries stay right but count \
             more from the tables"
        );
    }
}

/// Runs `batch` (which handles up to `size` rows and says how many it did) until one comes back
/// short, at most `max` times; how many rows they handled in all.
fn in_batches<E>(
    max: usize,
    size: i64,
    mut batch: impl FnMut(i64) -> Result<usize, E>,
) -> Result<usize, RuleError>
where
    RuleError: From<E>,
{
    let mut done = 0;
    for _ in 0..max {
        let n = batch(size)?;
        done += n;
        if i64::try_from(n).unwrap_or(i64::MAX) < size {
            break;
        }
    }
    Ok(done)
}

/// One pass of the sweep: finishes stranded notifications, expires every overdue pending order
/// (in batches), releases orders whose reservation ended long ago, forgets old forwarder
/// signatures and console sessions. Returns how many orders it expired and notifications it
/// finished. Public so that the benchmark times the very pass the service runs.
pub fn sweep_pass(
    conn: &mut PgConnection,
    rules: &OrderRules,
) -> Result<(usize, usize), RuleError> {
    // Stored payments first: one that arrived before its order's expiry pays it on time, before
    // this pass would expire the order.
    let finished = finish_stranded(conn, rules, STRANDED_AFTER, 100)?;
    let expired = in_batches(usize::MAX, EXPIRY_BATCH, |size| {
        expire_overdue_batch(conn, size)
    })?;
    // Orders whose reservation ended long ago leave the indexes allocation and matching read.
    // A few batches a pass: a backlog (the migration's, a long outage's) goes over several
    // passes without holding up the expiry and the stranded notifications of each.
    in_batches(RELEASE_BATCHES_PER_PASS, RELEASE_BATCH, |size| {
        crate::db::orders::release_ended_holds(conn, size)
    })?;
    // Signatures older than any window can never be presented again.
    forwarder_signatures::delete_older_than(conn, FORGET_SIGNATURES_AFTER)?;
    // Console sessions that ended, and old failed sign-ins.
    crate::db::console::forget_old(conn, FORGET_SIGNATURES_AFTER)?;
    // The summary's counts of the quarters of an hour that have ended.
    crate::db::summary::settle(conn, SUMMARY_SPAN, SUMMARY_MARGIN)?;
    summary_behind(conn);
    Ok((expired, finished))
}
