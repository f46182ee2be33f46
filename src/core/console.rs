//! The console's sign-in rules: an operator token opens a server-side session (the browser holds
//! a random token, the database only its digest) with its own CSRF token; sessions end when
//! signed out, after [`SESSION_LIFETIME`], after [`SESSION_IDLE`] without use, or when the
//! operator token that opened them is rotated; an address with [`LOCKOUT_AFTER`] wrong tokens
//! within [`LOCKOUT_WINDOW`] is refused until the window passes.

use std::time::Duration;

use diesel::PgConnection;

use crate::core::error::RuleError;
use crate::core::operators;
use crate::core::secrets::sha256;
use crate::db::console as session_rows;
use crate::db::transaction_with_retry;

pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);
pub const LOCKOUT_AFTER: i64 = 5;
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A new session: the token for the cookie (shown to the browser only) and its CSRF token.
pub struct Opened {
    pub token: String,
    pub csrf: String,
    pub operator: String,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opened({}, tokens hidden)", self.operator)
    }
}

/// Why a sign-in was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SignInRefusal {
    WrongToken,
    LockedOut,
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Signs in with an operator token from `address`.
pub fn sign_in(
    conn: &mut PgConnection,
    configured: Option<&str>,
    presented: &str,
    address: &str,
) -> Result<Result<Opened, SignInRefusal>, RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        if session_rows::recent_failures(conn, address, LOCKOUT_WINDOW)? >= LOCKOUT_AFTER {
            return Ok(Err(SignInRefusal::LockedOut));
        }
        let operator = match operators::authenticate(conn, configured, presented) {
            Ok(operator) => operator,
            Err(RuleError::Unauthorized(_)) => {
                session_rows::record_failure(conn, address)?;
                return Ok(Err(SignInRefusal::WrongToken));
            }
            Err(other) => return Err(other),
        };
        let (token, csrf) = (random_token(), random_token());
        session_rows::open(
            conn,
            &session_rows::NewSession {
                token_hash: &sha256(token.as_bytes()),
                operator: &operator,
                operator_token_hash: &sha256(presented.as_bytes()),
                csrf_token: &csrf,
            },
            SESSION_LIFETIME,
        )?;
        Ok(Ok(Opened {
            token,
            csrf,
            operator,
        }))
    })
}

/// The live session of a cookie's token, if it is one and the operator token that opened it is
/// still current (a session opened with a token since rotated is ended).
pub fn session(
    conn: &mut PgConnection,
    configured: Option<&str>,
    token: &str,
) -> Result<Option<session_rows::Session>, RuleError> {
    let digest = sha256(token.as_bytes());
    let Some(session) = session_rows::touch(conn, &digest, SESSION_IDLE)? else {
        return Ok(None);
    };
    let opened_with = session.operator_token_hash.as_deref().unwrap_or_default();
    if !operators::is_current(conn, configured, opened_with)? {
        // A rotated stored token is gone for good. A configured one may only differ on this
        // instance (a rolling change of SOLOPAY_ADMIN_TOKEN): refused here, not ended.
        if configured.is_none() {
            session_rows::end(conn, &digest)?;
        }
        return Ok(None);
    }
    Ok(Some(session))
}

/// Ends a session.
pub fn sign_out(conn: &mut PgConnection, token: &str) -> Result<(), RuleError> {
    session_rows::end(conn, &sha256(token.as_bytes()))?;
    Ok(())
}
