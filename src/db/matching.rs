//! What a reported payment finds once its amount is locked, read by one server-side function
//! (`solopay_match_findings` in [`sql/matching.sql`](sql/matching.sql)): the lock and the reads
//! after it in one round trip, each read with its own snapshot as separate statements had. The
//! rules that decide from it live in `core::notifications::matching`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Bytea, Int8, Interval, Nullable, Numeric, Text, Timestamptz};
use rust_decimal::Decimal;

use super::prepared::KeepPrepared;
use crate::domain::{DeviceId, OrderStatus};

/// A report to match: its payee and amount, and what tells its copies and earlier reports.
pub struct Lookup<'a> {
    pub payee_id: &'a str,
    pub amount: Decimal,
    pub device_id: DeviceId<'a>,
    pub notification_id: &'a str,
    pub body_sha256: &'a [u8],
    /// When this report arrived (the database clock at storing).
    pub received_at: DateTime<Utc>,
    /// What it shares with other reports of the same payment, where its id does not tell.
    pub same_payment_key: Option<&'a [u8]>,
    /// How far apart reports sharing the key may arrive and be one payment (`None`: any time).
    pub window: Option<std::time::Duration>,
    /// How long a paid order keeps its amount: how long before this report one that was not
    /// decided when the holder took the amount contests its claim ([`Contest`]).
    pub hold: std::time::Duration,
}

/// The order that held the amount reserved on the payee when the payment arrived, whatever its
/// status now (pending or expired: it is payable; paid: the payment is its duplicate; closed:
/// kept), locked. Deciding as of the arrival, not of the processing, keeps a notification
/// finished late (after a crash) from paying an order created after the payment was made, and
/// a payment that arrived in time pays its order on time however late it is processed.
/// Reservations of one payee and amount never overlap (the exclusion constraint), so at most one
/// order qualifies; only orders that still hold their amount are read (a released order's
/// reservation ended before any arrival a payment is matched as of). A concurrent payment of
/// the same order waits for the row lock and then sees it paid.
#[derive(Debug, Clone)]
pub struct Holder {
    pub id: String,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// Pending and past its expiry when the payment arrived.
    pub overdue: bool,
    /// Pending or expired: why it may not be this payment's order after all.
    pub contested: Option<Contest>,
}

/// A report that arrived within a paid order's hold before this payment (its first copy), before
/// the holder took the amount, and was not decided where the holder's allocation could see it:
/// had it been decided at once, the amount would have stayed held (by the order it paid, or by
/// its payment kept with a hold) and this report, if it is the same payment again, would have
/// found that. The first by arrival.
#[derive(Debug, Clone)]
pub enum Contest {
    /// The device's report in this row (not a copy of this one) is not processed yet.
    Unprocessed { row: i64, arrived_at: DateTime<Utc> },
    /// This payment of the payee and amount paid an earlier order whose hold a later order then
    /// cut short (decided after the reservation it arrived in had ended), or is kept with a hold
    /// that was still running when the holder took the amount.
    OutOfSight {
        payment_id: String,
        arrived_at: DateTime<Utc>,
    },
    /// This payment of the amount arrived after the report being decided (decided as of an
    /// earlier arrival) and paid another order: a later order of the amount (from this device,
    /// within a paid order's hold), or an earlier one whose hold it cut short (any time).
    PaidSince {
        payment_id: String,
        arrived_at: DateTime<Utc>,
    },
}

/// What the report found.
#[derive(Debug, Clone)]
pub enum Found {
    /// The first payment recorded from another report of the same payment (`first`: that
    /// payment, or the one it is itself a duplicate of).
    Earlier { first: String },
    /// The order holding the amount at the arrival, locked.
    Holder(Holder),
    /// Neither.
    Nothing,
}

/// [`Found`], and when the payment arrived for matching: this report's arrival, or an earlier
/// copy's.
#[derive(Debug, Clone)]
pub struct Reads {
    pub arrived_at: DateTime<Utc>,
    pub found: Found,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Timestamptz)]
    arrived_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    earlier_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    earlier_duplicate_of: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    holder_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    holder_status: Option<OrderStatus>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    holder_created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    holder_paid_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Bool>)]
    holder_overdue: Option<bool>,
    #[diesel(sql_type = Nullable<Int8>)]
    contested_row: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    contested_payment: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    contested_at: Option<DateTime<Utc>>,
}

/// Locks the amount of `lookup.payee_id` (until the transaction ends: reports of one amount on
/// one payee are matched one at a time) and reads what the report finds. Inside a transaction.
pub fn lock_and_read(conn: &mut PgConnection, lookup: &Lookup<'_>) -> QueryResult<Reads> {
    let row: Row = diesel::sql_query(
        "SELECT arrived_at, earlier_id, earlier_duplicate_of, holder_id, holder_status, \
         holder_created_at, holder_paid_at, holder_overdue, contested_row, contested_payment, \
         contested_at \
         FROM solopay_match_findings($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind::<Text, _>(lookup.payee_id)
    .bind::<Numeric, _>(lookup.amount)
    .bind::<Text, _>(lookup.device_id.as_str())
    .bind::<Text, _>(lookup.notification_id)
    .bind::<Bytea, _>(lookup.body_sha256)
    .bind::<Timestamptz, _>(lookup.received_at)
    .bind::<Nullable<Bytea>, _>(lookup.same_payment_key)
    .bind::<Nullable<Interval>, _>(lookup.window.map(super::interval))
    .bind::<Interval, _>(super::interval(lookup.hold))
    .prepared()
    .get_result(conn)?;
    let arrived_at = row.arrived_at;
    let found = match row {
        Row {
            earlier_id: Some(id),
            earlier_duplicate_of,
            ..
        } => Found::Earlier {
            first: earlier_duplicate_of.unwrap_or(id),
        },
        Row {
            holder_id: Some(id),
            holder_status: Some(status),
            holder_created_at: Some(created_at),
            holder_paid_at,
            holder_overdue,
            contested_row,
            contested_payment,
            contested_at,
            ..
        } => Found::Holder(Holder {
            id,
            status,
            created_at,
            paid_at: holder_paid_at,
            overdue: holder_overdue.unwrap_or(false),
            contested: match (contested_row, contested_payment, contested_at) {
                (Some(row), _, Some(arrived_at)) => Some(Contest::Unprocessed { row, arrived_at }),
                (None, Some(payment_id), Some(at)) if at > arrived_at => Some(Contest::PaidSince {
                    payment_id,
                    arrived_at: at,
                }),
                (None, Some(payment_id), Some(arrived_at)) => Some(Contest::OutOfSight {
                    payment_id,
                    arrived_at,
                }),
                _ => None,
            },
        }),
        Row {
            holder_id: Some(id),
            ..
        } => {
            return Err(diesel::result::Error::DeserializationError(
                format!("order {id} held the amount but came without its status").into(),
            ));
        }
        _ => Found::Nothing,
    };
    Ok(Reads { arrived_at, found })
}
