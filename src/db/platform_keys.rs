//! The `platform_keys` table: the platform's own key pairs, the private half sealed.

use diesel::prelude::*;

use super::schema::platform_keys;
use super::sealed::Sealed;

/// A stored key pair: the private half as PKCS#8 PEM (sealed), the public half as base64 DER.
pub struct StoredKeyPair {
    pub private_key: Sealed,
    pub public_key: String,
}

pub fn find(conn: &mut PgConnection, name: &str) -> QueryResult<Option<StoredKeyPair>> {
    platform_keys::table
        .find(name)
        .select((platform_keys::private_key, platform_keys::public_key))
        .first::<(Sealed, String)>(conn)
        .optional()
        .map(|row| {
            row.map(|(private_key, public_key)| StoredKeyPair {
                private_key,
                public_key,
            })
        })
}

/// Stores a key pair under `name` unless one is there already (another instance was first).
pub fn insert_if_absent(
    conn: &mut PgConnection,
    name: &str,
    pair: &StoredKeyPair,
) -> QueryResult<usize> {
    diesel::insert_into(platform_keys::table)
        .values((
            platform_keys::name.eq(name),
            platform_keys::private_key.eq(&pair.private_key),
            platform_keys::public_key.eq(&pair.public_key),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
}
