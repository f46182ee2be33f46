//! Recording a reported payment and matching it, in one transaction: a trustworthy payment pays
//! the order of the device's payee for the channel that held its amount reserved when it (or
//! the first report of the same payment) arrived, if that order is still pending or expired.
//! A second report of one payment never pays anything: it is a `duplicate` of the first report,
//! or of the payment that paid the order holding the amount.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::PgConnection;

use super::{Notification, Trust, Verdict, assess};
use crate::core::error::RuleError;
use crate::core::orders::{OrderRules, pay_locked};
use crate::core::reading::{channel_of_package, normalise, unstack};
use crate::core::secrets::new_id;
use crate::core::secrets::sha256;
use crate::core::signing::SIGNATURE_WINDOW_SECS;
use crate::db::devices::Device;
use crate::db::matching::{self as match_rows, Contest, Found, Holder, Lookup};
use crate::db::notifications as raw_rows;
use crate::db::payments::{self as payment_rows, NewPayment, Payment};
use crate::db::transaction_with_retry;
use crate::domain::{Channel, DeviceId, OrderId};
use crate::domain::{OrderStatus, PaymentResult};
use crate::money::Amount;

/// One stored report of a notification, as it is recorded.
pub struct Report<'a> {
    /// Its row in `notifications`.
    pub raw_id: i64,
    /// When it arrived (the database clock at storing).
    pub received_at: DateTime<Utc>,
    /// When the phone signed its request, by the phone's clock (what its signature covers).
    pub signed_at: Option<DateTime<Utc>>,
    pub notification: &'a Notification,
    /// What it shares with other reports of the same payment, where its id does not tell.
    pub same_payment_key: Option<&'a [u8]>,
    /// The SHA-256 of its body: a retry of one request has the same.
    pub body_sha256: &'a [u8],
}

/// Records a report's payment and matches it, in one transaction, given the device's `payees`
/// (`device_rows::payees_by_channel`). A notification id the device reported before returns the
/// first payment.
pub fn record_payment(
    conn: &mut PgConnection,
    rules: &OrderRules,
    device: &Device,
    payees: &[(Channel, String)],
    report: &Report<'_>,
) -> Result<Payment, RuleError> {
    let notification = report.notification;
    // Read before this transaction (with the device's mark as heard from, or just before): a
    // payee never changes device and is never deleted, so the only change meanwhile is a new
    // payee, whose orders came after this payment (which then pays nothing and is kept for the
    // operator, as a lookup a moment earlier would have).
    let verdict = assess(notification, &Trust::of_device_with(device, payees));
    let (result, reason, channel, amount, amounts_read) = match &verdict {
        Verdict::Payment { channel, amount } => (
            PaymentResult::Unmatched,
            None,
            Some(*channel),
            Some(*amount),
            None,
        ),
        Verdict::Withheld(withheld) => (
            withheld.result,
            Some(withheld.reason.as_str()),
            withheld.channel,
            withheld.amount,
            (!withheld.amounts_read.is_empty()).then(|| {
                withheld
                    .amounts_read
                    .iter()
                    .map(|a| Some(a.as_decimal()))
                    .collect::<Vec<_>>()
            }),
        ),
    };
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let payee_id = channel.and_then(|channel| {
            payees
                .iter()
                .find(|(of, _)| *of == channel)
                .map(|(_, id)| id.as_str())
        });
        // What the payment comes to is decided before it is stored, so that its row is
        // written once, as it stays.
        let outcome = match (&verdict, payee_id) {
            (Verdict::Payment { amount, .. }, Some(payee_id)) => {
                match_payment(conn, rules, device, report, payee_id, *amount)?
            }
            _ => Outcome::kept(result, reason.map(str::to_owned)),
        };
        // A payment that paid nothing keeps its amount from new orders as long as a paid order
        // would: a copy of it under another id may still come, and must find no order to pay.
        let hold = (matches!(verdict, Verdict::Payment { .. })
            && payee_id.is_some()
            && matches!(
                outcome.result,
                PaymentResult::Unmatched | PaymentResult::Duplicate
            )
            && !rules.duplicate_window.is_zero())
        .then(|| rules.paid_hold());
        let payment_id = new_id("pay");
        let inserted = payment_rows::insert_if_new(
            conn,
            &NewPayment {
                id: &payment_id,
                device_id: &device.id,
                notification_id: &notification.notification_id,
                channel,
                amount: amount.map(|a| a.as_decimal()),
                package: notification.package.as_deref(),
                title: notification.title.as_deref(),
                text: notification.text.as_deref(),
                reported_at: notification.reported_at,
                payee_id,
                result: outcome.result,
                notification_row: report.raw_id,
                reason: outcome.reason.as_deref(),
                amounts_read: amounts_read.clone(),
                order_id: outcome.pays.as_ref().map(|pay| pay.order.id.as_str()),
                duplicate_of: outcome.duplicate_of.as_deref(),
            },
            hold,
        )?;
        let Some(payment) = inserted else {
            // The device reported this notification id before: the first report's payment
            // stands, and nothing decided above is written (no order was paid).
            let first = payment_rows::find_by_notification_id(
                conn,
                DeviceId(&device.id),
                &notification.notification_id,
            )?;
            raw_rows::set_payment(conn, report.raw_id, &first.id)?;
            return Ok(first);
        };
        if let Some(pay) = &outcome.pays {
            // The order is locked since it was found holding the amount.
            pay_locked(
                conn,
                OrderId(&pay.order.id),
                pay.order.status,
                pay.order.overdue,
                Some(pay.arrived_at),
                rules.paid_hold(),
            )?;
        }
        // What paid nothing is the owner's to look at: told in the same transaction.
        crate::core::alerts::payment_recorded(conn, device, &payment)?;
        Ok(payment)
    })
}

/// What a reported payment comes to, decided before its row is written.
struct Outcome {
    result: PaymentResult,
    reason: Option<String>,
    duplicate_of: Option<String>,
    /// The order it pays, locked.
    pays: Option<Pays>,
}

struct Pays {
    order: Holder,
    /// When the payment (or the first report of it) arrived.
    arrived_at: DateTime<Utc>,
}

impl Outcome {
    fn kept(result: PaymentResult, reason: Option<String>) -> Outcome {
        Outcome {
            result,
            reason,
            duplicate_of: None,
            pays: None,
        }
    }

    fn duplicate(of: Option<String>, reason: String) -> Outcome {
        Outcome {
            duplicate_of: of,
            ..Outcome::kept(PaymentResult::Duplicate, Some(reason))
        }
    }
}

/// Matches a trustworthy payment for `payee_id`, not yet stored: a duplicate of an earlier
/// report of it, the payment of the order holding its amount (locked, paid by the caller once
/// the payment is stored), or kept unmatched.
fn match_payment(
    conn: &mut PgConnection,
    rules: &OrderRules,
    device: &Device,
    report: &Report<'_>,
    payee_id: &str,
    amount: Amount,
) -> Result<Outcome, RuleError> {
    let notification = report.notification;
    let window = same_payment_window(notification, rules);
    // Reports of one amount on one payee are matched one at a time (the amount is locked first),
    // so that two copies of one payment processed at once see each other. A retry whose first
    // request died, and a copy of the payment reported before, are matched as of the first.
    let reads = match_rows::lock_and_read(
        conn,
        &Lookup {
            payee_id,
            amount: amount.as_decimal(),
            device_id: DeviceId(&device.id),
            notification_id: &notification.notification_id,
            body_sha256: report.body_sha256,
            received_at: report.received_at,
            same_payment_key: report.same_payment_key,
            window,
            hold: rules.paid_hold(),
        },
    )?;
    let order = match reads.found {
        Found::Earlier { first } => {
            let reason = match window {
                Some(window) => format!(
                    "the same payment as {first}: the same device, channel, amount and text \
                     within {} s",
                    window.as_secs()
                ),
                None => format!(
                    "the same notification as {first}: the same device, channel, amount, text \
                     and post time"
                ),
            };
            return Ok(Outcome::duplicate(Some(first), reason));
        }
        Found::Nothing => return Ok(Outcome::kept(PaymentResult::Unmatched, None)),
        Found::Holder(order) => order,
    };
    Ok(match order.status {
        OrderStatus::Pending | OrderStatus::Expired => {
            match seen_before_holder(notification, report, &order)
                .or_else(|| contested(&order, rules))
            {
                // Paid for before this order held the amount (another order's late payment,
                // or an old notification sent again), or perhaps the same payment as a report
                // that was not decided when it took the amount: never this order's.
                Some(reason) => Outcome::kept(PaymentResult::Unmatched, Some(reason)),
                None => Outcome {
                    pays: Some(Pays {
                        order,
                        arrived_at: reads.arrived_at,
                    }),
                    ..Outcome::kept(PaymentResult::Matched, None)
                },
            }
        }
        OrderStatus::Paid => duplicate_of_paid(conn, &order)?,
        OrderStatus::Closed => Outcome::kept(
            PaymentResult::Unmatched,
            Some(format!(
                "order {} held this amount when the payment arrived, and was closed",
                order.id
            )),
        ),
    })
}

/// How much earlier than an order's holding time a payment must have been seen, by the server's
/// clock as the request itself sets the phone's against it, before it is told apart from the
/// order's own: room for the phone's clock to be adjusted between showing the notification and
/// signing the request, and for the rounding of a timestamp to the second.
const SEEN_MARGIN_SECS: i64 = 2;

/// Why the phone's own times say the payment was made before `order` held its amount, if they
/// do: the notification was seen before the order existed (beyond any clock skew a signed
/// request can have), or, with the phone's clock set against the server's by the request
/// itself (it signed at `signed_at` by the phone's clock and arrived at `received_at` by the
/// database's), more than [`SEEN_MARGIN_SECS`] before it. The second finds a payment of an
/// order whose grace ended while the phone held its notification, when a new order has taken
/// the amount since; a request signed long before it was sent only makes it find less.
fn seen_before_holder(
    notification: &Notification,
    report: &Report<'_>,
    order: &Holder,
) -> Option<String> {
    let seen = seen_before(notification)?;
    if seen < order.created_at - chrono::Duration::seconds(SIGNATURE_WINDOW_SECS) {
        return Some(format!(
            "the phone saw this payment at {}, before order {} held the amount ({})",
            seen.to_rfc3339(),
            order.id,
            order.created_at.to_rfc3339()
        ));
    }
    let signed_at = report.signed_at?;
    let seen_by_server = seen - (signed_at - report.received_at);
    (seen_by_server < order.created_at - chrono::Duration::seconds(SEEN_MARGIN_SECS)).then(|| {
        format!(
            "the phone saw this payment at {} by its clock, which read {} when it signed the \
             request that arrived at {}: at {} by the server's, before order {} held the amount \
             ({})",
            seen.to_rfc3339(),
            signed_at.to_rfc3339(),
            report.received_at.to_rfc3339(),
            seen_by_server.to_rfc3339(),
            order.id,
            order.created_at.to_rfc3339()
        )
    })
}

/// Why `order` may not be this payment's after all, when a report that arrived before it held
/// the amount was not decided when it took it ([`Contest`]): that report may pay the order
/// before it as of its arrival, and this one may be the same payment reported again.
fn contested(order: &Holder, rules: &OrderRules) -> Option<String> {
    let hold = rules.paid_hold().as_secs();
    Some(match order.contested.as_ref()? {
        Contest::Unprocessed { row, arrived_at } => format!(
            "notification {row} of this device arrived at {}, within {hold} s before this \
             payment and before order {} held the amount ({}), and is not processed yet: it may \
             be this very payment, which then is not order {}'s",
            arrived_at.to_rfc3339(),
            order.id,
            order.created_at.to_rfc3339(),
            order.id
        ),
        Contest::OutOfSight {
            payment_id,
            arrived_at,
        } => format!(
            "payment {payment_id} of this amount arrived at {}, within {hold} s before this \
             payment, and was decided where the allocation of order {} ({}) could not see it: \
             this may be that payment reported again, which then is not order {}'s",
            arrived_at.to_rfc3339(),
            order.id,
            order.created_at.to_rfc3339(),
            order.id
        ),
        Contest::PaidSince {
            payment_id,
            arrived_at,
        } => format!(
            "payment {payment_id} of this amount arrived at {}, after this one, and paid \
             another order: this may be that payment reported again, which then is not order \
             {}'s",
            arrived_at.to_rfc3339(),
            order.id
        ),
    })
}

/// The earliest time the phone says it saw the notification (its post time, or when the
/// listener read it).
fn seen_before(notification: &Notification) -> Option<DateTime<Utc>> {
    [notification.android.posted_at, notification.reported_at]
        .into_iter()
        .flatten()
        .min()
}

/// A payment of a paid order's amount within its reservation: the same payment reported again
/// (or a second payment of an order already paid), never a credit to another order.
fn duplicate_of_paid(conn: &mut PgConnection, order: &Holder) -> Result<Outcome, RuleError> {
    let original = payment_rows::of_order(conn, &order.id)?.into_iter().next();
    let paid_at = order
        .paid_at
        .map_or_else(|| "earlier".to_owned(), |at| at.to_rfc3339());
    let reason = match &original {
        Some(original) => format!(
            "order {} was paid by {} at {paid_at}; the same amount on the same payee within the \
             grace is that payment reported again",
            order.id, original.id
        ),
        None => format!(
            "order {} was paid by the operator at {paid_at}; the same amount on the same payee \
             within the grace is kept for the operator",
            order.id
        ),
    };
    Ok(Outcome::duplicate(original.map(|p| p.id), reason))
}

/// What two reports of one payment share, hashed: the channel, the listener's amount, the app,
/// the normalised title and text (a stacked copy's `[N条]sender: ` left out) and the post time
/// when the source gives one. `None` where the source's ids already tell payments apart and no
/// post time says otherwise.
pub fn same_payment_key(n: &Notification) -> Option<Vec<u8>> {
    let channel = n
        .channel
        .or_else(|| n.package.as_deref().and_then(channel_of_package))
        .map_or("", |c| c.as_str());
    let title = normalise(n.title.as_deref().unwrap_or_default());
    let text = normalise(n.text.as_deref().unwrap_or_default());
    let message = unstack(&title, &text).unwrap_or(&text);
    let parts = match (n.distinct_ids, n.android.posted_at) {
        (true, None) => return None,
        // One Android notification: its post time and text, however the listener fills the
        // optional fields (an amount, the package) when it sends it again.
        (_, Some(posted)) => vec![
            "posted".to_owned(),
            channel.to_owned(),
            posted.timestamp_millis().to_string(),
            title.clone(),
            message.to_owned(),
        ],
        (false, None) => vec![
            "content".to_owned(),
            channel.to_owned(),
            n.amount.map(|a| a.to_string()).unwrap_or_default(),
            n.package.as_deref().map(normalise).unwrap_or_default(),
            title.clone(),
            message.to_owned(),
        ],
    };
    Some(sha256(parts.join("\u{1f}").as_bytes()).to_vec())
}

/// How far apart two reports sharing a [`same_payment_key`] may arrive and still be one
/// payment: without a post time, the duplicate window (the text alone could be a second
/// payment later on); with one, any time (it is the same Android notification, re-sent).
pub fn same_payment_window(n: &Notification, rules: &OrderRules) -> Option<Duration> {
    match n.android.posted_at {
        Some(_) => None,
        None => Some(rules.duplicate_window),
    }
}

/// [`same_payment_window`] of the stored notification `row`, as read when it arrived. When what
/// was read is no longer kept (compacted by retention) or cannot be read back, the duplicate
/// window: a key without a post time is only the text, which a second payment of the same
/// amount may share days later, and a key with one is one Android notification, which is
/// reported again within minutes if at all.
pub fn stored_payment_window(
    conn: &mut PgConnection,
    rules: &OrderRules,
    row: i64,
) -> Result<Option<Duration>, RuleError> {
    let reading = raw_rows::reading_of(conn, row)?;
    Ok(
        match reading.and_then(|reading| serde_json::from_value::<Notification>(reading).ok()) {
            Some(notification) => same_payment_window(&notification, rules),
            None => Some(rules.duplicate_window),
        },
    )
}
