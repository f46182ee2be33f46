//! Orders: creating one with a unique payable amount (idempotently, by `merchant_order_id`),
//! reading, closing, paying and expiring them. Every state change writes its event and queues
//! the change notification in the same transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use sha2::{Digest, Sha256};

use crate::config::{OffsetDirection, Settings};
use rust_decimal::prelude::ToPrimitive;

use crate::core::alerts::{self, Shortage};
use crate::core::error::RuleError;
use crate::core::secrets::new_id;
use crate::db::orders::{self as order_rows, AllocationRequest, ExpiryScope, NotCreated};
pub use crate::db::orders::{Creation, Creator, Order};
use crate::db::wakeups::{self, Wakeup};
use crate::db::{events, retry_aborted, transaction_with_retry, webhooks};
use crate::domain::{Channel, EventType, MerchantOrderId, OrderProtocol, OrderStatus};
use crate::domain::{MerchantId, OrderId};
use crate::money::Amount;
use crate::views;

/// The settings that shape allocation, expiry and matching.
#[derive(Debug, Clone)]
pub struct OrderRules {
    pub default_ttl: Duration,
    /// How long an expired, closed or paid order keeps its amount reserved.
    pub late_payment_grace: Duration,
    /// How long two reports of the same content without trustworthy ids count as one payment.
    pub duplicate_window: Duration,
    pub max_offset_steps: u32,
    pub offset_direction: OffsetDirection,
    pub device_offline_after: Duration,
}

impl OrderRules {
    /// How long a paid order keeps its amount reserved: the grace, and at least the duplicate
    /// window, so that a second report of its payment within the window always finds it.
    pub fn paid_hold(&self) -> Duration {
        self.late_payment_grace.max(self.duplicate_window)
    }
}

impl From<&Settings> for OrderRules {
    fn from(s: &Settings) -> Self {
        OrderRules {
            default_ttl: s.order_ttl,
            late_payment_grace: s.late_payment_grace,
            duplicate_window: s.duplicate_window,
            max_offset_steps: s.max_offset_steps,
            offset_direction: s.offset_direction,
            device_offline_after: s.device_offline_after,
        }
    }
}

/// A validated order request.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    pub merchant_order_id: MerchantOrderId,
    pub amount: Amount,
    pub channel: Channel,
    pub subject: Option<String>,
    pub notify_url: Option<String>,
    pub return_url: Option<String>,
    /// As the request gave it; `None` means the default TTL.
    pub expires_in: Option<u32>,
    pub metadata: Option<serde_json::Value>,
    /// The protocol the order comes through, and that protocol's own fields.
    pub protocol: OrderProtocol,
    pub compat: Option<serde_json::Value>,
}

impl OrderRequest {
    /// A digest of every parameter, so that a repeated `merchant_order_id` can be told apart from
    /// a retry of the same request.
    pub fn fingerprint(&self) -> Vec<u8> {
        let canonical = serde_json::json!({
            "merchant_order_id": self.merchant_order_id.as_str(),
            "amount": self.amount.to_string(),
            "channel": self.channel.as_str(),
            "subject": self.subject,
            "notify_url": self.notify_url,
            "return_url": self.return_url,
            "expires_in": self.expires_in,
            "metadata": self.metadata.as_ref().map(canonical_json),
            "protocol": self.protocol.as_str(),
            "compat": self.compat.as_ref().map(canonical_json),
        });
        Sha256::digest(canonical_json(&canonical).to_string().as_bytes()).to_vec()
    }
}

/// The same JSON with object keys sorted at every level.
fn canonical_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical_json(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical_json).collect())
        }
        other => other.clone(),
    }
}

/// Creates an order with a unique payable amount, or returns the order an identical earlier
/// request created, in one statement on its own (see `solopay_create_order`). An API key that
/// no enabled merchant holds is `401`, and changes nothing.
pub fn create_order(
    conn: &mut PgConnection,
    creator: Creator<'_>,
    request: &OrderRequest,
    rules: &OrderRules,
) -> Result<Creation, RuleError> {
    let fingerprint = request.fingerprint();
    let order_id = new_id("ord");
    let expires_in = request
        .expires_in
        .map_or(rules.default_ttl, |s| Duration::from_secs(u64::from(s)));
    let step = match rules.offset_direction {
        OffsetDirection::Up => Amount::CENT.as_decimal(),
        OffsetDirection::Down => -Amount::CENT.as_decimal(),
    };

    let allocation = AllocationRequest {
        order_id: &order_id,
        creator,
        merchant_order_id: request.merchant_order_id.as_str(),
        request_fingerprint: &fingerprint,
        channel: request.channel,
        amount: request.amount.as_decimal(),
        expires_in_secs: secs_i32(expires_in),
        subject: request.subject.as_deref(),
        notify_url: request.notify_url.as_deref(),
        return_url: request.return_url.as_deref(),
        metadata: request.metadata.as_ref(),
        grace_secs: secs_i32(rules.late_payment_grace),
        max_offset_steps: i32::try_from(rules.max_offset_steps).unwrap_or(i32::MAX),
        step,
        offline_after_secs: secs_i32(rules.device_offline_after),
        protocol: request.protocol,
        compat: request.compat.as_ref(),
    };
    // One statement on its own (no BEGIN/COMMIT around it): the payee lock it takes is held
    // through the server-side call and commit only, never across a round trip to this process.
    match retry_aborted(|| order_rows::create(conn, &allocation)) {
        Ok(Creation::Repeated(stored)) => {
            // As it is now (an order past its expiry reads as expired).
            let current = read_order(conn, &stored.id)?.unwrap_or(stored);
            Ok(Creation::Repeated(current))
        }
        Ok(Creation::Created(order)) => {
            let offset = ((order.payable_amount - order.amount).abs() / Amount::CENT.as_decimal())
                .to_u32()
                .unwrap_or(u32::MAX);
            if alerts::is_deep(offset, rules.max_offset_steps) {
                let shortage = Shortage::Payee {
                    payee_id: &order.payee_id,
                    offset,
                };
                tell_shortage(conn, shortage, request, rules);
            }
            Ok(Creation::Created(order))
        }
        Err(NotCreated::MerchantOrderIdReused) => Err(RuleError::IdempotencyConflict(format!(
            "merchant_order_id {:?} was already used with different parameters",
            request.merchant_order_id.as_str()
        ))),
        Err(NotCreated::NoPayee) => Err(RuleError::NoPayeeAvailable),
        Err(NotCreated::AmountsExhausted) => {
            tell_shortage(conn, Shortage::Channel(request.channel), request, rules);
            Err(RuleError::AmountsExhausted)
        }
        Err(NotCreated::UnknownCreator) => Err(crate::core::merchants::refusal(creator)),
        Err(NotCreated::Storage(error)) => Err(error.into()),
    }
}

/// Tells the owner that amounts run short, after the create (which commits on its own, as one
/// statement): best effort, as a failure here must not fail an order already made.
fn tell_shortage(
    conn: &mut PgConnection,
    shortage: Shortage<'_>,
    request: &OrderRequest,
    rules: &OrderRules,
) {
    let price = request.amount.to_string();
    let told = transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        Ok(alerts::amounts_running_out(
            conn,
            shortage,
            &price,
            rules.max_offset_steps,
        )?)
    });
    if let Err(error) = told {
        tracing::warn!(%error, "cannot record the amounts-running-out alert");
    }
}

fn secs_i32(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

/// How long a reader waits for a transaction holding an overdue order (the sweep expiring it,
/// a payment paying it) before it answers with the order as it was.
const READER_WAIT: Duration = Duration::from_secs(1);

/// Reads an order, expiring it first when it is pending past its expiry, so that a reader does
/// not see a stale `pending`: when another transaction holds it (the sweep expiring it, a
/// payment that arrived in time paying it), the reader waits briefly for what that transaction
/// decides.
pub fn read_order(conn: &mut PgConnection, id: &str) -> Result<Option<Order>, RuleError> {
    match order_rows::find_with_overdue(conn, id)? {
        Some((_, true)) => {
            let expired = transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
                let expired = order_rows::expire_for_reader(conn, id, READER_WAIT)?;
                record_transitions(conn, EventType::OrderExpired, expired.as_slice())?;
                Ok(expired)
            });
            match expired {
                Ok(_) => {}
                // Held longer than the wait: the order as it is now.
                Err(RuleError::Storage(crate::db::StorageError::Timeout(_))) => {}
                Err(error) => return Err(error),
            }
            Ok(order_rows::find(conn, id)?)
        }
        Some((order, false)) => Ok(Some(order)),
        None => Ok(None),
    }
}

/// How a merchant names one of its orders.
#[derive(Debug, Clone, Copy)]
pub enum OrderLookup<'a> {
    /// solopay's order id (`ord_…`).
    ById(&'a str),
    /// The merchant's own order number, as given (any text: one no protocol accepts finds
    /// nothing).
    ByMerchantOrderId(&'a str),
}

/// One of the merchant's orders, as it is now (see [`read_order`]); another merchant's order is
/// not found.
pub fn read_merchant_order(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    lookup: OrderLookup<'_>,
) -> Result<Option<Order>, RuleError> {
    match lookup {
        OrderLookup::ById(id) => {
            Ok(read_order(conn, id)?.filter(|order| order.merchant_id == merchant_id.as_str()))
        }
        OrderLookup::ByMerchantOrderId(merchant_order_id) => {
            match order_rows::find_by_merchant_order_id(conn, merchant_id, merchant_order_id)? {
                Some(order) => read_order(conn, &order.id),
                None => Ok(None),
            }
        }
    }
}

/// A page of the merchant's orders, newest first: `limit` (1 to 100) after `offset`, each as it
/// is now.
pub fn merchant_orders_page(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Order>, RuleError> {
    let page = order_rows::merchant_page(conn, merchant_id, offset.max(0), limit.clamp(1, 100))?;
    page.into_iter()
        .map(|order| Ok(read_order(conn, &order.id)?.unwrap_or(order)))
        .collect()
}

pub use crate::db::orders::MerchantTotals;

/// Whether a paid order's old-protocol callback was answered: `Some(true)` accepted, `Some(false)`
/// attempted and not (yet) accepted, `None` not attempted (or no callback).
pub fn callback_answered(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<bool>, RuleError> {
    use crate::domain::DeliveryStatus;
    Ok(
        match crate::db::webhooks::callback_of_order(conn, order_id)? {
            Some((DeliveryStatus::Succeeded, _)) => Some(true),
            Some((_, attempts)) if attempts > 0 => Some(false),
            _ => None,
        },
    )
}

/// A merchant's orders counted (all, today, yesterday in China Standard Time) and the amounts
/// paid today and yesterday.
pub fn merchant_totals(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
) -> Result<MerchantTotals, RuleError> {
    Ok(order_rows::merchant_totals(conn, merchant_id)?)
}

/// Closes a merchant's pending order. Closing a closed order returns it unchanged; a paid or
/// expired order cannot be closed. Another merchant's order is "not found".
pub fn close_order(
    conn: &mut PgConnection,
    merchant_id: MerchantId<'_>,
    id: OrderId<'_>,
    grace: Duration,
) -> Result<Order, RuleError> {
    // The inner result is the answer; the outer one aborts the transaction. A refusal commits,
    // keeping an expiry this call noticed.
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let Some((order, overdue)) = order_rows::lock_for_merchant(conn, merchant_id, id)? else {
            return Ok(Err(RuleError::not_found("order")));
        };
        let order = if overdue {
            expire_locked(conn, OrderId(&order.id))?
        } else {
            order
        };
        Ok(match order.status {
            OrderStatus::Pending => {
                let closed = order_rows::mark_closed(conn, &order.id, grace)?;
                record_transitions(conn, EventType::OrderClosed, std::slice::from_ref(&closed))?;
                Ok(closed)
            }
            OrderStatus::Closed => Ok(order),
            OrderStatus::Paid => Err(RuleError::InvalidState("the order is already paid".into())),
            OrderStatus::Expired => Err(RuleError::InvalidState("the order has expired".into())),
        })
    })?
}

/// Pays an order the caller has locked (`pending`, `expired`, or `closed` for the operator). A
/// pending order past its expiry (`overdue`) is expired first, so that its events follow the
/// state machine. `arrived_at` is when the paying notification arrived (`None` for the
/// operator's hand): the order is `paid_late` when it had expired, or the payment arrived
/// after the expiry. The amount stays reserved for `grace` after the payment, so that the same
/// payment reported again is recognised as a duplicate instead of paying another order.
pub fn pay_locked(
    conn: &mut PgConnection,
    order_id: OrderId<'_>,
    status: OrderStatus,
    overdue: bool,
    arrived_at: Option<DateTime<Utc>>,
    grace: Duration,
) -> Result<Order, RuleError> {
    if status == OrderStatus::Pending && overdue {
        expire_locked(conn, order_id)?;
    }
    let paid = order_rows::mark_paid(conn, order_id.as_str(), arrived_at, grace)?;
    record_transitions(conn, EventType::OrderPaid, std::slice::from_ref(&paid))?;
    Ok(paid)
}

fn expire_locked(conn: &mut PgConnection, order_id: OrderId<'_>) -> Result<Order, RuleError> {
    let expired = order_rows::expire_overdue(conn, ExpiryScope::Order(order_id.as_str()), 1)?;
    record_transitions(conn, EventType::OrderExpired, &expired)?;
    expired
        .into_iter()
        .next()
        .ok_or_else(|| RuleError::internal(format!("locked order {order_id} did not expire")))
}

/// Expires up to `limit` overdue pending orders in one transaction; returns how many.
pub fn expire_overdue_batch(conn: &mut PgConnection, limit: i64) -> Result<usize, RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let expired = order_rows::expire_overdue(conn, ExpiryScope::All, limit)?;
        record_transitions(conn, EventType::OrderExpired, &expired)?;
        Ok(expired.len())
    })
}

/// Writes one event per order (the order object as it is now) with its webhook deliveries, as
/// part of the caller's transaction, and asks for the change's wake-ups (sent once it commits):
/// the orders' waiters, and the webhook workers only when a delivery was written.
fn record_transitions(
    conn: &mut PgConnection,
    event_type: EventType,
    orders: &[Order],
) -> Result<(), RuleError> {
    if orders.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = orders.iter().map(|_| new_id("evt")).collect();
    let rows = orders
        .iter()
        .zip(&ids)
        .map(|(order, id)| {
            Ok(events::NewEvent {
                id,
                event_type,
                order_id: &order.id,
                merchant_id: &order.merchant_id,
                data: serde_json::to_value(views::Order::from(order))
                    .map_err(RuleError::internal)?,
            })
        })
        .collect::<Result<Vec<_>, RuleError>>()?;
    if webhooks::insert_events(conn, &rows)? > 0 {
        wakeups::wake(conn, Wakeup::DeliveryDue)?;
    }
    let order_ids: Vec<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    wakeups::wake(conn, Wakeup::OrdersChanged(&order_ids))?;
    Ok(())
}
