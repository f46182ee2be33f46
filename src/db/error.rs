//! Storage's own errors: what went wrong with the database, read once from its answer (by the
//! error kinds diesel gives for SQLSTATEs where it has one, else by the server's words), with the
//! cause kept for the logs. Storage never builds an HTTP answer; the layers above decide what a
//! caller is told.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The server closed the connection or cannot be reached (a restart, an outage, a failover).
    #[error("the database is unreachable: {0}")]
    Unreachable(String),
    /// No pooled connection became free in time.
    #[error("no database connection became free in time")]
    PoolExhausted,
    /// The server aborted the transaction (a deadlock victim, a serialization failure, two
    /// reservations of one amount meeting): the attempt changed nothing and may run again.
    #[error("the database aborted the transaction: {0}")]
    Aborted(#[source] DieselError),
    /// A statement or lock wait took longer than the statement timeout.
    #[error("the database did not answer in time: {0}")]
    Timeout(#[source] DieselError),
    /// Text the database cannot store (U+0000, invalid UTF-8).
    #[error("the database cannot store this text: {0}")]
    UnstorableText(#[source] DieselError),
    /// A constraint the code did not expect refused a change.
    #[error("a constraint ({}) refused the change: {cause}", .constraint.as_deref().unwrap_or("unnamed"))]
    Constraint {
        constraint: Option<String>,
        #[source]
        cause: DieselError,
    },
    /// Anything else the database or diesel answered.
    #[error("database: {0}")]
    Other(#[source] DieselError),
}

impl StorageError {
    /// Whether running the same work again may succeed (the failed attempt changed nothing).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Aborted(_))
    }

    /// Whether the database cannot do the work right now (unreachable, busy, slow, or it aborted
    /// the work): work behind it would fail the same way, so a batch stops here.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::Unreachable(_)
                | StorageError::PoolExhausted
                | StorageError::Aborted(_)
                | StorageError::Timeout(_)
        )
    }

    /// Whether the connection it happened on lost its server (and must not be used again).
    pub fn lost_the_server(&self) -> bool {
        matches!(self, StorageError::Unreachable(_))
    }
}

impl From<DieselError> for StorageError {
    fn from(error: DieselError) -> Self {
        let DieselError::DatabaseError(kind, info) = &error else {
            return StorageError::Other(error);
        };
        let message = info.message().to_string();
        match kind {
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                StorageError::Unreachable(message)
            }
            DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ExclusionViolation => {
                StorageError::Aborted(error)
            }
            DatabaseErrorKind::UniqueViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::CheckViolation
            | DatabaseErrorKind::NotNullViolation
            | DatabaseErrorKind::RestrictViolation => StorageError::Constraint {
                constraint: info.constraint_name().map(str::to_string),
                cause: error,
            },
            // diesel gives no kind for these SQLSTATEs (40P01, 57014, 55P03, 08xxx, 22021):
            // the server's English words (`lc_messages = 'C'` on every connection) tell them.
            _ if message.contains("deadlock detected") => StorageError::Aborted(error),
            _ if is_connection_lost(&message) => StorageError::Unreachable(message),
            _ if is_unstorable_text(&message) => StorageError::UnstorableText(error),
            _ if is_timeout(&message) => StorageError::Timeout(error),
            _ => StorageError::Other(error),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StorageError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        tracing::warn!(%error, "no database connection available");
        StorageError::PoolExhausted
    }
}

/// libpq's and the server's words for a connection that went away under the query: a server
/// shut down or restarted, a backend terminated by an administrator, a network cut.
fn is_connection_lost(message: &str) -> bool {
    message.contains("terminating connection")
        || message.contains("server closed the connection")
        || message.contains("no connection to the server")
        || message.contains("could not receive data from server")
        || message.contains("could not send data to server")
        || message.contains("the database system is shutting down")
        || message.contains("the database system is starting up")
}

fn is_unstorable_text(message: &str) -> bool {
    message.contains("invalid byte sequence for encoding")
        || message.contains("unsupported Unicode escape sequence")
}

fn is_timeout(message: &str) -> bool {
    message.contains("canceling statement due to statement timeout")
        || message.contains("canceling statement due to lock timeout")
}

/// An error type work on the database can fail with: it can hold a [`StorageError`], and says
/// whether it does, so that [`super::Db::run`] can tell what a failure says about the connection.
pub trait StorageFailure: From<StorageError> {
    fn storage_error(&self) -> Option<&StorageError>;
}

impl StorageFailure for StorageError {
    fn storage_error(&self) -> Option<&StorageError> {
        Some(self)
    }
}
