//! The server-side SQL functions, kept once in `src/db/sql/` and applied at start after the
//! migrations (Lemmy's "replaceable schema" idea: migrations hold DDL; functions are replaced
//! whole when they change). Each source's first line declares its `-- revision: N`; a source is
//! applied when the database records an older revision. A newer revision, applied by a newer
//! release during a rolling upgrade, is left alone; the same revision with other content stops
//! the start, so that two builds can never take turns replacing each other's functions (a test
//! pins each revision's digest, so an edit without a new revision fails the tests first).
//! `CREATE OR REPLACE` keeps a function's name, parameters (names too) and result type: older
//! instances still running call the new body, and a source that changes any of those fails to
//! apply (nothing of it applied) and stops the start.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Integer, Text};

use crate::core::secrets::sha256;

/// A SQL source: its name, and the text applied.
pub struct SqlSource {
    pub name: &'static str,
    pub text: &'static str,
}

/// Every source, in the order they are applied.
pub const SOURCES: &[SqlSource] = &[
    SqlSource {
        name: "allocation",
        text: include_str!("sql/allocation.sql"),
    },
    SqlSource {
        name: "audit",
        text: include_str!("sql/audit.sql"),
    },
    SqlSource {
        name: "matching",
        text: include_str!("sql/matching.sql"),
    },
];

/// The revision a source declares on its first line (`-- revision: N`).
pub fn revision(source: &SqlSource) -> Option<i32> {
    source
        .text
        .lines()
        .next()?
        .strip_prefix("-- revision:")?
        .trim()
        .parse()
        .ok()
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = Integer)]
    revision: i32,
    #[diesel(sql_type = Bytea)]
    sha256: Vec<u8>,
}

/// What applying the sources did, per source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutcome {
    Applied {
        name: &'static str,
        revision: i32,
    },
    Unchanged,
    /// A newer release applied a later revision; this one leaves it.
    Newer {
        name: &'static str,
        applied: i32,
    },
}

/// Why the sources could not be applied: the start stops.
#[derive(Debug, thiserror::Error)]
pub enum SqlSourceError {
    #[error("SQL source {name} declares no `-- revision: N` on its first line")]
    NoRevision { name: &'static str },
    #[error(
        "SQL source {name} revision {revision} in the database differs from this build's: \
         another build applied other content under the same revision"
    )]
    SameRevisionOtherContent { name: &'static str, revision: i32 },
    #[error("cannot apply SQL source {name}: {source}")]
    Database {
        name: &'static str,
        #[source]
        source: diesel::result::Error,
    },
}

/// Applies the sources of this build that changed ([`SOURCES`]).
pub fn apply(conn: &mut PgConnection) -> Result<Vec<SourceOutcome>, SqlSourceError> {
    apply_sources(conn, SOURCES)
}

/// Applies `sources` that changed, each in a transaction of its own. The caller holds the
/// migration lock, so instances starting together apply them one at a time.
pub fn apply_sources(
    conn: &mut PgConnection,
    sources: &[SqlSource],
) -> Result<Vec<SourceOutcome>, SqlSourceError> {
    sources
        .iter()
        .map(|source| apply_one(conn, source))
        .collect()
}

fn apply_one(conn: &mut PgConnection, source: &SqlSource) -> Result<SourceOutcome, SqlSourceError> {
    let name = source.name;
    let revision = revision(source).ok_or(SqlSourceError::NoRevision { name })?;
    let digest = sha256(source.text.as_bytes()).to_vec();
    conn.transaction(|conn| {
        let applied: Option<Applied> = diesel::sql_query(
            "SELECT revision, sha256 FROM sql_sources WHERE name = $1 FOR UPDATE",
        )
        .bind::<Text, _>(name)
        .get_result(conn)
        .optional()?;
        match applied {
            Some(applied) if applied.revision > revision => Ok(SourceOutcome::Newer {
                name,
                applied: applied.revision,
            }),
            Some(applied) if applied.revision == revision && applied.sha256 == digest => {
                Ok(SourceOutcome::Unchanged)
            }
            Some(applied) if applied.revision == revision => {
                Err(SqlSourceError::SameRevisionOtherContent { name, revision }.into())
            }
            _ => {
                conn.batch_execute(source.text)?;
                diesel::sql_query(
                    "INSERT INTO sql_sources (name, revision, sha256) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET revision = excluded.revision, \
                     sha256 = excluded.sha256, applied_at = now()",
                )
                .bind::<Text, _>(name)
                .bind::<Integer, _>(revision)
                .bind::<Bytea, _>(&digest)
                .execute(conn)?;
                Ok(SourceOutcome::Applied { name, revision })
            }
        }
    })
    .map_err(|error| match error {
        Failure::Refused(error) => error,
        Failure::Database(source) => SqlSourceError::Database { name, source },
    })
}

/// How a source's transaction failed: refused by the rules above, or by the database.
enum Failure {
    Refused(SqlSourceError),
    Database(diesel::result::Error),
}

impl From<SqlSourceError> for Failure {
    fn from(error: SqlSourceError) -> Self {
        Failure::Refused(error)
    }
}

impl From<diesel::result::Error> for Failure {
    fn from(error: diesel::result::Error) -> Self {
        Failure::Database(error)
    }
}

/// Whether every source is applied at its revision or a newer one (for `/readyz`).
pub fn applied(conn: &mut PgConnection) -> QueryResult<bool> {
    for source in SOURCES {
        let Some(revision) = revision(source) else {
            return Ok(false);
        };
        let found: Option<Applied> =
            diesel::sql_query("SELECT revision, sha256 FROM sql_sources WHERE name = $1")
                .bind::<Text, _>(source.name)
                .get_result(conn)
                .optional()?;
        if found.is_none_or(|applied| applied.revision < revision) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each source's revision and the SHA-256 of its text. Changing a source means a new
    /// revision (its first line) and a new line here.
    const PINNED: &[(&str, i32, &str)] = &[
        (
            "allocation",
            5,
            "71663d924e65bee428b8834325041ba56ec3e595e82c8611d15a78d287767319",
        ),
        (
            "audit",
            1,
            "700bef0afc165f1c6060efe8886b43870bbabc2a1b28b490de1be84512f7ef5e",
        ),
        (
            "matching",
            7,
            "c9b9e34c13346ef2333729be58b0ba432ce00e8dd15452adfc0543f126d2dc32",
        ),
    ];

    #[test]
    fn every_source_declares_its_revision_and_its_content_is_pinned() {
        assert_eq!(SOURCES.len(), PINNED.len());
        for (source, (name, revision_pinned, digest)) in SOURCES.iter().zip(PINNED) {
            assert_eq!(source.name, *name);
            assert_eq!(
                revision(source),
                Some(*revision_pinned),
                "{}: the revision on its first line",
                source.name
            );
            assert_eq!(
                hex::encode(sha256(source.text.as_bytes())),
                *digest,
                "{} changed: give it a new revision and pin its digest",
                source.name
            );
        }
    }
}
