//! The `console_sessions` and `console_sign_in_failures` tables: the operator console's
//! server-side sessions (by the digest of the cookie's token) and the failed sign-ins that lock
//! an address out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Interval, Nullable, Timestamptz};

use super::interval;
use super::schema::{console_sessions, console_sign_in_failures};

/// A console session. `Debug` leaves out its token digests and CSRF token.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = console_sessions, check_for_backend(diesel::pg::Pg))]
pub struct Session {
    pub token_hash: Vec<u8>,
    pub operator: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The digest of the operator token it was opened with.
    pub operator_token_hash: Option<Vec<u8>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("operator", &self.operator)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("ended_at", &self.ended_at)
            .finish_non_exhaustive()
    }
}

/// A session to open.
pub struct NewSession<'a> {
    pub token_hash: &'a [u8],
    pub operator: &'a str,
    pub operator_token_hash: &'a [u8],
    pub csrf_token: &'a str,
}

/// Opens a session that ends after `lifetime` (by the database clock).
pub fn open(
    conn: &mut PgConnection,
    session: &NewSession<'_>,
    lifetime: Duration,
) -> QueryResult<()> {
    diesel::insert_into(console_sessions::table)
        .values((
            console_sessions::token_hash.eq(session.token_hash),
            console_sessions::operator.eq(session.operator),
            console_sessions::operator_token_hash.eq(session.operator_token_hash),
            console_sessions::csrf_token.eq(session.csrf_token),
            console_sessions::expires_at
                .eq(sql::<Timestamptz>("now() + ").bind::<Interval, _>(interval(lifetime))),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The live session of this token (not ended, not expired, used within `idle`), marked as seen.
pub fn touch(
    conn: &mut PgConnection,
    token_hash: &[u8],
    idle: Duration,
) -> QueryResult<Option<Session>> {
    diesel::update(console_sessions::table.find(token_hash))
        .filter(console_sessions::ended_at.is_null())
        .filter(sql::<Bool>("console_sessions.expires_at > now()"))
        .filter(
            sql::<Bool>("console_sessions.last_seen_at > now() - ")
                .bind::<Interval, _>(interval(idle)),
        )
        .set(console_sessions::last_seen_at.eq(sql::<Timestamptz>("now()")))
        .returning(Session::as_returning())
        .get_result(conn)
        .optional()
}

/// Ends a session (sign-out).
pub fn end(conn: &mut PgConnection, token_hash: &[u8]) -> QueryResult<usize> {
    diesel::update(console_sessions::table.find(token_hash))
        .filter(console_sessions::ended_at.is_null())
        .set(console_sessions::ended_at.eq(sql::<Nullable<Timestamptz>>("now()")))
        .execute(conn)
}

/// Ends every live session opened with an operator token other than `current` (of the tokens
/// stored under `operator`, after a rotation).
pub fn end_opened_with_other_token(
    conn: &mut PgConnection,
    operator: &str,
    current: &[u8],
) -> QueryResult<usize> {
    diesel::update(console_sessions::table)
        .filter(console_sessions::operator.eq(operator))
        .filter(console_sessions::ended_at.is_null())
        .filter(
            console_sessions::operator_token_hash
                .is_null()
                .or(console_sessions::operator_token_hash.ne(current)),
        )
        .set(console_sessions::ended_at.eq(sql::<Nullable<Timestamptz>>("now()")))
        .execute(conn)
}

/// Records a failed sign-in from `address`.
pub fn record_failure(conn: &mut PgConnection, address: &str) -> QueryResult<()> {
    diesel::insert_into(console_sign_in_failures::table)
        .values(console_sign_in_failures::address.eq(address))
        .execute(conn)
        .map(|_| ())
}

/// How many sign-ins from `address` failed within `window`.
pub fn recent_failures(
    conn: &mut PgConnection,
    address: &str,
    window: Duration,
) -> QueryResult<i64> {
    console_sign_in_failures::table
        .filter(console_sign_in_failures::address.eq(address))
        .filter(
            sql::<Bool>("console_sign_in_failures.failed_at > now() - ")
                .bind::<Interval, _>(interval(window)),
        )
        .count()
        .get_result(conn)
}

/// Forgets sessions that ended or expired, and failures older than `keep`.
pub fn forget_old(conn: &mut PgConnection, keep: Duration) -> QueryResult<usize> {
    let sessions = diesel::delete(
        console_sessions::table.filter(
            sql::<Bool>(
                "coalesce(console_sessions.ended_at, console_sessions.expires_at) < now() - ",
            )
            .bind::<Interval, _>(interval(keep)),
        ),
    )
    .execute(conn)?;
    let failures = diesel::delete(
        console_sign_in_failures::table.filter(
            sql::<Bool>("console_sign_in_failures.failed_at < now() - ")
                .bind::<Interval, _>(interval(keep)),
        ),
    )
    .execute(conn)?;
    Ok(sessions + failures)
}
