//! The `operator_tokens` table: hashes of generated operator tokens, by name.

use diesel::prelude::*;

use super::schema::operator_tokens;

/// The name of the token that `serve` generates at first start.
pub const GENERATED: &str = "generated";

/// Stores a token hash under `name` unless a token of that name exists; true when stored.
pub fn insert_if_absent(conn: &mut PgConnection, name: &str, hash: &[u8]) -> QueryResult<bool> {
    diesel::insert_into(operator_tokens::table)
        .values((
            operator_tokens::name.eq(name),
            operator_tokens::token_hash.eq(hash),
        ))
        .on_conflict(operator_tokens::name)
        .do_nothing()
        .execute(conn)
        .map(|rows| rows == 1)
}

/// Replaces (or creates) the token stored under `name`.
pub fn replace(conn: &mut PgConnection, name: &str, hash: &[u8]) -> QueryResult<()> {
    diesel::insert_into(operator_tokens::table)
        .values((
            operator_tokens::name.eq(name),
            operator_tokens::token_hash.eq(hash),
        ))
        .on_conflict(operator_tokens::name)
        .do_update()
        .set(operator_tokens::token_hash.eq(hash))
        .execute(conn)
        .map(|_| ())
}

/// The name of the token with this hash, if any.
pub fn find_name_by_hash(conn: &mut PgConnection, hash: &[u8]) -> QueryResult<Option<String>> {
    operator_tokens::table
        .filter(operator_tokens::token_hash.eq(hash))
        .select(operator_tokens::name)
        .first(conn)
        .optional()
}
