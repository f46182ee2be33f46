//! The `webhook_deliveries` and `webhook_attempts` tables: one delivery per event and
//! destination, claimed by one instance at a time under a lease, every attempt recorded.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int4, Int8, Interval, Jsonb, Nullable, Text, Timestamptz};

use super::events::NewEvent;
use super::interval;
use super::prepared::{Done, KeepPrepared};
use super::schema::{events, webhook_attempts, webhook_deliveries};
use crate::domain::{DeliveryKind, DeliveryStatus, EventType};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Identifiable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg))]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub merchant_id: String,
    pub order_id: String,
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub retry_step: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub leased_until: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub kind: DeliveryKind,
    /// The scheme, host and port the URL points at: attempts in flight are capped per
    /// destination.
    pub destination: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = webhook_attempts, check_for_backend(diesel::pg::Pg))]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: String,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    pub status_code: Option<i32>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_attempts)]
pub struct NewAttempt<'a> {
    pub delivery_id: &'a str,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    pub status_code: Option<i32>,
    pub response_excerpt: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The channel that tells every instance's worker a delivery became due.
pub const DELIVERY_DUE_CHANNEL: &str = "solopay_webhook_due";

/// The deliveries of the events a statement just inserted (`inserted`): to the order's
/// `notify_url` or else the merchant's; an event with neither has none. An order made through an
/// old protocol gets that protocol's callback, and only when it is paid (all its clients expect).
const DELIVERIES_OF_INSERTED: &str = "INSERT INTO webhook_deliveries (id, event_id, merchant_id, \
                                     order_id, url, kind, destination) \
     SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), e.id, e.merchant_id, \
            e.order_id, d.url, \
            CASE o.protocol WHEN 'native' THEN 'standard' ELSE o.protocol END, \
            coalesce(lower(substring(d.url from '^([A-Za-z][A-Za-z0-9+.-]*://)')) || \
                     lower(substring(d.url from \
                         '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^/?#]+)')), \
                     d.url) \
     FROM inserted e \
     JOIN orders o ON o.id = e.order_id \
     JOIN merchants m ON m.id = e.merchant_id \
     CROSS JOIN LATERAL (SELECT coalesce(o.notify_url, m.notify_url) AS url) d \
     WHERE d.url IS NOT NULL AND (o.protocol = 'native' OR e.type = 'order.paid') \
     RETURNING true AS done";

/// Writes these events with their webhook deliveries, in one statement, as part of the
/// transaction that changed the orders; returns how many deliveries were written. One event (a
/// payment, a close: the common case) is inserted from plain values, so that Postgres keeps one
/// generic plan for the statement; a batch from arrays, which Postgres kept planning each time
/// (an array parameter's length, which a generic plan cannot know, weighs in its cost estimate).
pub fn insert_events(conn: &mut PgConnection, new: &[NewEvent<'_>]) -> QueryResult<usize> {
    const HEAD: &str =
        "WITH inserted AS (INSERT INTO events (id, type, order_id, merchant_id, data) ";
    const TAIL: &str = " RETURNING id, type, order_id, merchant_id) ";
    if let [event] = new {
        return diesel::sql_query(format!(
            "{HEAD}VALUES ($1, $2, $3, $4, $5){TAIL}{DELIVERIES_OF_INSERTED}"
        ))
        .bind::<Text, _>(event.id)
        .bind::<Text, _>(event.event_type.as_str())
        .bind::<Text, _>(event.order_id)
        .bind::<Text, _>(event.merchant_id)
        .bind::<Jsonb, _>(&event.data)
        .prepared()
        .load::<super::prepared::Done>(conn)
        .map(|deliveries| deliveries.len());
    }
    let ids: Vec<&str> = new.iter().map(|e| e.id).collect();
    let types: Vec<&str> = new.iter().map(|e| e.event_type.as_str()).collect();
    let orders: Vec<&str> = new.iter().map(|e| e.order_id).collect();
    let merchants: Vec<&str> = new.iter().map(|e| e.merchant_id).collect();
    let data: Vec<&serde_json::Value> = new.iter().map(|e| &e.data).collect();
    diesel::sql_query(format!(
        "{HEAD}SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::jsonb[]){TAIL}{DELIVERIES_OF_INSERTED}"
    ))
    .bind::<Array<Text>, _>(ids)
    .bind::<Array<Text>, _>(types)
    .bind::<Array<Text>, _>(orders)
    .bind::<Array<Text>, _>(merchants)
    .bind::<Array<Jsonb>, _>(data)
    .execute(conn)
}

/// A claimed delivery with its event and its merchant's signing secrets as stored (`None` where
/// the row is gone: the attempt then records why, as it does for a secret that does not open).
#[derive(Debug, QueryableByName)]
pub struct Claimed {
    #[diesel(embed)]
    pub delivery: Delivery,
    #[diesel(sql_type = Nullable<Text>)]
    pub event_type: Option<EventType>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub event_created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub event_data: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    pub webhook_secret: Option<String>,
    /// The secret before the last rotation, while its overlap lasts (by the database clock).
    #[diesel(sql_type = Nullable<Text>)]
    pub previous_webhook_secret: Option<String>,
}

/// Claims up to `limit` due deliveries for one attempt each: the attempt number is taken
/// (`attempts + 1`) and a lease set, so no other instance attempts them until the lease ends.
/// No destination gets more than `per_destination` attempts in flight, counting every
/// instance's: a receiver that hangs holds that many slots at most, and the deliveries due to
/// the others are claimed meanwhile. Claims are made one at a time across instances (a
/// transaction-scoped advisory lock), so that the count they read is the count they leave.
/// Each comes with its event and its merchant's signing secrets, read by the same statement.
pub fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
    per_destination: i64,
    lease: Duration,
) -> QueryResult<Vec<Claimed>> {
    conn.transaction(|conn| {
        diesel::sql_query(format!(
            "SELECT pg_advisory_xact_lock({CLAIM_LOCK_CLASS}, 0)"
        ))
        .execute(conn)?;
        diesel::sql_query(
            "WITH in_flight AS ( \
                 SELECT destination, count(*) AS attempts FROM webhook_deliveries \
                 WHERE status = 'pending' AND leased_until > now() \
                 GROUP BY destination), \
             due AS ( \
                 SELECT d.id, d.next_attempt_at, coalesce(f.attempts, 0) + row_number() \
                        OVER (PARTITION BY d.destination ORDER BY d.next_attempt_at, d.id) \
                        AS place \
                 FROM webhook_deliveries d LEFT JOIN in_flight f USING (destination) \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= now() \
                   AND (d.leased_until IS NULL OR d.leased_until <= now())) \
             UPDATE webhook_deliveries SET attempts = attempts + 1, leased_until = now() + $2 \
             WHERE id IN (SELECT w.id FROM webhook_deliveries w JOIN due ON due.id = w.id \
                          WHERE due.place <= $3 \
                          ORDER BY due.next_attempt_at \
                          LIMIT $1 \
                          FOR NO KEY UPDATE OF w SKIP LOCKED) \
             RETURNING webhook_deliveries.*, \
                 (SELECT type FROM events WHERE id = event_id) AS event_type, \
                 (SELECT created_at FROM events WHERE id = event_id) AS event_created_at, \
                 (SELECT data FROM events WHERE id = event_id) AS event_data, \
                 (SELECT webhook_secret FROM merchants m WHERE m.id = merchant_id) \
                     AS webhook_secret, \
                 (SELECT previous_webhook_secret FROM merchants m \
                   WHERE m.id = merchant_id AND previous_webhook_secret_expires_at > now()) \
                     AS previous_webhook_secret",
        )
        .bind::<Int8, _>(limit)
        .bind::<Interval, _>(interval(lease))
        .bind::<Int8, _>(per_destination)
        .load(conn)
    })
}

/// The class of the advisory lock that makes claims one at a time.
const CLAIM_LOCK_CLASS: i32 = 3;

/// How an attempt ended, for the delivery row.
#[derive(Debug, Clone, Copy)]
pub enum Settled {
    Succeeded,
    RetryIn(Duration),
    Failed,
}

/// Records attempt `attempt` and settles the delivery, unless another instance has claimed a
/// later attempt meanwhile, or an operator redelivered it (its lease ran out): then only the
/// attempt is recorded. Returns whether this record settled the delivery. One statement (both
/// writes commit together or neither does), so that a successful attempt, the common case, needs
/// no transaction of its own.
pub fn record_attempt(
    conn: &mut PgConnection,
    attempt: &NewAttempt<'_>,
    settled: Settled,
) -> QueryResult<bool> {
    let (status, retry_in) = match settled {
        Settled::Succeeded => (DeliveryStatus::Succeeded, Duration::ZERO),
        Settled::Failed => (DeliveryStatus::Failed, Duration::ZERO),
        Settled::RetryIn(wait) => (DeliveryStatus::Pending, wait),
    };
    diesel::sql_query(RECORD_ATTEMPT)
        .bind::<Text, _>(attempt.delivery_id)
        .bind::<Int4, _>(attempt.attempt)
        .bind::<Timestamptz, _>(attempt.started_at)
        .bind::<Int4, _>(attempt.latency_ms)
        .bind::<Nullable<Int4>, _>(attempt.status_code)
        .bind::<Nullable<Text>, _>(attempt.response_excerpt)
        .bind::<Nullable<Text>, _>(attempt.error)
        .bind::<Text, _>(status.as_str())
        .bind::<Interval, _>(interval(retry_in))
        .prepared()
        .get_result::<Done>(conn)
        .map(|settled| settled.done)
}

/// [`record_attempt`]'s statement: `$8` the delivery's new status (`pending`: retried in `$9`);
/// `done` says whether the delivery was settled. The delivery is settled only while this
/// attempt is its latest and still leased: an operator's redelivery after the lease ran out
/// clears the lease, and this late record must not undo that.
const RECORD_ATTEMPT: &str = "WITH attempt AS ( \
         INSERT INTO webhook_attempts \
             (delivery_id, attempt, started_at, latency_ms, status_code, response_excerpt, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (delivery_id, attempt) DO NOTHING \
         RETURNING 1), \
     settled AS ( \
         UPDATE webhook_deliveries \
            SET leased_until = NULL, last_attempt_at = now(), last_status_code = $5, \
                last_error = $7, status = $8, \
                completed_at = CASE WHEN $8 = 'pending' THEN completed_at ELSE now() END, \
                retry_step = CASE WHEN $8 = 'pending' THEN retry_step + 1 ELSE retry_step END, \
                next_attempt_at = CASE WHEN $8 = 'pending' THEN now() + $9 \
                                       ELSE next_attempt_at END \
          WHERE id = $1 AND attempts = $2 AND status = 'pending' AND leased_until IS NOT NULL \
         RETURNING 1) \
     SELECT EXISTS (SELECT 1 FROM settled) AS done";

/// The deliveries that failed for good, or keep failing (3 attempts or more), newest first.
pub fn failing(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<Delivery>> {
    webhook_deliveries::table
        .filter(
            webhook_deliveries::status
                .eq(DeliveryStatus::Failed)
                .or(webhook_deliveries::status
                    .eq(DeliveryStatus::Pending)
                    .and(webhook_deliveries::attempts.ge(3))),
        )
        .order((
            webhook_deliveries::created_at.desc(),
            webhook_deliveries::id.desc(),
        ))
        .limit(limit)
        .select(Delivery::as_select())
        .load(conn)
}

/// Filters of the operator's delivery list.
#[derive(Debug, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub order_id: Option<String>,
    pub merchant_id: Option<String>,
    /// Deliveries created before this one (by creation time, then id): the next page.
    pub starting_after: Option<String>,
    pub limit: i64,
}

/// Newest first, with each delivery's event type.
pub fn list(
    conn: &mut PgConnection,
    filter: &DeliveryFilter,
) -> QueryResult<Vec<(Delivery, EventType)>> {
    let mut query = webhook_deliveries::table
        .inner_join(events::table)
        .select((Delivery::as_select(), events::type_))
        .order((
            webhook_deliveries::created_at.desc(),
            webhook_deliveries::id.desc(),
        ))
        .limit(filter.limit)
        .into_boxed();
    if let Some(status) = &filter.status {
        query = query.filter(webhook_deliveries::status.eq(*status));
    }
    if let Some(order_id) = &filter.order_id {
        query = query.filter(webhook_deliveries::order_id.eq(order_id.clone()));
    }
    if let Some(merchant_id) = &filter.merchant_id {
        query = query.filter(webhook_deliveries::merchant_id.eq(merchant_id.clone()));
    }
    if let Some(after) = &filter.starting_after {
        query = query.filter(
            sql::<Bool>("(webhook_deliveries.created_at, webhook_deliveries.id) < (SELECT created_at, id FROM webhook_deliveries WHERE id = ")
                .bind::<Text, _>(after.clone())
                .sql(")"),
        );
    }
    query.load(conn)
}

pub fn find(conn: &mut PgConnection, id: &str) -> QueryResult<Option<(Delivery, EventType)>> {
    webhook_deliveries::table
        .find(id)
        .inner_join(events::table)
        .select((Delivery::as_select(), events::type_))
        .first(conn)
        .optional()
}

pub fn attempts_of(conn: &mut PgConnection, delivery_id: &str) -> QueryResult<Vec<Attempt>> {
    webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq(delivery_id))
        .order(webhook_attempts::attempt)
        .select(Attempt::as_select())
        .load(conn)
}

/// Makes a delivery due now with a fresh retry schedule, unless an attempt is in flight
/// (`None` then). Returns the delivery.
pub fn redeliver(conn: &mut PgConnection, id: &str) -> QueryResult<Option<Delivery>> {
    diesel::update(webhook_deliveries::table.find(id).filter(sql::<Bool>(
        "(webhook_deliveries.leased_until IS NULL OR webhook_deliveries.leased_until <= now())",
    )))
    .set((
        webhook_deliveries::status.eq(DeliveryStatus::Pending),
        webhook_deliveries::leased_until.eq(None::<DateTime<Utc>>),
        webhook_deliveries::completed_at.eq(None::<DateTime<Utc>>),
        webhook_deliveries::retry_step.eq(0),
        webhook_deliveries::next_attempt_at.eq(sql::<Timestamptz>("now()")),
    ))
    .returning(Delivery::as_returning())
    .get_result(conn)
    .optional()
}

/// Pending deliveries (the queue depth).
pub fn pending_count(conn: &mut PgConnection) -> QueryResult<i64> {
    webhook_deliveries::table
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending))
        .count()
        .get_result(conn)
}

/// Where an order's old-protocol callback stands: its status and attempts so far (none when the
/// order has no callback).
pub fn callback_of_order(
    conn: &mut PgConnection,
    order_id: &str,
) -> QueryResult<Option<(DeliveryStatus, i32)>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::order_id.eq(order_id))
        .filter(webhook_deliveries::kind.ne(DeliveryKind::Standard))
        .order(webhook_deliveries::created_at.desc())
        .select((webhook_deliveries::status, webhook_deliveries::attempts))
        .first(conn)
        .optional()
}

/// Retention: deletes up to `$2` of the oldest events created more than `$1` ago (by the
/// database clock) every delivery of which succeeded more than `$1` ago, with those
/// deliveries and their attempts. An event with a delivery still pending (first try or
/// retrying) or failed (the operator may redeliver it) is kept with its attempts. Rows another
/// transaction holds are skipped; an operator's redelivery in the same instant makes the
/// statement fail on the foreign key (the event still has a delivery), never lose it.
/// Its one row is `counts`: [events, deliveries, attempts] deleted (see
/// [`super::run_retention`]).
pub const RETIRE_BATCH: &str = "WITH due AS ( \
             SELECT e.id FROM events e \
             WHERE e.created_at < now() - $1 \
               AND NOT EXISTS ( \
                   SELECT 1 FROM webhook_deliveries d \
                   WHERE d.event_id = e.id \
                     AND (d.status <> 'succeeded' OR d.completed_at >= now() - $1)) \
             ORDER BY e.created_at \
             LIMIT $2 \
             FOR UPDATE OF e SKIP LOCKED), \
         due_deliveries AS ( \
             SELECT d.id FROM webhook_deliveries d JOIN due ON due.id = d.event_id \
             FOR UPDATE OF d SKIP LOCKED), \
         attempts AS ( \
             DELETE FROM webhook_attempts \
             WHERE delivery_id IN (SELECT id FROM due_deliveries) RETURNING 1), \
         deliveries AS ( \
             DELETE FROM webhook_deliveries \
             WHERE id IN (SELECT id FROM due_deliveries) AND status = 'succeeded' RETURNING 1), \
         events AS ( \
             DELETE FROM events WHERE id IN (SELECT id FROM due) RETURNING 1) \
         SELECT ARRAY[(SELECT count(*) FROM events), (SELECT count(*) FROM deliveries), \
                      (SELECT count(*) FROM attempts)] AS counts";
