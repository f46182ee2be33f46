//! The background sweep: expires overdue pending orders whether or not anyone asks, finishes
//! notifications whose request died between being stored and being matched, and forgets
//! forwarder signatures too old to be presented again.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::error::RuleError;
use crate::core::notifications::finish_stranded;
use crate::core::orders::{OrderRules, expire_overdue_batch};
use crate::db::{Db, forwarder_signatures};

const EXPIRY_BATCH: i64 = 500;
/// A live request finishes its own notification well within this time.
const STRANDED_AFTER: Duration = Duration::from_secs(30);
/// Longer than the largest forwarder window (`SOLOPAY_FORWARDER_WINDOW_SECS` is at most 3600).
const FORGET_SIGNATURES_AFTER: Duration = Duration::from_secs(2 * 3600);

pub fn spawn(
    db: Db,
    rules: OrderRules,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => break,
            }
            let rules = rules.clone();
            let outcome = db
                .run(move |conn| -> Result<_, RuleError> {
                    // Stored payments first: one that arrived before its order's expiry pays it
                    // on time, before this pass would expire the order.
                    let finished = finish_stranded(conn, &rules, STRANDED_AFTER, 100)?;
                    let mut expired = 0;
                    loop {
                        let n = expire_overdue_batch(conn, EXPIRY_BATCH)?;
                        expired += n;
                        if i64::try_from(n).unwrap_or(i64::MAX) < EXPIRY_BATCH {
                            break;
                        }
                    }
                    // Signatures older than any window can never be presented again.
                    forwarder_signatures::delete_older_than(conn, FORGET_SIGNATURES_AFTER)?;
                    Ok((expired, finished))
                })
                .await;
            match outcome {
                Ok((0, 0)) => {}
                Ok((expired, finished)) => {
                    tracing::info!(expired, finished_notifications = finished, "sweep");
                }
                Err(error) => tracing::warn!(%error, "sweep failed; retrying at the next tick"),
            }
        }
    })
}
