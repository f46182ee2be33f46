//! Storage at start: connecting (waiting for a server that is still starting, creating a
//! missing database), the embedded migrations and the SQL sources under one advisory lock, and
//! the checks of the server's settings and state (`/readyz`).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::result::{ConnectionError, Error as DieselError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::StorageError;
use super::error::{Cause, ConnectFailure, is_database_already_there};
use super::sql_sources::{self, SqlSourceError};
use crate::config::redacted;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Serializes concurrent `migrate` runs of several instances starting at once.
const MIGRATION_LOCK_KEY: i64 = 0x5a1a_9a7d_0001;

/// Why storage could not start; each keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot connect to the database (DATABASE_URL={url}): {}", .source.to_string().trim())]
    Connect {
        /// Without its password.
        url: String,
        #[source]
        source: ConnectionError,
    },
    #[error("cannot create the database of DATABASE_URL: unusable database name {0:?}")]
    DatabaseName(String),
    #[error(
        "cannot create the database of DATABASE_URL: connecting to the `postgres` database: {0}"
    )]
    ConnectToCreate(#[source] ConnectionError),
    #[error("cannot create the database of DATABASE_URL: {0}")]
    Create(#[source] Cause),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] Cause),
    #[error("cannot migrate the database: {0}")]
    SqlSource(#[from] SqlSourceError),
    #[error("cannot build the connection pool: {0}")]
    Pool(#[source] diesel::r2d2::PoolError),
}

fn connect_error(url: &str, source: ConnectionError) -> StartupError {
    StartupError::Connect {
        url: redacted(url),
        source,
    }
}

/// Sets OpenSSL up the way a multi-threaded process that links libpq needs, before libpq does:
/// without the clean-up OpenSSL otherwise runs at exit. That clean-up frees OpenSSL's locks and
/// tables while other threads may still use them: a pool thread still opening a connection (a
/// TLS handshake under `sslmode=prefer`) when the service exits after a SIGTERM crashed the
/// process with SIGSEGV after its graceful stop (seen in CI, reproduced with connections made
/// slow by a delaying proxy: the core showed `OPENSSL_cleanup` in `exit` beside `PQconnectdb`).
/// The first initialisation of OpenSSL decides, so every libpq connection of the process is
/// opened after this ([`establish`], the pool's manager); it costs one atomic load afterwards.
pub fn keep_tls_until_exit() {
    openssl_sys::init();
}

/// Opens one libpq connection to `url` ([`keep_tls_until_exit`] first).
#[allow(clippy::disallowed_methods)] // The one place that may.
pub fn establish(url: &str) -> ConnectionResult<PgConnection> {
    keep_tls_until_exit();
    PgConnection::establish(url)
}

/// Connects to `url`, creating its database first when it does not exist yet.
pub fn connect_creating_database(url: &str) -> Result<PgConnection, StartupError> {
    match establish(url) {
        Ok(conn) => Ok(conn),
        Err(error) if ConnectFailure::of(&error) == ConnectFailure::MissingDatabase => {
            create_database(url)?;
            establish(url).map_err(|e| connect_error(url, e))
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
            Err(StartupError::Connect { url: shown, source })
                if ConnectFailure::of(&source) != ConnectFailure::Refused
                    && started.elapsed() < wait =>
            {
                tracing::warn!(
                    attempt,
                    database = %shown,
                    error = %source.to_string().trim(),
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

/// The database a `postgres://` URL names, and the same URL naming `postgres` instead. Read as
/// text, not with a URL parser: libpq's URLs may name several hosts (`h1:5432,h2:5432`), which a
/// URL parser refuses.
fn split_database(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let path_at = rest.find('/')?;
    let (authority, path) = rest.split_at(path_at);
    let (name, query) = match path.trim_start_matches('/').split_once('?') {
        Some((name, query)) => (name, Some(query)),
        None => (path.trim_start_matches('/'), None),
    };
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()?
        .into_owned();
    let admin = match query {
        Some(query) => format!("{scheme}://{authority}/postgres?{query}"),
        None => format!("{scheme}://{authority}/postgres"),
    };
    Some((name, admin))
}

fn create_database(url: &str) -> Result<(), StartupError> {
    let (name, admin_url) = split_database(url).unwrap_or_default();
    if name.is_empty() || name.contains('"') {
        return Err(StartupError::DatabaseName(name));
    }
    let mut admin = establish(&admin_url).map_err(StartupError::ConnectToCreate)?;
    match diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin) {
        Ok(_) => {
            tracing::info!(database = %name, "created the database");
            Ok(())
        }
        // Another instance created it at the same moment.
        Err(error) if is_database_already_there(&error) => Ok(()),
        Err(error) => Err(StartupError::Create(Box::new(error))),
    }
}

/// Applies the embedded migrations that are not applied yet, then the SQL sources that changed
/// ([`sql_sources`]), one instance at a time. Returns what it applied.
pub fn run_migrations(conn: &mut PgConnection) -> Result<Vec<String>, StartupError> {
    let migrate = |error: DieselError| StartupError::Migrate(Box::new(error));
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(conn)
        .map_err(migrate)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(StartupError::Migrate)
        .and_then(|mut applied| {
            for outcome in sql_sources::apply(conn)? {
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
        .map_err(migrate);
    let applied = applied?;
    unlock?;
    Ok(applied)
}

/// Whether every embedded migration and SQL source has been applied (for `/readyz`).
pub fn migrations_applied(conn: &mut PgConnection) -> Result<bool, StorageError> {
    let pending = conn
        .has_pending_migration(MIGRATIONS)
        .map_err(StorageError::Unreachable)?;
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

/// Whether the database answers and every migration and SQL source is applied (for `/readyz`).
pub fn is_ready(conn: &mut PgConnection) -> Result<bool, StorageError> {
    diesel::sql_query("SELECT 1").execute(conn)?;
    migrations_applied(conn)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_database_of_a_url_is_found_with_one_host_or_several() {
        assert_eq!(
            split_database("postgres://localhost:5432/solopay?sslmode=disable").unwrap(),
            (
                "solopay".to_string(),
                "postgres://localhost:5432/postgres?sslmode=disable".to_string()
            )
        );
        assert_eq!(
            split_database(
                "postgres://u@10.0.0.1:5432,10.0.0.2:5433/shop%20db?target_session_attrs=read-write"
            )
            .unwrap(),
            (
                "shop db".to_string(),
                "postgres://u@10.0.0.1:5432,10.0.0.2:5433/postgres?target_session_attrs=read-write"
                    .to_string()
            )
        );
        assert_eq!(
            split_database("postgresql://h/db").unwrap().1,
            "postgresql://h/postgres"
        );
        assert_eq!(split_database("postgres://h"), None);
        assert_eq!(split_database("host=h dbname=x"), None);
    }
}
