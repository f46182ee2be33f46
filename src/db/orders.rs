//! The `orders` table: what a merchant is owed, on which payee, for which payable amount, and the
//! state transitions. Every time comparison here uses the database clock (`now()`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Bool, Bytea, Int4, Interval, Jsonb, Nullable, Numeric, Text, Timestamptz};
use rust_decimal::Decimal;

use super::error::SqlRefusal;
use super::interval;
use super::prepared::KeepPrepared;
use super::schema::{merchants, orders};
use super::{StorageError, StorageFailure};
use crate::domain::{Channel, OrderProtocol, OrderStatus};
use crate::domain::{MerchantId, OrderId};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Identifiable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub struct Order {
    pub id: String,
    pub merchant_id: String,
    pub merchant_order_id: String,
    pub request_fingerprint: Vec<u8>,
    pub status: OrderStatus,
    pub channel: Channel,
    pub amount: Decimal,
    pub payable_amount: Decimal,
    pub payee_id: String,
    pub qr_code: String,
    pub qr_fixed_amount: bool,
    pub subject: Option<String>,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub reserved_until: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub paid_late: bool,
    pub closed_at: Option<DateTime<Utc>>,
    pub protocol: OrderProtocol,
    pub compat: Option<serde_json::Value>,
}

/// Everything `solopay_create_order` needs to reserve a payable amount and insert the order.
#[derive(Debug)]
pub struct AllocationRequest<'a> {
    pub order_id: &'a str,
    pub creator: Creator<'a>,
    pub merchant_order_id: &'a str,
    pub request_fingerprint: &'a [u8],
    pub channel: Channel,
    pub amount: Decimal,
    pub expires_in_secs: i32,
    pub subject: Option<&'a str>,
    pub notify_url: Option<&'a str>,
    pub return_url: Option<&'a str>,
    pub metadata: Option<&'a serde_json::Value>,
    pub grace_secs: i32,
    pub max_offset_steps: i32,
    /// `0.01` (offsets up) or `-0.01` (down).
    pub step: Decimal,
    pub offline_after_secs: i32,
    pub protocol: OrderProtocol,
    pub compat: Option<&'a serde_json::Value>,
}

pub use super::merchants::Creator;
use super::merchants::is_enabled_creator;

/// What creating an order did: the one outcome type of order creation, from storage to HTTP.
#[derive(Debug)]
pub enum Creation {
    Created(Order),
    /// The same request was made before (the same merchant_order_id and parameters): its
    /// order, as stored.
    Repeated(Order),
}

impl Creation {
    /// The order, new or repeated (the old protocols answer both alike).
    pub fn into_order(self) -> Order {
        match self {
            Creation::Created(order) | Creation::Repeated(order) => order,
        }
    }
}

/// Why no order was created.
#[derive(Debug, thiserror::Error)]
pub enum NotCreated {
    #[error("no payee of the channel is enabled with an online device")]
    NoPayee,
    #[error("every candidate amount of every payee of the channel is taken")]
    AmountsExhausted,
    /// No enabled merchant is the creator.
    #[error("no enabled merchant is the creator")]
    UnknownCreator,
    /// The merchant used the merchant_order_id before, with other parameters.
    #[error("the merchant_order_id was used before with other parameters")]
    MerchantOrderIdReused,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl StorageFailure for NotCreated {
    fn storage_error(&self) -> Option<&StorageError> {
        match self {
            NotCreated::Storage(error) => Some(error),
            _ => None,
        }
    }
}

/// Reserves a payable amount and inserts the order in one server-side call
/// (`solopay_create_order`, in src/db/sql/allocation.sql), and returns the order; or the order
/// an identical earlier request created. Run it on its own, outside a transaction: the payee
/// lock it takes is then held only through the call and the server's commit.
pub fn create(
    conn: &mut PgConnection,
    req: &AllocationRequest<'_>,
) -> Result<Creation, NotCreated> {
    let statement = CreateOrder {
        request: req,
        creator_test: is_enabled_creator(req.creator),
    };
    match statement.get_result::<Order>(conn) {
        Ok(order) if order.id == req.order_id => Ok(Creation::Created(order)),
        Ok(order) if order.request_fingerprint == req.request_fingerprint => {
            Ok(Creation::Repeated(order))
        }
        Ok(_) => Err(NotCreated::MerchantOrderIdReused),
        Err(diesel::result::Error::NotFound) => Err(NotCreated::UnknownCreator),
        Err(error) => Err(match SqlRefusal::of(&error) {
            Some(SqlRefusal::NoPayee) => NotCreated::NoPayee,
            Some(SqlRefusal::AmountsExhausted) => NotCreated::AmountsExhausted,
            _ => NotCreated::Storage(error.into()),
        }),
    }
}

/// `SELECT <the columns of Order> FROM merchants, solopay_create_order(…, merchants.id, …) o
/// WHERE <the merchant is the enabled creator>` ([`is_enabled_creator`]) as a query of its own, which diesel keeps prepared on each pooled
/// connection (by its SQL text; a `sql_query` is parsed and planned at every call). No row: the
/// creator is not an enabled merchant, and the function was not called.
struct CreateOrder<'q> {
    request: &'q AllocationRequest<'q>,
    creator_test: Box<dyn BoxableExpression<merchants::table, Pg, SqlType = Bool> + 'q>,
}

/// The columns [`Order`] reads, in its order.
const ORDER_COLUMNS: &str = "o.id, o.merchant_id, o.merchant_order_id, o.request_fingerprint, \
     o.status, o.channel, o.amount, o.payable_amount, o.payee_id, o.qr_code, o.qr_fixed_amount, \
     o.subject, o.notify_url, o.return_url, o.metadata, o.created_at, o.expires_at, \
     o.reserved_until, o.paid_at, o.paid_late, o.closed_at, o.protocol, o.compat";

impl QueryId for CreateOrder<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for CreateOrder<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for CreateOrder<'_> {}

impl QueryFragment<Pg> for CreateOrder<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let req = self.request;
        // The columns by name: a prepared `SELECT *` of a table-typed function fails ("cached
        // plan must not change result type") once a later migration adds a column.
        out.push_sql("SELECT ");
        out.push_sql(ORDER_COLUMNS);
        out.push_sql(" FROM merchants CROSS JOIN LATERAL solopay_create_order(");
        out.push_bind_param::<Text, _>(&req.order_id)?;
        out.push_sql(", merchants.id, ");
        out.push_bind_param::<Text, _>(&req.merchant_order_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Bytea, _>(&req.request_fingerprint)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&req.channel)?;
        out.push_sql(", ");
        out.push_bind_param::<Numeric, _>(&req.amount)?;
        out.push_sql(", ");
        out.push_bind_param::<Int4, _>(&req.expires_in_secs)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&req.subject)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&req.notify_url)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&req.return_url)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Jsonb>, _>(&req.metadata)?;
        out.push_sql(", ");
        out.push_bind_param::<Int4, _>(&req.grace_secs)?;
        out.push_sql(", ");
        out.push_bind_param::<Int4, _>(&req.max_offset_steps)?;
        out.push_sql(", ");
        out.push_bind_param::<Numeric, _>(&req.step)?;
        out.push_sql(", ");
        out.push_bind_param::<Int4, _>(&req.offline_after_secs)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&req.protocol)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Jsonb>, _>(&req.compat)?;
        out.push_sql(") o WHERE ");
        // The function runs for the enabled creator only: the one merchant test there is.
        self.creator_test.walk_ast(out.reborrow())
    }
}

/// Pending orders (for `/metrics`), through the index of pending expiries: as many as the last
/// minutes made. The status is written in the statement, not bound: a plan made for any status
/// could not use that index (its predicate is `status = 'pending'`).
pub fn count_pending(conn: &mut PgConnection) -> QueryResult<i64> {
    orders::table
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "status = 'pending'",
        ))
        .count()
        .get_result(conn)
}

/// How many orders there are of each status (for `/metrics`): reads the whole table (about a
/// second at 10 million orders).
pub fn count_by_status(conn: &mut PgConnection) -> QueryResult<Vec<(String, i64)>> {
    orders::table
        .group_by(orders::status)
        .select((orders::status, diesel::dsl::count_star()))
        .load(conn)
}

pub fn find(conn: &mut PgConnection, id: &str) -> QueryResult<Option<Order>> {
    orders::table
        .find(id)
        .select(Order::as_select())
        .first(conn)
        .optional()
}

/// The order and whether it is pending past its expiry (by the database clock).
pub fn find_with_overdue(conn: &mut PgConnection, id: &str) -> QueryResult<Option<(Order, bool)>> {
    orders::table
        .find(id)
        .select((Order::as_select(), overdue()))
        .first(conn)
        .optional()
}

pub fn find_by_merchant_order_id(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    merchant_order_id: &str,
) -> QueryResult<Option<Order>> {
    orders::table
        .filter(orders::merchant_id.eq(merchant_id.as_str()))
        .filter(orders::merchant_order_id.eq(merchant_order_id))
        .select(Order::as_select())
        .first(conn)
        .optional()
}

/// Locks a merchant's order for a state change; with whether it is overdue.
pub fn lock_for_merchant(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    id: OrderId<'_>,
) -> QueryResult<Option<(Order, bool)>> {
    orders::table
        .find(id.as_str())
        .filter(orders::merchant_id.eq(merchant_id.as_str()))
        .select((Order::as_select(), overdue()))
        .for_no_key_update()
        .first(conn)
        .optional()
}

fn overdue() -> diesel::expression::SqlLiteral<Bool> {
    sql::<Bool>("(orders.status = 'pending' AND orders.expires_at <= now())")
}

/// Which overdue pending orders an expiry pass may take.
#[derive(Debug, Clone, Copy)]
pub enum ExpiryScope<'a> {
    /// Any order (the background sweep).
    All,
    /// One order (a read, a close or a payment that finds it overdue).
    Order(&'a str),
}

/// Marks pending orders past `expires_at` as `expired` and returns them. Rows another
/// transaction holds are skipped, so this never waits; the reservation (`reserved_until`) does
/// not change, so the amount stays reserved through the grace.
pub fn expire_overdue(
    conn: &mut PgConnection,
    scope: ExpiryScope<'_>,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    let id = match scope {
        ExpiryScope::All => None,
        ExpiryScope::Order(id) => Some(id),
    };
    diesel::sql_query(
        "UPDATE orders SET status = 'expired' \
         WHERE id IN (SELECT id FROM orders \
                      WHERE status = 'pending' AND expires_at <= now() \
                        AND ($1::text IS NULL OR id = $1) \
                      ORDER BY expires_at \
                      LIMIT $2 \
                      FOR NO KEY UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<Nullable<Text>, _>(id)
    .bind::<diesel::sql_types::Int8, _>(limit)
    .load(conn)
}

/// Expires one pending order past its expiry for a reader (in the caller's transaction),
/// waiting up to `wait` for a
/// transaction that holds it (the sweep expiring it, a payment paying it) so that the reader
/// sees what that transaction decided, not a stale `pending`. Returns it if this call expired it;
/// `None` when it was not pending past its expiry once the lock was free, or the wait ran out.
pub fn expire_for_reader(
    conn: &mut PgConnection,
    id: &str,
    wait: Duration,
) -> QueryResult<Option<Order>> {
    // Part of the caller's transaction: the shorter lock wait lasts until it ends.
    diesel::sql_query(format!(
        "SET LOCAL lock_timeout = {}",
        wait.as_millis().max(1)
    ))
    .execute(conn)?;
    diesel::sql_query(
        "UPDATE orders SET status = 'expired' \
         WHERE id = $1 AND status = 'pending' AND expires_at <= now() RETURNING *",
    )
    .bind::<Text, _>(id)
    .get_result::<Order>(conn)
    .optional()
}

/// → `paid` (from `pending`, `expired`, or `closed` by the operator's hand), `paid_late` when
/// it had expired or is past its expiry. The amount stays reserved for `grace` from now, like an
/// expired or closed order's, so that a second report of the same payment finds this order paid
/// instead of a new order owing the amount; the reservation never reaches into that of a later
/// order of the same payee and amount (a payment finished late, after the reservation ended).
/// A released order (paid by the operator's hand long after) is not held again: its amount may
/// belong to another order by now, and a copy of its payment is held by the payment itself.
pub fn mark_paid(
    conn: &mut PgConnection,
    id: &str,
    arrived_at: Option<DateTime<Utc>>,
    grace: Duration,
) -> QueryResult<Order> {
    // Late when the order expired (`expired` → `paid` is a late payment), or when the payment
    // arrived after the expiry (paid by hand, no arrival: now).
    let late = sql::<Bool>("(orders.status = 'expired' OR orders.expires_at <= coalesce(")
        .bind::<Nullable<Timestamptz>, _>(arrived_at)
        .sql(", now()))");
    diesel::update(orders::table.find(id))
        .set((
            orders::status.eq(OrderStatus::Paid),
            orders::paid_at.eq(sql::<Nullable<Timestamptz>>("now()")),
            orders::paid_late.eq(late),
            orders::reserved_until.eq(sql::<Timestamptz>(
                "CASE WHEN NOT orders.holds_amount THEN orders.reserved_until \
                      ELSE greatest(orders.created_at, least(now() + ",
            )
            .bind::<Interval, _>(interval(grace))
            .sql(
                ", (SELECT coalesce(min(later.created_at), 'infinity') FROM orders later \
                     WHERE later.payee_id = orders.payee_id \
                       AND later.payable_amount = orders.payable_amount \
                       AND later.created_at > orders.created_at \
                       AND later.holds_amount))) END",
            )),
        ))
        .returning(Order::as_returning())
        .prepared()
        .get_result(conn)
}

/// How long after its reservation ended an order keeps holding its amount: longer than the
/// largest duplicate window (`SOLOPAY_DUPLICATE_WINDOW_SECS` is at most 3600), the furthest
/// before its arrival a payment is matched as of.
pub const RELEASE_AFTER: Duration = Duration::from_secs(2 * 3600);
/// A notification left unprocessed longer than this holds no order's amount for it: it is
/// matched against the orders that still hold (a payment that finds none is kept for the
/// operator), and one that can never be processed does not keep its payees' orders holding for
/// ever.
pub const RELEASE_WAITS_FOR_STRANDED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Releases up to `limit` orders whose reservation ended [`RELEASE_AFTER`] before the earliest
/// time a payment on their payee may still be matched as of: now, or the arrival of the oldest
/// notification of the payee's device still waiting for the sweep (within
/// [`RELEASE_WAITS_FOR_STRANDED`]). Released orders leave the partial indexes that allocation
/// and matching read (migration 000110), so these stay the size of the last hours' orders.
///
/// Nothing changes for allocation or matching: a released order's reservation ended before any
/// time they ask about, and a released order never holds again. (A copy of a notification first
/// reported, and refused, longer ago than that is matched as of then: it now finds no holder and
/// is kept for the operator, where it paid the order that held the amount back then.) The
/// orders of one payee and amount are released in the order they were made: a later one waits
/// while an earlier one holds (say, locked by a payment that will extend its hold), so a paid
/// order's hold is always capped by the next order of its amount, which still holds. Rows
/// another transaction holds are skipped. Returns how many it released.
pub fn release_ended_holds(conn: &mut PgConnection, limit: i64) -> QueryResult<usize> {
    // `due`: the candidates, locked (those another transaction holds are skipped), read through
    // the index of holding orders by reservation (`IS TRUE`: its predicate, see migration
    // 000110); materialized, so locked once. One is released when no earlier order of its payee
    // and amount holds, other than those released with it (an earlier one ends first, so it is
    // a candidate unless it was skipped).
    diesel::sql_query(
        "WITH due AS MATERIALIZED ( \
             SELECT o.id, o.payee_id, o.payable_amount, o.created_at FROM orders o \
              WHERE o.holds_amount IS TRUE AND o.reserved_until < now() - $3 \
                AND NOT EXISTS ( \
                    SELECT 1 FROM notifications n JOIN payees p ON p.device_id = n.device_id \
                     WHERE p.id = o.payee_id \
                       AND n.auth_result = 'ok' AND n.payment_id IS NULL \
                       AND n.rejection IS NULL AND n.received_at > now() - $2 \
                       AND o.reserved_until >= n.received_at - $3) \
              ORDER BY o.reserved_until \
              LIMIT $1 \
              FOR NO KEY UPDATE OF o SKIP LOCKED) \
         UPDATE orders SET holds_amount = false \
           FROM due \
          WHERE orders.id = due.id \
            AND orders.holds_amount AND orders.reserved_until < now() - $3 \
            AND NOT EXISTS ( \
                SELECT 1 FROM orders e \
                 WHERE e.holds_amount AND e.payee_id = due.payee_id \
                   AND e.payable_amount = due.payable_amount \
                   AND e.created_at < due.created_at \
                   AND e.id NOT IN (SELECT id FROM due))",
    )
    .bind::<diesel::sql_types::Int8, _>(limit)
    .bind::<Interval, _>(interval(RELEASE_WAITS_FOR_STRANDED))
    .bind::<Interval, _>(interval(RELEASE_AFTER))
    .execute(conn)
}

/// `pending` → `closed`; the amount stays reserved for the grace, as a payer may still pay it.
pub fn mark_closed(conn: &mut PgConnection, id: &str, grace: Duration) -> QueryResult<Order> {
    diesel::update(orders::table.find(id))
        .set((
            orders::status.eq(OrderStatus::Closed),
            orders::closed_at.eq(sql::<Nullable<Timestamptz>>("now()")),
            orders::reserved_until.eq(sql::<Timestamptz>(
                "greatest(least(orders.reserved_until, now() + ",
            )
            .bind::<Interval, _>(interval(grace))
            .sql("), orders.created_at)")),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
}

/// Locks any order for an operator's change; with whether it is pending past its expiry.
pub fn lock(conn: &mut PgConnection, id: &str) -> QueryResult<Option<(Order, bool)>> {
    orders::table
        .find(id)
        .select((Order::as_select(), overdue()))
        .for_no_key_update()
        .first(conn)
        .optional()
}

/// Filters of the operator's order list.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub merchant_id: Option<String>,
    pub channel: Option<Channel>,
    pub payee_id: Option<String>,
    pub merchant_order_id: Option<String>,
    pub amount: Option<Decimal>,
    pub payable_amount: Option<Decimal>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub paid_from: Option<DateTime<Utc>>,
    pub paid_to: Option<DateTime<Utc>>,
    /// The last order of the previous page: the next page continues after it.
    pub starting_after: Option<String>,
    pub limit: i64,
}

/// Newest first (creation time, then id), so that pages neither repeat nor skip an order while
/// new ones arrive: those come before the first page.
pub fn list(conn: &mut PgConnection, filter: &OrderFilter) -> QueryResult<Vec<Order>> {
    let mut query = orders::table
        .select(Order::as_select())
        .order((orders::created_at.desc(), orders::id.desc()))
        .limit(filter.limit)
        .into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(orders::status.eq(status));
    }
    if let Some(merchant_id) = &filter.merchant_id {
        query = query.filter(orders::merchant_id.eq(merchant_id.clone()));
    }
    if let Some(channel) = filter.channel {
        query = query.filter(orders::channel.eq(channel));
    }
    if let Some(payee_id) = &filter.payee_id {
        query = query.filter(orders::payee_id.eq(payee_id.clone()));
    }
    if let Some(merchant_order_id) = &filter.merchant_order_id {
        query = query.filter(orders::merchant_order_id.eq(merchant_order_id.clone()));
    }
    if let Some(amount) = filter.amount {
        query = query.filter(orders::amount.eq(amount));
    }
    if let Some(amount) = filter.payable_amount {
        query = query.filter(orders::payable_amount.eq(amount));
    }
    if let Some(from) = filter.created_from {
        query = query.filter(orders::created_at.ge(from));
    }
    if let Some(to) = filter.created_to {
        query = query.filter(orders::created_at.lt(to));
    }
    if let Some(from) = filter.paid_from {
        query = query.filter(orders::paid_at.ge(from));
    }
    if let Some(to) = filter.paid_to {
        query = query.filter(orders::paid_at.lt(to));
    }
    if let Some(after) = &filter.starting_after {
        query = query.filter(
            sql::<Bool>(
                "(orders.created_at, orders.id) < (SELECT created_at, id FROM orders WHERE id = ",
            )
            .bind::<Text, _>(after.clone())
            .sql(")"),
        );
    }
    query.load(conn)
}

/// One merchant's orders, newest first, `limit` of them after skipping `offset` (易支付's
/// order pages).
pub fn merchant_page(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    orders::table
        .filter(orders::merchant_id.eq(merchant_id.as_str()))
        .order((orders::created_at.desc(), orders::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(Order::as_select())
        .load(conn)
}

/// A merchant's orders counted: all, created today and yesterday (China Standard Time), and
/// the amounts paid today and yesterday.
#[derive(Debug, Clone, QueryableByName)]
pub struct MerchantTotals {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub orders: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub orders_today: i64,
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub orders_yesterday: i64,
    #[diesel(sql_type = Numeric)]
    pub paid_today: Decimal,
    #[diesel(sql_type = Numeric)]
    pub paid_yesterday: Decimal,
}

pub fn merchant_totals(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
) -> QueryResult<MerchantTotals> {
    diesel::sql_query(
        "WITH day AS (SELECT date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') \
                             AT TIME ZONE 'Asia/Shanghai' AS today) \
         SELECT count(*) AS orders, \
                count(*) FILTER (WHERE o.created_at >= day.today) AS orders_today, \
                count(*) FILTER (WHERE o.created_at >= day.today - interval '1 day' \
                                   AND o.created_at < day.today) AS orders_yesterday, \
                coalesce(sum(o.amount) FILTER (WHERE o.paid_at >= day.today), 0) AS paid_today, \
                coalesce(sum(o.amount) FILTER (WHERE o.paid_at >= day.today - interval '1 day' \
                                                 AND o.paid_at < day.today), 0) AS paid_yesterday \
         FROM day LEFT JOIN orders o ON o.merchant_id = $1 \
         GROUP BY day.today",
    )
    .bind::<Text, _>(merchant_id.as_str())
    .get_result(conn)
}
