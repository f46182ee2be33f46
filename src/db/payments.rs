//! The `payments` table: one row per distinct payment a device reported, with what became of it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;

use super::schema::payments;
use crate::domain::{Channel, PaymentResult};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
pub struct Payment {
    pub id: String,
    pub device_id: String,
    pub notification_id: String,
    pub channel: Option<Channel>,
    pub amount: Option<Decimal>,
    pub package: Option<String>,
    pub title: Option<String>,
    pub text: Option<String>,
    pub reported_at: Option<DateTime<Utc>>,
    pub payee_id: Option<String>,
    pub result: PaymentResult,
    pub order_id: Option<String>,
    pub notification_row: i64,
    pub created_at: DateTime<Utc>,
    pub reason: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = payments)]
pub struct NewPayment<'a> {
    pub id: &'a str,
    pub device_id: &'a str,
    pub notification_id: &'a str,
    pub channel: Option<Channel>,
    pub amount: Option<Decimal>,
    pub package: Option<&'a str>,
    pub title: Option<&'a str>,
    pub text: Option<&'a str>,
    pub reported_at: Option<DateTime<Utc>>,
    pub payee_id: Option<&'a str>,
    pub result: PaymentResult,
    pub notification_row: i64,
    pub reason: Option<&'a str>,
}

/// Inserts the payment unless the device already reported this notification id; `None` then.
/// A concurrent insert of the same id waits for the first to commit.
pub fn insert_if_new(
    conn: &mut PgConnection,
    new: &NewPayment<'_>,
) -> QueryResult<Option<Payment>> {
    diesel::insert_into(payments::table)
        .values(new)
        .on_conflict((payments::device_id, payments::notification_id))
        .do_nothing()
        .returning(Payment::as_returning())
        .get_result(conn)
        .optional()
}

pub fn find_by_notification_id(
    conn: &mut PgConnection,
    device_id: &str,
    notification_id: &str,
) -> QueryResult<Payment> {
    payments::table
        .filter(payments::device_id.eq(device_id))
        .filter(payments::notification_id.eq(notification_id))
        .select(Payment::as_select())
        .first(conn)
}

pub fn set_matched(conn: &mut PgConnection, id: &str, order_id: &str) -> QueryResult<Payment> {
    diesel::update(payments::table.find(id))
        .set((
            payments::result.eq(PaymentResult::Matched),
            payments::order_id.eq(order_id),
        ))
        .returning(Payment::as_returning())
        .get_result(conn)
}
