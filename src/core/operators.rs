//! Operator tokens: the configured one (`SOLOPAY_ADMIN_TOKEN`), or one generated at first start
//! and stored only as a digest; authenticating a presented token.

use std::io::Write;
use std::path::Path;

use diesel::{Connection, PgConnection};

use crate::core::error::RuleError;
use crate::core::secrets::{constant_time_eq, new_operator_token, sha256};
use crate::db::operator_tokens::{self as token_rows, GENERATED};

/// Where the operator token of this installation comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `SOLOPAY_ADMIN_TOKEN` is set.
    Setting,
    /// Generated now and written to the token file.
    Generated,
    /// Generated at an earlier start (its file was written then).
    Stored,
}

/// On a start without `SOLOPAY_ADMIN_TOKEN`: generates a token unless one was generated before,
/// writes it to `file` (mode 0600) and stores its digest. Of instances starting at once, one
/// generates; the file is written before the digest commits, so no stored token goes unknown.
pub fn ensure_token(
    conn: &mut PgConnection,
    configured: Option<&str>,
    file: &Path,
) -> Result<TokenSource, RuleError> {
    if configured.is_some() {
        return Ok(TokenSource::Setting);
    }
    let token = new_operator_token();
    conn.transaction(|conn| {
        if !token_rows::insert_if_absent(conn, GENERATED, &sha256(token.as_bytes()))? {
            return Ok(TokenSource::Stored);
        }
        write_token_file(file, &token).map_err(|e| {
            RuleError::internal(format!(
                "cannot write the operator token to {}: {e} (set SOLOPAY_ADMIN_TOKEN_FILE to a \
                 writable path, or set SOLOPAY_ADMIN_TOKEN)",
                file.display()
            ))
        })?;
        Ok(TokenSource::Generated)
    })
}

/// Replaces the generated token with a new one and returns it (the `admin-token` command); the
/// console sessions the old one opened end with it.
pub fn rotate_generated_token(conn: &mut PgConnection) -> Result<String, RuleError> {
    let token = new_operator_token();
    let digest = sha256(token.as_bytes());
    conn.transaction(|conn| -> Result<_, RuleError> {
        token_rows::replace(conn, GENERATED, &digest)?;
        crate::db::console::end_opened_with_other_token(conn, GENERATED, &digest)?;
        Ok(())
    })?;
    Ok(token)
}

/// Whether the operator token with this digest is still one (not rotated away, not replaced in
/// `SOLOPAY_ADMIN_TOKEN`).
pub fn is_current(
    conn: &mut PgConnection,
    configured: Option<&str>,
    digest: &[u8],
) -> Result<bool, RuleError> {
    Ok(match configured {
        Some(token) => constant_time_eq(&sha256(token.as_bytes()), digest),
        None => token_rows::find_name_by_hash(conn, digest)?.is_some(),
    })
}

fn write_token_file(file: &Path, token: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(file)?;
    writeln!(out, "{token}")?;
    out.sync_all()
}

/// The name of the operator a presented token belongs to.
pub fn authenticate(
    conn: &mut PgConnection,
    configured: Option<&str>,
    presented: &str,
) -> Result<String, RuleError> {
    let refused = || RuleError::Unauthorized("invalid operator token".into());
    match configured {
        Some(token) if constant_time_eq(token.as_bytes(), presented.as_bytes()) => {
            Ok("admin".to_string())
        }
        Some(_) => Err(refused()),
        // Stored tokens are digests: the lookup compares digests, never the token.
        None => {
            token_rows::find_name_by_hash(conn, &sha256(presented.as_bytes()))?.ok_or_else(refused)
        }
    }
}
