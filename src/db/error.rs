//! Storage's own errors, and the only place that reads what the database answered: by the error
//! kinds diesel gives for SQLSTATEs where it has one, by the condition solopay's own SQL
//! functions name in an error's constraint field, else by the server's and libpq's words (diesel
//! hides the SQLSTATE of deadlocks, timeouts, lost connections and failed connection attempts;
//! hence `lc_messages = 'C'` on every pooled connection). Causes are kept for the logs. Storage
//! never builds an HTTP answer; the layers above decide what a caller is told.

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};

/// A cause of any kind, kept as the source of an error.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The server closed the connection or cannot be reached (a restart, an outage, a failover).
    #[error("the database is unreachable: {0}")]
    Unreachable(#[source] Cause),
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

    /// Whether a unique constraint refused the row (a conflict the caller may name).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StorageError::Constraint {
                cause: DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _),
                ..
            }
        )
    }
}

impl From<DieselError> for StorageError {
    fn from(error: DieselError) -> Self {
        let DieselError::DatabaseError(kind, info) = &error else {
            return StorageError::Other(error);
        };
        let message = info.message();
        match kind {
            // A read-only transaction: the connection is on a standby (its server was demoted,
            // or it reached one): as good as lost for writes, and dropped like one.
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::ReadOnlyTransaction => StorageError::Unreachable(Box::new(error)),
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
            // A refusal of solopay's own functions that its caller did not expect.
            _ if SqlRefusal::of(&error).is_some() => StorageError::Constraint {
                constraint: info.constraint_name().map(str::to_string),
                cause: error,
            },
            // diesel gives no kind for these SQLSTATEs (40P01, 57014, 55P03, 08xxx, 22021):
            // the server's English words (`lc_messages = 'C'` on every connection) tell them.
            _ if message.contains("deadlock detected") => StorageError::Aborted(error),
            _ if is_connection_lost(message) => StorageError::Unreachable(Box::new(error)),
            _ if is_unstorable_text(message) => StorageError::UnstorableText(error),
            _ if is_timeout(message) => StorageError::Timeout(error),
            _ => StorageError::Other(error),
        }
    }
}

/// A refusal of solopay's own server-side functions (`src/db/sql/`): each has a SQLSTATE of its
/// own and names its condition in the error's constraint field, which diesel exposes (it does not
/// expose SQLSTATEs outside its own list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlRefusal {
    /// SP001: no payee of the channel is enabled with an online device.
    NoPayee,
    /// SP002: every candidate amount of every such payee is taken.
    AmountsExhausted,
    /// SP004: the audit log is append-only.
    AuditLogIsAppendOnly,
}

impl SqlRefusal {
    const ALL: [SqlRefusal; 3] = [
        SqlRefusal::NoPayee,
        SqlRefusal::AmountsExhausted,
        SqlRefusal::AuditLogIsAppendOnly,
    ];

    /// The condition the function names in the error's constraint field.
    fn condition(self) -> &'static str {
        match self {
            SqlRefusal::NoPayee => "solopay_no_payee",
            SqlRefusal::AmountsExhausted => "solopay_amounts_exhausted",
            SqlRefusal::AuditLogIsAppendOnly => "solopay_audit_log_append_only",
        }
    }

    /// The refusal `error` is, if it is one.
    pub fn of(error: &DieselError) -> Option<SqlRefusal> {
        let DieselError::DatabaseError(_, info) = error else {
            return None;
        };
        let condition = info.constraint_name()?;
        SqlRefusal::ALL
            .into_iter()
            .find(|refusal| refusal.condition() == condition)
    }
}

/// What a failed connection attempt says: a connection that never opened has no SQLSTATE diesel
/// exposes, so libpq's and the server's words tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// `FATAL: database "x" does not exist` (not a missing role): it can be created.
    MissingDatabase,
    /// A refusal that waiting cannot change: authentication, an unknown role, a bad URL.
    Refused,
    /// Anything else may go away by itself: a server starting, restarting or not yet reachable.
    Transient,
}

impl ConnectFailure {
    pub fn of(error: &ConnectionError) -> ConnectFailure {
        let reason = error.to_string();
        if reason.contains("database \"") && reason.contains("\" does not exist") {
            ConnectFailure::MissingDatabase
        } else if reason.contains("password authentication failed")
            || reason.contains("no pg_hba.conf entry")
            || (reason.contains("role \"") && reason.contains("does not exist"))
            || reason.contains("invalid connection string")
            || reason.contains("invalid URI")
        {
            ConnectFailure::Refused
        } else {
            ConnectFailure::Transient
        }
    }
}

/// Whether `CREATE DATABASE` failed because the database exists (another instance created it at
/// the same moment): SQLSTATE 42P04, which diesel does not expose, or a unique violation of the
/// catalog when the two met there.
pub fn is_database_already_there(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => true,
        DieselError::DatabaseError(_, info) => info.message().contains("already exists"),
        _ => false,
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

#[cfg(test)]
mod tests {
    use diesel::result::DatabaseErrorInformation;

    use super::*;

    fn bad_connection(text: &str) -> ConnectionError {
        ConnectionError::BadConnection(text.to_string())
    }

    #[test]
    fn a_failed_connection_is_told_by_what_libpq_says() {
        let cases = [
            (
                "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"shop\" does not exist\n",
                ConnectFailure::MissingDatabase,
            ),
            (
                "FATAL:  password authentication failed for user \"solopay\"\n",
                ConnectFailure::Refused,
            ),
            (
                "FATAL:  role \"solopay\" does not exist\n",
                ConnectFailure::Refused,
            ),
            (
                "connection to server at \"db\" (10.0.0.2), port 5432 failed: Connection refused\n",
                ConnectFailure::Transient,
            ),
            (
                "FATAL:  the database system is starting up\n",
                ConnectFailure::Transient,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                ConnectFailure::of(&bad_connection(text)),
                expected,
                "{text}"
            );
        }
    }

    /// A server error as diesel hands it over: a message, and the condition a function named.
    struct ServerError {
        message: &'static str,
        constraint: Option<&'static str>,
    }

    impl DatabaseErrorInformation for ServerError {
        fn message(&self) -> &str {
            self.message
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            self.constraint
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn server_error(message: &'static str, constraint: Option<&'static str>) -> DieselError {
        DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(ServerError {
                message,
                constraint,
            }),
        )
    }

    #[test]
    fn solopays_own_refusals_are_told_by_the_condition_they_name_not_their_words() {
        let no_payee = server_error("anything at all", Some("solopay_no_payee"));
        assert_eq!(SqlRefusal::of(&no_payee), Some(SqlRefusal::NoPayee));
        let exhausted = server_error(
            "solopay: amounts exhausted",
            Some("solopay_amounts_exhausted"),
        );
        assert_eq!(
            SqlRefusal::of(&exhausted),
            Some(SqlRefusal::AmountsExhausted)
        );
        let unnamed = server_error("solopay: amounts exhausted", None);
        assert_eq!(SqlRefusal::of(&unnamed), None);
        // Unexpected where it happens: a named constraint refused the change.
        let audit = server_error(
            "audit_log is append-only",
            Some("solopay_audit_log_append_only"),
        );
        assert!(matches!(
            StorageError::from(audit),
            StorageError::Constraint { constraint: Some(name), .. }
                if name == "solopay_audit_log_append_only"
        ));
    }

    #[test]
    fn deadlocks_timeouts_and_lost_servers_are_told_by_the_servers_words() {
        let deadlock = server_error("deadlock detected", None);
        assert!(StorageError::from(deadlock).is_retryable());
        let timeout = server_error("canceling statement due to statement timeout", None);
        assert!(matches!(
            StorageError::from(timeout),
            StorageError::Timeout(_)
        ));
        let shutdown = server_error("terminating connection due to administrator command", None);
        assert!(StorageError::from(shutdown).lost_the_server());
        let other = server_error("division by zero", None);
        assert!(matches!(StorageError::from(other), StorageError::Other(_)));
    }
}
