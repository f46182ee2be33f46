//! Storage: the connection pool, database creation and embedded migrations at start, the row
//! types and queries of each table (one file per table), and [`Db::run`], which runs sync diesel
//! code on a blocking thread, never on the async executor.

pub mod audit;
pub mod devices;
pub mod error;
pub mod events;
pub mod forwarder_signatures;
pub mod merchants;
pub mod notifications;
pub mod operator_tokens;
pub mod orders;
pub mod payees;
pub mod payments;
pub mod schema;
pub mod sealed;
pub mod sql_sources;
pub mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::data_types::PgInterval;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, Pool};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tokio::sync::Semaphore;

pub use error::{StorageError, StorageFailure};

pub type PgPool = Pool<Manager>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Serializes concurrent `migrate` runs of several instances starting at once.
const MIGRATION_LOCK_KEY: i64 = 0x5a1a_9a7d_0001;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot connect to the database (DATABASE_URL={url}): {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot create the database of DATABASE_URL: {0}")]
    Create(String),
    #[error("cannot migrate the database: {0}")]
    Migrate(String),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<not a URL>".to_string(),
    }
}

fn connect_error(url: &str, error: impl std::fmt::Display) -> StartupError {
    StartupError::Connect {
        url: redacted(url),
        reason: error.to_string().trim().to_string(),
    }
}

/// Connects to `url`, creating its database first when it does not exist yet.
pub fn connect_creating_database(url: &str) -> Result<PgConnection, StartupError> {
    match PgConnection::establish(url) {
        Ok(conn) => Ok(conn),
        Err(error) if is_missing_database(&error.to_string()) => {
            create_database(url)?;
            PgConnection::establish(url).map_err(|e| connect_error(url, e))
        }
        Err(error) => Err(connect_error(url, error)),
    }
}

/// Like [`connect_creating_database`], trying again every second for up to `wait` while the
/// server cannot be reached or is still starting (each try logged); a refusal that waiting
/// cannot change (a wrong password, an unknown role) fails at once.
pub fn connect_waiting(url: &str, wait: Duration) -> Result<PgConnection, StartupError> {
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        match connect_creating_database(url) {
            Err(StartupError::Connect { url: shown, reason })
                if is_transient(&reason) && started.elapsed() < wait =>
            {
                tracing::warn!(
                    attempt,
                    database = %shown,
                    error = %reason,
                    waited_secs = started.elapsed().as_secs(),
                    wait_secs = wait.as_secs(),
                    "the database does not accept connections yet; retrying in 1 s \
                     (SOLOPAY_DB_WAIT_SECS)"
                );
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            outcome => return outcome,
        }
    }
}

/// Whether a connection error can go away by itself (a server starting, restarting or not yet
/// reachable), as opposed to a refusal (authentication, an unknown role).
fn is_transient(reason: &str) -> bool {
    let refusal = reason.contains("password authentication failed")
        || reason.contains("no pg_hba.conf entry")
        || (reason.contains("role \"") && reason.contains("does not exist"))
        || reason.contains("invalid connection string")
        || reason.contains("invalid URI");
    !refusal
}

/// `FATAL: database "x" does not exist` (not a missing role).
fn is_missing_database(message: &str) -> bool {
    message.contains("database \"") && message.contains("\" does not exist")
}

fn create_database(url: &str) -> Result<(), StartupError> {
    let mut parsed = url::Url::parse(url).map_err(|e| StartupError::Create(e.to_string()))?;
    let name = parsed.path().trim_start_matches('/').to_string();
    if name.is_empty() || name.contains('"') {
        return Err(StartupError::Create(format!(
            "unusable database name {name:?}"
        )));
    }
    parsed.set_path("/postgres");
    let mut admin = PgConnection::establish(parsed.as_str())
        .map_err(|e| StartupError::Create(format!("connecting to the `postgres` database: {e}")))?;
    match diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin) {
        Ok(_) => {
            tracing::info!(database = %name, "created the database");
            Ok(())
        }
        // Another instance created it at the same moment.
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(()),
        Err(DieselError::DatabaseError(_, info)) if info.message().contains("already exists") => {
            Ok(())
        }
        Err(e) => Err(StartupError::Create(e.to_string())),
    }
}

/// Applies the embedded migrations that are not applied yet, then the SQL sources that changed
/// ([`sql_sources`]), one instance at a time. Returns what it applied.
pub fn run_migrations(conn: &mut PgConnection) -> Result<Vec<String>, StartupError> {
    let migrate = |e: &dyn std::fmt::Display| StartupError::Migrate(e.to_string());
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(conn)
        .map_err(|e| migrate(&e))?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(|e| migrate(&e))
        .and_then(|mut applied| {
            for outcome in sql_sources::apply(conn).map_err(|e| migrate(&e))? {
                match outcome {
                    sql_sources::SourceOutcome::Applied { name, revision } => {
                        applied.push(format!("{name} (SQL source, revision {revision})"));
                    }
                    sql_sources::SourceOutcome::Newer { name, applied } => tracing::warn!(
                        source = name,
                        revision = applied,
                        "a newer release applied a later revision of this SQL source; leaving it"
                    ),
                    sql_sources::SourceOutcome::Unchanged => {}
                }
            }
            Ok(applied)
        });
    let unlock = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .execute(conn)
        .map_err(|e| migrate(&e));
    let applied = applied?;
    unlock?;
    Ok(applied)
}

/// Whether every embedded migration and SQL source has been applied (for `/readyz`).
pub fn migrations_applied(conn: &mut PgConnection) -> Result<bool, StorageError> {
    let pending = conn
        .has_pending_migration(MIGRATIONS)
        .map_err(|e| StorageError::Unreachable(format!("cannot read the migration state: {e}")))?;
    Ok(!pending && sql_sources::applied(conn)?)
}

/// Whether the server answers in English on pooled connections (needed to recognise deadlocks
/// and timeouts); returns the setting when it does not.
pub fn messages_are_english(conn: &mut PgConnection) -> QueryResult<Result<(), String>> {
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        lc_messages: String,
    }
    let setting: Setting = diesel::sql_query("SHOW lc_messages").get_result(conn)?;
    let value = setting.lc_messages;
    let english = value.is_empty()
        || value == "C"
        || value == "POSIX"
        || value.starts_with("C.")
        || value.starts_with("en");
    Ok(if english { Ok(()) } else { Err(value) })
}

/// Whether the server runs autovacuum (for a warning at start when it does not).
pub fn autovacuum_is_on(conn: &mut PgConnection) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        on: bool,
    }
    let setting: Setting = diesel::sql_query("SELECT current_setting('autovacuum')::boolean AS on")
        .get_result(conn)?;
    Ok(setting.on)
}

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
        .map_err(|e| StartupError::Pool(e.to_string()))
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
    /// This connection met a server that went away: it is dropped when it comes back, and the
    /// pool's other connections, ended with it most likely, are tested before their next use.
    fn lost_the_server(&mut self) {
        self.suspect = true;
        self.generation.fetch_add(1, Ordering::SeqCst);
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

/// The pool, and the one way handlers and background tasks reach the database.
///
/// Work waits for a free connection on the async side (a semaphore as large as the pool) before
/// it takes a blocking thread, so a burst of requests queues cheaply instead of piling up
/// hundreds of blocked threads; the wait is bounded by the pool's connection timeout.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    slots: Arc<Semaphore>,
}

impl Db {
    pub fn new(pool: PgPool) -> Db {
        let slots = Arc::new(Semaphore::new(pool.max_size() as usize));
        Db { pool, slots }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `work` with a pooled connection on a blocking thread. `work` fails with an error of
    /// its caller's layer, which tells whether the database failed (and how, for the
    /// connection's sake).
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: StorageFailure + Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    {
        let timeout = self.pool.connection_timeout();
        let started = Instant::now();
        let slot = tokio::time::timeout(timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                tracing::warn!("no database connection became free in time");
                E::from(StorageError::PoolExhausted)
            })?
            // The semaphore is never closed while a Db exists.
            .map_err(|_| E::from(StorageError::PoolExhausted))?;
        let pool = self.pool.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let left = timeout.saturating_sub(started.elapsed());
            let mut conn = pool
                .get_timeout(left.max(Duration::from_millis(10)))
                .map_err(|e| E::from(StorageError::from(e)))?;
            let outcome = work(&mut conn);
            // Only what the database answered counts: a refused key or a conflict says nothing
            // about the connection.
            if let Some(error) = outcome.as_ref().err().and_then(E::storage_error) {
                conn.failed = true;
                if error.lost_the_server() {
                    conn.lost_the_server();
                }
            }
            outcome
        })
        .await;
        match outcome {
            Ok(outcome) => outcome,
            // The work panicked: the connection is dropped with its thread; the caller learns
            // as much as a lost server tells.
            Err(join) => Err(E::from(StorageError::Unreachable(format!(
                "the database task failed: {join}"
            )))),
        }
    }
}

/// Runs `work` in a transaction, again when Postgres aborted it as a deadlock victim or a
/// serialization failure (safe to retry: the aborted attempt changed nothing).
pub fn transaction_with_retry<T, E, F>(conn: &mut PgConnection, mut work: F) -> Result<T, E>
where
    E: StorageFailure + From<diesel::result::Error>,
    F: FnMut(&mut PgConnection) -> Result<T, E>,
{
    retry_aborted(|| conn.transaction(&mut work))
}

/// Runs `work` (one statement on its own, or a whole transaction) again when Postgres aborted
/// it as a deadlock victim or a serialization failure, up to three attempts in all.
pub fn retry_aborted<T, E: StorageFailure>(mut work: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        match work() {
            Err(error)
                if attempt < ATTEMPTS
                    && error
                        .storage_error()
                        .is_some_and(StorageError::is_retryable) =>
            {
                if let Some(reason) = error.storage_error() {
                    tracing::debug!(attempt, %reason, "retrying work the database aborted");
                }
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// A `std::time::Duration` as a Postgres interval.
pub fn interval(duration: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
}
