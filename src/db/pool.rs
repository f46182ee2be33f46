//! The connection pool: r2d2 with diesel's connection manager, session settings on every
//! connection, and a liveness check at check-out that a connection which just worked skips.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// The pool's connection attempts in progress, and whether new ones may start. r2d2's threads
/// are never joined, so one may still be inside libpq (a TLS handshake, a Kerberos lookup) when
/// the process exits, while the C libraries' clean-up at exit frees what it uses: a SIGSEGV
/// after a graceful stop, seen once in CI (`startup::keep_tls_until_exit` took OpenSSL's
/// clean-up away; the other libraries libpq loads keep theirs). Before the process exits, the
/// pool is closed and its attempts in progress are waited for ([`Connecting::close`]).
#[derive(Clone, Default)]
pub struct Connecting {
    closed: Arc<AtomicBool>,
    in_progress: Arc<AtomicUsize>,
}

/// One connection attempt in progress, counted until it is dropped.
struct Attempt(Arc<AtomicUsize>);

impl Drop for Attempt {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a connection attempt refused by a closed pool fails with.
const STOPPING: &str = "the service is stopping";

/// r2d2's handler of connection errors: logs them as r2d2's own does, except the attempts a
/// closed pool refuses (its threads go on trying to fill it while the service stops).
#[derive(Debug)]
struct LogConnectErrors;

impl diesel::r2d2::HandleError<diesel::r2d2::Error> for LogConnectErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        let refused_when_stopping = matches!(
            &error,
            diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(why))
                if why == STOPPING
        );
        if !refused_when_stopping {
            tracing::error!(target: "r2d2", "{error}");
        }
    }
}

impl Connecting {
    /// Counts an attempt, or refuses it once the pool is closed. Counted before the flag is
    /// read, as [`Connecting::close`] sets the flag before it reads the count: of the two, one
    /// sees the other.
    fn begin(&self) -> Result<Attempt, diesel::r2d2::Error> {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        let attempt = Attempt(self.in_progress.clone());
        if self.closed.load(Ordering::SeqCst) {
            return Err(diesel::r2d2::Error::ConnectionError(
                diesel::ConnectionError::BadConnection(STOPPING.into()),
            ));
        }
        Ok(attempt)
    }

    /// Lets no new connection start, and waits up to `wait` for the attempts in progress to
    /// end. Returns whether none is left.
    pub async fn close(&self, wait: Duration) -> bool {
        self.closed.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + wait;
        while self.in_progress.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

pub fn build_pool(
    url: &str,
    max_size: u32,
    connection_timeout: Duration,
    statement_timeout: Duration,
    connecting: Connecting,
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
        .error_handler(Box::new(LogConnectErrors))
        .build(Manager {
            inner: ConnectionManager::new(url),
            generation: Arc::new(AtomicU64::new(0)),
            connecting,
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
    connecting: Connecting,
}

impl ManageConnection for Manager {
    type Connection = Pooled;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Pooled, Self::Error> {
        let _attempt = self.connecting.begin()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_waits_for_the_attempts_in_progress_and_refuses_new_ones() {
        let connecting = Connecting::default();
        assert!(connecting.begin().is_ok());
        let attempt = connecting.begin().ok();
        let closing = {
            let connecting = connecting.clone();
            tokio::spawn(async move { connecting.close(Duration::from_secs(20)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !closing.is_finished(),
            "close returned with an attempt in progress"
        );
        assert!(connecting.begin().is_err(), "an attempt began after close");
        drop(attempt);
        assert!(closing.await.is_ok_and(|none_left| none_left));
    }

    #[tokio::test]
    async fn closing_gives_up_after_its_wait() {
        let connecting = Connecting::default();
        let _attempt = connecting.begin().ok();
        assert!(!connecting.close(Duration::from_millis(20)).await);
    }
}
