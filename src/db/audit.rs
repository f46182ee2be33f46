//! The `audit_log` table: an append-only record of every operator action (the database refuses
//! updates and deletes).

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Int8};

use super::schema::audit_log;
use crate::domain::{AuditAction, AuditTarget};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log, check_for_backend(diesel::pg::Pg))]
pub struct AuditEntry {
    pub id: i64,
    pub operator: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub note: Option<String>,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = audit_log)]
pub struct NewAuditEntry<'a> {
    pub operator: &'a str,
    pub action: AuditAction,
    pub target_type: AuditTarget,
    pub target_id: &'a str,
    pub note: Option<&'a str>,
    pub details: serde_json::Value,
}

pub fn insert(conn: &mut PgConnection, entry: &NewAuditEntry<'_>) -> QueryResult<()> {
    diesel::insert_into(audit_log::table)
        .values(entry)
        .execute(conn)
        .map(|_| ())
}

/// Newest first; `before` is the id of the last entry of the previous page.
pub fn list(
    conn: &mut PgConnection,
    target_id: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<AuditEntry>> {
    let mut query = audit_log::table
        .select(AuditEntry::as_select())
        .order(audit_log::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(target) = target_id {
        query = query.filter(audit_log::target_id.eq(target.to_string()));
    }
    if let Some(before) = before {
        query = query.filter(sql::<Bool>("audit_log.id < ").bind::<Int8, _>(before));
    }
    query.load(conn)
}
