//! The connection pool: r2d2 with diesel's connection manager, session settings on every
//! connection, and a liveness check at check-out that a connection which just worked skips.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, Pool};

use super::StorageError;
use super::startup::StartupError;

pub type PgPool = Pool<Manager>;

/// Session settings every pooled connection gets: UTC, and bounded statement and lock waits so
/// that no request hangs on the database.
#[derive(Debug)]
struct SessionSettings {
    statement_timeout: Duration,
}

impl CustomizeConnection<Pooled, diesel::r2d2::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut Pooled) -> Result<(), diesel::r2d2::Error> {
        // Deadlocks and timeouts are recognised by their (English) messages, as diesel does not
        // expose SQLSTATE codes. Only roles allowed to set it can; see `messages_are_english`.
        let _ = conn.batch_execute("SET lc_messages TO 'C'");
        let ms = self.statement_timeout.as_millis();
        conn.batch_execute(&format!(
            "SET TIME ZONE 'UTC'; SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
             SET idle_in_transaction_session_timeout = {}",
            ms * 3
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

pub fn build_pool(
    url: &str,
    max_size: u32,
    connection_timeout: Duration,
    statement_timeout: Duration,
) -> Result<PgPool, StartupError> {
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(max_size.min(2)))
        .connection_timeout(connection_timeout)
        // A connection that died with the server (restart, failover, outage) is found and
        // replaced at check-out instead of failing requests until the pool recycles it (see
        // `Manager` for the one-second window in which a connection is trusted untested).
        .test_on_check_out(true)
        .connection_customizer(Box::new(SessionSettings { statement_timeout }))
        .build(Manager {
            inner: ConnectionManager::new(url),
            generation: Arc::new(AtomicU64::new(0)),
        })
        .map_err(StartupError::Pool)
}

/// How long after a connection came back to the pool in working order it is handed out again
/// without the round trip of a liveness check: the window HikariCP uses
/// (`aliveBypassWindowMs`, 500 ms) doubled. Under load this saves a `SELECT 1` per request.
const ALIVE_BYPASS: Duration = Duration::from_secs(1);

/// A pooled connection, and until when it is handed out without a liveness check.
pub struct Pooled {
    conn: PgConnection,
    trusted_until: Option<Instant>,
    /// The pool's generation when it was trusted: once any connection of the pool met a server
    /// that went away, every connection trusted before is tested at its next check-out.
    trusted_generation: u64,
    generation: Arc<AtomicU64>,
    /// Set when the last work on it failed in the database: it is tested at its next check-out.
    failed: bool,
    /// Set when work on it failed as if the server had gone away: it is dropped on return.
    suspect: bool,
}

impl Pooled {
    /// Work on this connection failed in the database: it is tested at its next check-out; when
    /// the server went away under it, it is dropped when it comes back, and the pool's other
    /// connections, ended with it most likely, are tested before their next use.
    pub(super) fn record_failure(&mut self, error: &StorageError) {
        self.failed = true;
        if error.lost_the_server() {
            self.suspect = true;
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl std::ops::Deref for Pooled {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// diesel's connection manager, except that the liveness check at check-out is skipped for a
/// connection that came back less than [`ALIVE_BYPASS`] ago from work that succeeded. One that
/// meets a server that went away in that window fails its request with 503 and is replaced
/// (`suspect`), never handed out again, and every other connection is tested at its next
/// check-out (a new generation), so that a server restart costs one failed request, not one per
/// pooled connection; any other database error has it tested at its next check-out.
pub struct Manager {
    inner: ConnectionManager<PgConnection>,
    generation: Arc<AtomicU64>,
}

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Pooled, Self::Error> {
        super::startup::keep_tls_until_exit();
        let generation = self.generation.load(Ordering::SeqCst);
        Ok(Pooled {
            conn: self.inner.connect()?,
            trusted_until: Some(Instant::now() + ALIVE_BYPASS),
            trusted_generation: generation,
            generation: self.generation.clone(),
            failed: false,
            suspect: false,
        })
    }

    fn is_valid(&self, conn: &mut Pooled) -> Result<(), Self::Error> {
        let current = self.generation.load(Ordering::SeqCst);
        if conn.trusted_generation == current
            && conn
                .trusted_until
                .is_some_and(|until| Instant::now() < until)
        {
            return Ok(());
        }
        self.inner.is_valid(&mut conn.conn)?;
        conn.trusted_generation = current;
        Ok(())
    }

    /// Called by r2d2 when a connection comes back to the pool.
    fn has_broken(&self, conn: &mut Pooled) -> bool {
        if conn.suspect || self.inner.has_broken(&mut conn.conn) {
            return true;
        }
        // Whatever went wrong, a connection whose work failed is tested before its next use.
        conn.trusted_until = (!conn.failed).then(|| Instant::now() + ALIVE_BYPASS);
        conn.failed = false;
        false
    }
}
