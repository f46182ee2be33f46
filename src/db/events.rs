//! The `events` table (the outbox of order state changes), and the channel that tells every
//! instance an order changed ([`super::wakeups`]).

use diesel::prelude::*;

use super::schema::events;
use crate::domain::EventType;

/// The Postgres notification channel carrying the id of each order whose state changed.
pub const ORDER_CHANGED_CHANNEL: &str = "solopay_order_changed";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
pub struct Event {
    pub id: String,
    #[diesel(column_name = type_)]
    pub event_type: EventType,
    pub order_id: String,
    pub merchant_id: String,
    pub data: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An order's events, oldest first.
pub fn of_order(conn: &mut PgConnection, order_id: &str) -> QueryResult<Vec<Event>> {
    events::table
        .filter(events::order_id.eq(order_id))
        .order((events::created_at, events::id))
        .select(Event::as_select())
        .load(conn)
}

/// An event to write (see [`super::webhooks::insert_events`]).
#[derive(Debug)]
pub struct NewEvent<'a> {
    pub id: &'a str,
    pub event_type: EventType,
    pub order_id: &'a str,
    pub merchant_id: &'a str,
    pub data: serde_json::Value,
}
