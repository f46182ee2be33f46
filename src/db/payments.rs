//! The `payments` table: one row per distinct payment a device reported, with what became of it.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Interval, Nullable, Text, Timestamptz};
use rust_decimal::Decimal;

use super::prepared::KeepPrepared;
use super::schema::payments;
use crate::domain::{Channel, PaymentResult};
use crate::domain::{DeviceId, OrderId, PaymentId};

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
    /// The first report of the same payment, when this one is a `duplicate` of it.
    pub duplicate_of: Option<String>,
    /// Every payment amount an `ambiguous` text mentions.
    pub amounts_read: Option<Vec<Option<Decimal>>>,
    /// Until when this payment, which no order owed, keeps its amount from new orders.
    pub holds_amount_until: Option<DateTime<Utc>>,
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
    pub amounts_read: Option<Vec<Option<Decimal>>>,
    /// The order it paid (`result` is then `matched`).
    pub order_id: Option<&'a str>,
    pub duplicate_of: Option<&'a str>,
}

/// Inserts the payment unless the device already reported this notification id (`None` then),
/// and links the stored notification it was read from (`notification_row`) to it, in one
/// statement. A concurrent insert of the same id waits for the first to commit. With
/// `hold_amount`, the payment keeps its amount from new orders on its payee for that long from
/// now (the database clock): one that paid nothing, whose copy may still arrive.
pub fn insert_if_new(
    conn: &mut PgConnection,
    new: &NewPayment<'_>,
    hold_amount: Option<std::time::Duration>,
) -> QueryResult<Option<Payment>> {
    let holds_until = sql::<Nullable<Timestamptz>>("now() + ")
        .bind::<Nullable<Interval>, _>(hold_amount.map(super::interval));
    let insert = diesel::insert_into(payments::table)
        .values((new, payments::holds_amount_until.eq(holds_until)))
        .on_conflict((payments::device_id, payments::notification_id))
        .do_nothing()
        .returning(Payment::as_returning());
    LinkingItsNotification(insert)
        .prepared()
        .get_result(conn)
        .optional()
}

/// An insert of payments returning them, which also links each one's stored notification:
/// `WITH p AS (<insert>), linked AS (UPDATE notifications …) SELECT p.* FROM p` (`p.*` is the
/// insert's own column list).
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct LinkingItsNotification<Q>(Q);

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>>
    diesel::query_builder::QueryFragment<diesel::pg::Pg> for LinkingItsNotification<Q>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("WITH p AS (");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(
            "), linked AS (UPDATE notifications SET payment_id = p.id FROM p \
             WHERE notifications.id = p.notification_row RETURNING 1) SELECT p.* FROM p",
        );
        Ok(())
    }
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for LinkingItsNotification<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for LinkingItsNotification<Q> {}

pub fn find_by_notification_id(
    conn: &mut PgConnection,
    device_id: DeviceId<'_>,
    notification_id: &str,
) -> QueryResult<Payment> {
    payments::table
        .filter(payments::device_id.eq(device_id.as_str()))
        .filter(payments::notification_id.eq(notification_id))
        .select(Payment::as_select())
        .first(conn)
}

pub fn find(conn: &mut PgConnection, id: &str) -> QueryResult<Option<Payment>> {
    payments::table
        .find(id)
        .select(Payment::as_select())
        .first(conn)
        .optional()
}

/// How many payments that paid nothing (kept for the operator) each result has, received within
/// `within`.
pub fn waiting_by_result(
    conn: &mut PgConnection,
    within: std::time::Duration,
) -> QueryResult<Vec<(PaymentResult, i64)>> {
    payments::table
        .filter(payments::order_id.is_null())
        .filter(payments::result.ne(PaymentResult::Matched))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("payments.created_at > now() - ")
                .bind::<diesel::sql_types::Interval, _>(super::interval(within)),
        )
        .group_by(payments::result)
        .select((payments::result, diesel::dsl::count_star()))
        .load(conn)
}

/// The order paid by a payment or by any other report of it: the first report `first` and every
/// payment kept as a `duplicate` of it.
pub fn order_paid_by_reports_of(
    conn: &mut PgConnection,
    first: &str,
) -> QueryResult<Option<String>> {
    payments::table
        .filter(payments::id.eq(first).or(payments::duplicate_of.eq(first)))
        .filter(payments::order_id.is_not_null())
        .select(payments::order_id)
        .first::<Option<String>>(conn)
        .optional()
        .map(Option::flatten)
}

/// Another payment that paid an order and was reported by `id`'s device with the same
/// same-payment key as `id`'s report, arriving within `window` of it (any time with `None`):
/// (that payment, the order it paid). Reports of one payment recorded apart (one withheld from
/// matching, one matched) share a key but not a `duplicate_of`.
pub fn order_paid_by_same_payment(
    conn: &mut PgConnection,
    id: &str,
    window: Option<std::time::Duration>,
) -> QueryResult<Option<(String, String)>> {
    order_paid_by_report_of(
        conn,
        "SELECT p.id, p.order_id \
           FROM payments me \
           JOIN notifications mine ON mine.id = me.notification_row \
           JOIN notifications n ON n.device_id = mine.device_id \
                               AND n.same_payment_key = mine.same_payment_key \
           JOIN payments p ON p.notification_row = n.id \
          WHERE me.id = $1 AND p.id <> me.id AND p.order_id IS NOT NULL \
            AND ($2::interval IS NULL \
                 OR n.received_at BETWEEN mine.received_at - $2 AND mine.received_at + $2) \
          ORDER BY n.received_at \
          LIMIT 1",
        id,
        window,
    )
}

/// Another payment of `id`'s device that paid an order, of the same channel and amount (a
/// channel or amount either report lacks counts as the same), whose report arrived within
/// `hold` of `id`'s, before or after: (that payment, the order it paid). Another app's copy of
/// one payment shares no key with the first (`order_paid_by_same_payment` cannot see it) and is
/// told only by this. The reports are read by arrival through the index of those not compacted
/// yet; compacted ones (older than a day at least) only when `id`'s is that old.
pub fn order_paid_by_payment_nearby(
    conn: &mut PgConnection,
    id: &str,
    hold: std::time::Duration,
) -> QueryResult<Option<(String, String)>> {
    order_paid_by_report_of(
        conn,
        "WITH mine AS ( \
             SELECT me.id, me.device_id, me.channel, me.amount, n.received_at \
               FROM payments me JOIN notifications n ON n.id = me.notification_row \
              WHERE me.id = $1), \
         near AS ( \
             SELECT n.id, n.received_at FROM mine \
               JOIN notifications n ON n.compacted_at IS NULL \
                                   AND n.received_at BETWEEN mine.received_at - $2 \
                                                         AND mine.received_at + $2 \
                                   AND n.device_id = mine.device_id \
             UNION ALL \
             SELECT n.id, n.received_at FROM mine \
               JOIN notifications n ON n.compacted_at IS NOT NULL \
                                   AND n.received_at BETWEEN mine.received_at - $2 \
                                                         AND mine.received_at + $2 \
                                   AND n.device_id = mine.device_id \
              WHERE mine.received_at - $2 < now() - interval '1 day') \
         SELECT p.id, p.order_id \
           FROM mine, near JOIN payments p ON p.notification_row = near.id \
          WHERE p.id <> mine.id AND p.order_id IS NOT NULL AND p.device_id = mine.device_id \
            AND (p.channel = mine.channel OR p.channel IS NULL OR mine.channel IS NULL) \
            AND (p.amount = mine.amount OR p.amount IS NULL OR mine.amount IS NULL) \
          ORDER BY near.received_at \
          LIMIT 1",
        id,
        Some(hold),
    )
}

/// Runs `sql`, a read of (payment, the order it paid) for the payment `$1` and the interval
/// `$2`.
fn order_paid_by_report_of(
    conn: &mut PgConnection,
    sql: &str,
    id: &str,
    window: Option<std::time::Duration>,
) -> QueryResult<Option<(String, String)>> {
    #[derive(QueryableByName)]
    struct Paid {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        order_id: String,
    }
    diesel::sql_query(sql)
        .bind::<diesel::sql_types::Text, _>(id)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Interval>, _>(
            window.map(super::interval),
        )
        .get_result::<Paid>(conn)
        .optional()
        .map(|paid| paid.map(|p| (p.id, p.order_id)))
}

/// A notification of `id`'s device that arrived within `hold` of `id`'s report, before or after,
/// and is not decided yet (its request died; the sweep finishes it): its row.
pub fn undecided_report_nearby(
    conn: &mut PgConnection,
    id: &str,
    hold: std::time::Duration,
) -> QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    // The conditions of `notifications_unprocessed_idx`, so that the range is read through it.
    diesel::sql_query(
        "SELECT n.id \
           FROM payments me \
           JOIN notifications mine ON mine.id = me.notification_row \
           JOIN notifications n ON n.auth_result = 'ok' AND n.payment_id IS NULL \
                               AND n.rejection IS NULL \
                               AND n.received_at BETWEEN mine.received_at - $2 \
                                                     AND mine.received_at + $2 \
                               AND n.device_id = me.device_id AND n.id <> mine.id \
          WHERE me.id = $1 \
          ORDER BY n.received_at \
          LIMIT 1",
    )
    .bind::<diesel::sql_types::Text, _>(id)
    .bind::<diesel::sql_types::Interval, _>(super::interval(hold))
    .get_result::<Row>(conn)
    .optional()
    .map(|row| row.map(|r| r.id))
}

/// Locks the reports of `id`'s payment (its report's device and same-payment key) until the
/// transaction ends, as matching locks them (`solopay_lock_same_payment`, `src/db/sql/
/// matching.sql`); nothing when its report has no key.
pub fn lock_reports_of_same_payment(conn: &mut PgConnection, id: &str) -> QueryResult<()> {
    diesel::sql_query(
        "SELECT solopay_lock_same_payment(n.device_id, n.same_payment_key) \
           FROM payments p JOIN notifications n ON n.id = p.notification_row \
          WHERE p.id = $1 AND n.device_id IS NOT NULL AND n.same_payment_key IS NOT NULL",
    )
    .bind::<diesel::sql_types::Text, _>(id)
    .execute(conn)
    .map(|_| ())
}

/// Locks a payment that the operator assigns. FOR UPDATE (not NO KEY UPDATE, as elsewhere):
/// assigning writes `order_id`, a unique key, so a weaker lock would be upgraded mid-transaction.
pub fn lock(conn: &mut PgConnection, id: &str) -> QueryResult<Option<Payment>> {
    payments::table
        .find(id)
        .select(Payment::as_select())
        .for_update()
        .first(conn)
        .optional()
}

/// The operator's decision: this payment pays that order.
pub fn assign(
    conn: &mut PgConnection,
    id: PaymentId<'_>,
    order_id: OrderId<'_>,
) -> QueryResult<Payment> {
    diesel::update(payments::table.find(id.as_str()))
        .set((
            payments::result.eq(PaymentResult::Matched),
            payments::order_id.eq(order_id.as_str()),
        ))
        .returning(Payment::as_returning())
        .get_result(conn)
}

/// The payment that paid an order, if a payment did.
pub fn of_order(conn: &mut PgConnection, order_id: &str) -> QueryResult<Vec<Payment>> {
    payments::table
        .filter(payments::order_id.eq(order_id))
        .select(Payment::as_select())
        .load(conn)
}

/// Payments that paid nothing, to the same payee and of the same amount: what an operator
/// looks at to answer "did this person pay?".
pub fn unmatched_like(
    conn: &mut PgConnection,
    payee_id: &str,
    amount: Decimal,
) -> QueryResult<Vec<Payment>> {
    payments::table
        .filter(payments::payee_id.eq(payee_id))
        .filter(payments::amount.eq(amount))
        .filter(payments::result.ne(PaymentResult::Matched))
        .order(payments::created_at.desc())
        .limit(20)
        .select(Payment::as_select())
        .load(conn)
}

/// Filters of the operator's payment list.
#[derive(Debug, Default)]
pub struct PaymentFilter {
    pub result: Option<PaymentResult>,
    pub device_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub starting_after: Option<String>,
    pub limit: i64,
}

/// Newest first (receipt, then id).
pub fn list(conn: &mut PgConnection, filter: &PaymentFilter) -> QueryResult<Vec<Payment>> {
    let mut query = payments::table
        .select(Payment::as_select())
        .order((payments::created_at.desc(), payments::id.desc()))
        .limit(filter.limit)
        .into_boxed();
    if let Some(result) = filter.result {
        query = query.filter(payments::result.eq(result));
    }
    if let Some(device_id) = &filter.device_id {
        query = query.filter(payments::device_id.eq(device_id.clone()));
    }
    if let Some(from) = filter.from {
        query = query.filter(payments::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(payments::created_at.lt(to));
    }
    if let Some(after) = &filter.starting_after {
        query = query.filter(
            sql::<Bool>(
                "(payments.created_at, payments.id) < (SELECT created_at, id FROM payments WHERE id = ",
            )
            .bind::<Text, _>(after.clone())
            .sql(")"),
        );
    }
    query.load(conn)
}

/// When the last payment with this result was received.
pub fn latest_received(
    conn: &mut PgConnection,
    result: PaymentResult,
) -> QueryResult<Option<DateTime<Utc>>> {
    payments::table
        .filter(payments::result.eq(result))
        .select(diesel::dsl::max(payments::created_at))
        .first(conn)
}
