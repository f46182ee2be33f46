//! The `checkouts` table: 易支付 orders whose payer has not chosen the channel yet. A checkout
//! holds no amount; choosing creates the order (the same merchant order number), and the
//! checkout remembers it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Interval, Timestamptz};
use rust_decimal::Decimal;

use super::interval;
use super::schema::checkouts;
use crate::domain::{MerchantId, OrderProtocol};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = checkouts, check_for_backend(diesel::pg::Pg))]
pub struct Checkout {
    pub id: String,
    pub merchant_id: String,
    pub merchant_order_id: String,
    pub request_fingerprint: Vec<u8>,
    pub protocol: OrderProtocol,
    pub amount: Decimal,
    pub subject: Option<String>,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    pub compat: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The order the payer's choice created.
    pub order_id: Option<String>,
}

/// A checkout to store.
pub struct NewCheckout<'a> {
    pub id: &'a str,
    pub merchant_id: &'a str,
    pub merchant_order_id: &'a str,
    pub request_fingerprint: &'a [u8],
    pub protocol: OrderProtocol,
    pub amount: Decimal,
    pub subject: Option<&'a str>,
    pub notify_url: Option<&'a str>,
    pub return_url: Option<&'a str>,
    pub compat: Option<&'a serde_json::Value>,
    /// From now (the database clock).
    pub expires_in: Duration,
}

/// Stores the checkout unless the merchant has one with that order number; returns the stored
/// one either way (the caller compares ids and fingerprints).
pub fn insert_or_find(conn: &mut PgConnection, new: &NewCheckout<'_>) -> QueryResult<Checkout> {
    diesel::insert_into(checkouts::table)
        .values((
            checkouts::id.eq(new.id),
            checkouts::merchant_id.eq(new.merchant_id),
            checkouts::merchant_order_id.eq(new.merchant_order_id),
            checkouts::request_fingerprint.eq(new.request_fingerprint),
            checkouts::protocol.eq(new.protocol),
            checkouts::amount.eq(new.amount),
            checkouts::subject.eq(new.subject),
            checkouts::notify_url.eq(new.notify_url),
            checkouts::return_url.eq(new.return_url),
            checkouts::compat.eq(new.compat),
            checkouts::expires_at
                .eq(sql::<Timestamptz>("now() + ").bind::<Interval, _>(interval(new.expires_in))),
        ))
        .on_conflict((checkouts::merchant_id, checkouts::merchant_order_id))
        .do_nothing()
        .execute(conn)?;
    checkouts::table
        .filter(checkouts::merchant_id.eq(new.merchant_id))
        .filter(checkouts::merchant_order_id.eq(new.merchant_order_id))
        .select(Checkout::as_select())
        .first(conn)
}

/// The checkout and whether it has expired (by the database clock).
pub fn find_with_expiry(
    conn: &mut PgConnection,
    id: &str,
) -> QueryResult<Option<(Checkout, bool)>> {
    checkouts::table
        .find(id)
        .select((
            Checkout::as_select(),
            sql::<Bool>("(checkouts.expires_at <= now())"),
        ))
        .first(conn)
        .optional()
}

pub fn find_by_merchant_order_id(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    merchant_order_id: &str,
) -> QueryResult<Option<Checkout>> {
    checkouts::table
        .filter(checkouts::merchant_id.eq(merchant_id.as_str()))
        .filter(checkouts::merchant_order_id.eq(merchant_order_id))
        .select(Checkout::as_select())
        .first(conn)
        .optional()
}

/// Records the order the payer's choice created (once).
pub fn link_order(conn: &mut PgConnection, id: &str, order_id: &str) -> QueryResult<usize> {
    diesel::update(
        checkouts::table
            .find(id)
            .filter(checkouts::order_id.is_null()),
    )
    .set(checkouts::order_id.eq(order_id))
    .execute(conn)
}
