//! The `merchants` table: shops that create orders with their API key.

use chrono::{DateTime, Utc};
use std::time::Duration;

use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Interval, Nullable, Timestamptz};

use super::interval;
use super::schema::merchants;
use super::sealed::Sealed;
use crate::domain::Channel;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = merchants, check_for_backend(diesel::pg::Pg))]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub api_key_hash: Vec<u8>,
    pub webhook_secret: Sealed,
    pub notify_url: Option<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub previous_webhook_secret: Option<Sealed>,
    pub previous_webhook_secret_expires_at: Option<DateTime<Utc>>,
    /// The numeric merchant id of the old protocols (易支付's `pid`).
    pub pid: i64,
    /// The key of the old protocols' md5 signatures.
    pub md5_key: Sealed,
    /// 易支付 V2: the merchant's RSA public key (base64 of its DER SubjectPublicKeyInfo).
    pub epay_v2_public_key: Option<String>,
    /// epusdt: the channel of an order that names none.
    pub epusdt_channel: Option<Channel>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = merchants)]
pub struct NewMerchant<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub api_key_hash: &'a [u8],
    pub webhook_secret: &'a Sealed,
    pub notify_url: Option<&'a str>,
    pub md5_key: &'a Sealed,
}

pub fn insert(conn: &mut PgConnection, new: &NewMerchant<'_>) -> QueryResult<Merchant> {
    diesel::insert_into(merchants::table)
        .values(new)
        .returning(Merchant::as_returning())
        .get_result(conn)
}

/// Who acts as a merchant: named by id (its request was authenticated another way, such as an
/// old protocol's md5 sign) or by the SHA-256 of the API key its request carries.
#[derive(Debug, Clone, Copy)]
pub enum Creator<'a> {
    Merchant(&'a str),
    ApiKeyHash(&'a [u8]),
}

/// The one test of merchant credentials: an enabled merchant, by id or by key digest. Used by
/// [`find_enabled_creator`] and inside the statement that creates an order, which checks the key
/// in the same round trip.
pub fn is_enabled_creator(
    creator: Creator<'_>,
) -> Box<dyn BoxableExpression<merchants::table, Pg, SqlType = Bool> + '_> {
    match creator {
        Creator::Merchant(id) => Box::new(merchants::enabled.and(merchants::id.eq(id))),
        Creator::ApiKeyHash(hash) => {
            Box::new(merchants::enabled.and(merchants::api_key_hash.eq(hash)))
        }
    }
}

/// The enabled merchant `creator` names, if there is one.
pub fn find_enabled_creator(
    conn: &mut PgConnection,
    creator: Creator<'_>,
) -> QueryResult<Option<Merchant>> {
    merchants::table
        .filter(is_enabled_creator(creator))
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

pub fn find(conn: &mut PgConnection, id: &str) -> QueryResult<Option<Merchant>> {
    merchants::table
        .find(id)
        .select(Merchant::as_select())
        .first(conn)
        .optional()
}

/// Replaces the webhook secret; the old one keeps signing alongside for `overlap`.
pub fn rotate_webhook_secret(
    conn: &mut PgConnection,
    id: &str,
    new_secret: &Sealed,
    overlap: Duration,
) -> QueryResult<Option<Merchant>> {
    diesel::update(merchants::table.find(id))
        .set(
            (
                merchants::previous_webhook_secret.eq(merchants::webhook_secret.nullable()),
                merchants::previous_webhook_secret_expires_at
                    .eq(sql::<Nullable<Timestamptz>>("now() + ")
                        .bind::<Interval, _>(interval(overlap))),
                merchants::webhook_secret.eq(new_secret),
            ),
        )
        .returning(Merchant::as_returning())
        .get_result(conn)
        .optional()
}

/// What an operator may change on a merchant; `None` leaves a field as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = merchants)]
pub struct MerchantChanges<'a> {
    pub name: Option<&'a str>,
    pub enabled: Option<bool>,
    /// `Some(None)` removes the default webhook URL.
    pub notify_url: Option<Option<&'a str>>,
    /// `Some(None)` removes the 易支付 V2 public key.
    pub epay_v2_public_key: Option<Option<&'a str>>,
    /// `Some(None)` removes the default epusdt channel.
    pub epusdt_channel: Option<Option<Channel>>,
}

impl MerchantChanges<'_> {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.enabled.is_none()
            && self.notify_url.is_none()
            && self.epay_v2_public_key.is_none()
            && self.epusdt_channel.is_none()
    }
}

pub fn update(
    conn: &mut PgConnection,
    id: &str,
    changes: &MerchantChanges<'_>,
) -> QueryResult<Option<Merchant>> {
    // An empty change set is not an UPDATE diesel can write: read the row instead.
    if changes.is_empty() {
        return find(conn, id);
    }
    diesel::update(merchants::table.find(id))
        .set(changes)
        .returning(Merchant::as_returning())
        .get_result(conn)
        .optional()
}

/// Replaces the API key's digest: the old key stops working at once.
pub fn replace_api_key(
    conn: &mut PgConnection,
    id: &str,
    hash: &[u8],
) -> QueryResult<Option<Merchant>> {
    diesel::update(merchants::table.find(id))
        .set(merchants::api_key_hash.eq(hash))
        .returning(Merchant::as_returning())
        .get_result(conn)
        .optional()
}

pub fn find_by_pid(conn: &mut PgConnection, pid: i64) -> QueryResult<Option<Merchant>> {
    merchants::table
        .filter(merchants::pid.eq(pid))
        .select(Merchant::as_select())
        .first(conn)
        .optional()
}
