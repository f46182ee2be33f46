//! The `merchants` table: shops that create orders with their API key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::merchants;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = merchants, check_for_backend(diesel::pg::Pg))]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub api_key_hash: Vec<u8>,
    pub webhook_secret: String,
    pub notify_url: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = merchants)]
pub struct NewMerchant<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub api_key_hash: &'a [u8],
    pub webhook_secret: &'a str,
    pub notify_url: Option<&'a str>,
}

pub fn insert(conn: &mut PgConnection, new: &NewMerchant<'_>) -> QueryResult<Merchant> {
    diesel::insert_into(merchants::table)
        .values(new)
        .returning(Merchant::as_returning())
        .get_result(conn)
}

pub fn find_enabled_by_api_key_hash(
    conn: &mut PgConnection,
    hash: &[u8],
) -> QueryResult<Option<Merchant>> {
    merchants::table
        .filter(merchants::api_key_hash.eq(hash))
        .filter(merchants::enabled.eq(true))
        .select(Merchant::as_select())
        .first(conn)
        .optional()
}

pub fn list(conn: &mut PgConnection) -> QueryResult<Vec<Merchant>> {
    merchants::table
        .order((merchants::created_at, merchants::id))
        .select(Merchant::as_select())
        .load(conn)
}
