//! Retention (`SOLOPAY_RETENTION_DAYS`): the history the background sweep deletes once it is
//! older than the setting (by the database clock), in batches of at most [`BATCH`] rows, each
//! one statement in a short transaction of its own. Raw notifications no payment references,
//! webhook events whose every delivery succeeded (with those deliveries and their attempts) and
//! alerts sent on every channel are deleted; a payment's own raw notification is compacted
//! (its body, headers and reading cleared) and kept, because the dedupe rules read it. Orders,
//! payments and the audit log are never touched.

use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::core::error::RuleError;
use crate::db::{alerts, notifications, run_retention, webhooks};

/// The most rows one statement deletes or compacts.
pub const BATCH: i64 = 1000;
/// Batches of one kind a pass runs at most, so that a backlog is worked off over several
/// passes and the sweep's other work is never held up for long.
const BATCHES_PER_PASS: usize = 10;
/// The class of the advisory locks that let one instance at a time run a batch of a kind.
const RETENTION_LOCK_CLASS: i32 = 5;

/// The kinds of history, each under an advisory lock of its own: an instance that finds one
/// taken leaves it to the instance working on it, which goes on until it is done.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Notifications,
    Webhooks,
    Alerts,
}

impl Kind {
    /// The key of its lock (in [`RETENTION_LOCK_CLASS`]).
    fn lock_key(self) -> i32 {
        match self {
            Kind::Notifications => 1,
            Kind::Webhooks => 2,
            Kind::Alerts => 3,
        }
    }
}

/// What one pass deleted (or compacted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    pub notifications_deleted: usize,
    pub notifications_compacted: usize,
    pub events: usize,
    pub webhook_deliveries: usize,
    pub webhook_attempts: usize,
    pub alerts: usize,
    pub alert_deliveries: usize,
    /// Some kind had more due than a pass works off: the next pass should come soon.
    pub backlog: bool,
}

impl std::ops::AddAssign for Retired {
    /// Adds another pass's rows; the backlog is the later pass's.
    fn add_assign(&mut self, later: Retired) {
        self.notifications_deleted += later.notifications_deleted;
        self.notifications_compacted += later.notifications_compacted;
        self.events += later.events;
        self.webhook_deliveries += later.webhook_deliveries;
        self.webhook_attempts += later.webhook_attempts;
        self.alerts += later.alerts;
        self.alert_deliveries += later.alert_deliveries;
        self.backlog = later.backlog;
    }
}

impl Retired {
    pub fn rows(&self) -> usize {
        self.notifications_deleted
            + self.notifications_compacted
            + self.events
            + self.webhook_deliveries
            + self.webhook_attempts
            + self.alerts
            + self.alert_deliveries
    }
}

/// One pass: the batches due of each kind, at most [`BATCHES_PER_PASS`] of each.
pub fn run_pass(conn: &mut PgConnection, keep: Duration) -> Result<Retired, RuleError> {
    let mut retired = Retired::default();
    let notifications_behind = batches(conn, Kind::Notifications, |conn| {
        let [deleted, compacted] = run_retention(conn, notifications::RETIRE_BATCH, keep, BATCH)?;
        retired.notifications_deleted += deleted;
        retired.notifications_compacted += compacted;
        Ok(deleted + compacted)
    })?;
    let webhooks_behind = batches(conn, Kind::Webhooks, |conn| {
        let [events, deliveries, attempts] =
            run_retention(conn, webhooks::RETIRE_BATCH, keep, BATCH)?;
        retired.events += events;
        retired.webhook_deliveries += deliveries;
        retired.webhook_attempts += attempts;
        Ok(events)
    })?;
    let alerts_behind = batches(conn, Kind::Alerts, |conn| {
        let [alerts, deliveries] = run_retention(conn, alerts::RETIRE_BATCH, keep, BATCH)?;
        retired.alerts += alerts;
        retired.alert_deliveries += deliveries;
        Ok(alerts)
    })?;
    retired.backlog = notifications_behind || webhooks_behind || alerts_behind;
    Ok(retired)
}

/// Runs `batch` (which returns how many of its kind it took) in transactions of its own while
/// batches come back full, up to [`BATCHES_PER_PASS`]; true when the last one was still full.
/// Another instance running a batch of the kind at the same moment makes this pass leave it
/// alone.
fn batches(
    conn: &mut PgConnection,
    kind: Kind,
    mut batch: impl FnMut(&mut PgConnection) -> Result<usize, RuleError>,
) -> Result<bool, RuleError> {
    let full = usize::try_from(BATCH).unwrap_or(usize::MAX);
    for _ in 0..BATCHES_PER_PASS {
        let taken = conn.transaction(|conn| -> Result<Option<usize>, RuleError> {
            if !try_lock(conn, kind)? {
                return Ok(None);
            }
            batch(conn).map(Some)
        })?;
        match taken {
            Some(taken) if taken >= full => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Takes the retention lock of `kind` until the end of the transaction, unless another
/// instance holds it.
fn try_lock(conn: &mut PgConnection, kind: Kind) -> Result<bool, RuleError> {
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    let locked: Locked = diesel::sql_query(format!(
        "SELECT pg_try_advisory_xact_lock({RETENTION_LOCK_CLASS}, $1) AS locked"
    ))
    .bind::<diesel::sql_types::Int4, _>(kind.lock_key())
    .get_result(conn)?;
    Ok(locked.locked)
}
