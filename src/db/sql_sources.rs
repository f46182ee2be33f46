//! The server-side SQL functions, kept once in `src/db/sql/` and applied at start after the
//! migrations (Lemmy's "replaceable schema" idea: migrations hold DDL; functions are replaced
//! whole when they change). Each source's first line declares its `-- revision: N`; a source is
//! applied when the database records an older revision or, at the same revision, other content.
//! A newer revision, applied by a newer release during a rolling upgrade, is left alone.

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
pub const SOURCES: &[SqlSource] = &[SqlSource {
    name: "allocation",
    text: include_str!("sql/allocation.sql"),
}];

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

/// Applies the sources that changed, each in a transaction of its own. The caller holds the
/// migration lock, so instances starting together apply them one at a time.
pub fn apply(conn: &mut PgConnection) -> Result<Vec<SourceOutcome>, String> {
    let mut outcomes = Vec::new();
    for source in SOURCES {
        let revision = revision(source)
            .ok_or_else(|| format!("SQL source {} declares no `-- revision: N`", source.name))?;
        let digest = sha256(source.text.as_bytes()).to_vec();
        let outcome = conn
            .transaction(|conn| {
                let applied: Option<Applied> = diesel::sql_query(
                    "SELECT revision, sha256 FROM sql_sources WHERE name = $1 FOR UPDATE",
                )
                .bind::<Text, _>(source.name)
                .get_result(conn)
                .optional()?;
                match applied {
                    Some(applied) if applied.revision > revision => Ok(SourceOutcome::Newer {
                        name: source.name,
                        applied: applied.revision,
                    }),
                    Some(applied) if applied.revision == revision && applied.sha256 == digest => {
                        Ok(SourceOutcome::Unchanged)
                    }
                    _ => {
                        conn.batch_execute(source.text)?;
                        diesel::sql_query(
                            "INSERT INTO sql_sources (name, revision, sha256) VALUES ($1, $2, $3) \
                             ON CONFLICT (name) DO UPDATE SET revision = excluded.revision, \
                             sha256 = excluded.sha256, applied_at = now()",
                        )
                        .bind::<Text, _>(source.name)
                        .bind::<Integer, _>(revision)
                        .bind::<Bytea, _>(&digest)
                        .execute(conn)?;
                        Ok(SourceOutcome::Applied {
                            name: source.name,
                            revision,
                        })
                    }
                }
            })
            .map_err(|e: diesel::result::Error| {
                format!("cannot apply SQL source {}: {e}", source.name)
            })?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
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

    #[test]
    fn every_source_declares_its_revision() {
        for source in SOURCES {
            assert!(revision(source).is_some_and(|r| r >= 1), "{}", source.name);
        }
    }
}
