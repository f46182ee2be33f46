//! The operator's answers to "did this person pay?": paying an order by hand, assigning a kept
//! payment to an order, the daily summary, and the audit record every operator action leaves.

use chrono::NaiveDate;
use diesel::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Date, Text};
use rust_decimal::Decimal;

use crate::core::error::RuleError;
use crate::core::notifications::stored_payment_window;
use crate::core::orders::{OrderRules, pay_locked};
use crate::db::audit::{self as audit_rows, NewAuditEntry};
use crate::db::orders::{self as order_rows, Order};
use crate::db::payments::{self as payment_rows, Payment};
use crate::db::transaction_with_retry;
use crate::domain::{AuditAction, Operator, OrderId, OrderStatus, PaymentId, PaymentResult};

/// Records an operator action on the object `target_id` (of the kind the action is done to);
/// part of the action's transaction.
pub fn audit(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    action: AuditAction,
    target_id: &str,
    note: Option<&str>,
    details: serde_json::Value,
) -> Result<(), RuleError> {
    audit_rows::insert(
        conn,
        &NewAuditEntry {
            operator: operator.as_str(),
            action,
            target_type: action.target(),
            target_id,
            note,
            details,
        },
    )?;
    Ok(())
}

/// Pays an order by the operator's hand (the payer proved payment some other way): a pending,
/// expired or closed order becomes paid and emits `order.paid` like an automatic payment.
pub fn mark_paid(
    conn: &mut PgConnection,
    rules: &OrderRules,
    operator: Operator<'_>,
    order_id: OrderId<'_>,
    note: &str,
) -> Result<Order, RuleError> {
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let (order, overdue) = order_rows::lock(conn, order_id.as_str())?
            .ok_or_else(|| RuleError::not_found("order"))?;
        if order.status == OrderStatus::Paid {
            return Err(RuleError::InvalidState("the order is already paid".into()));
        }
        let paid = pay_by_hand(conn, rules, &order, overdue)?;
        audit(
            conn,
            operator,
            AuditAction::OrderMarkPaid,
            order_id.as_str(),
            Some(note),
            serde_json::json!({ "previous_status": order.status }),
        )?;
        Ok(paid)
    })
}

/// Pays an order (pending, expired or closed) with a payment that paid nothing: a payer who sent
/// the wrong amount, paid after the grace, or while the listener was offline. Once, in one
/// transaction: a payment pays at most one order and an order is paid at most once.
///
/// What could credit one payment twice needs `second_payment` (the payer really paid twice): a
/// `duplicate`, any report of a payment another report of which already paid an order, and any
/// payment with a report of the same amount from its phone within a paid order's hold of it that
/// paid an order or is not decided yet (another app's copy of one payment shares nothing else
/// with the first). What makes the payment a doubtful fit for the order needs
/// `accept_differences`: another amount (or none read), channel or payee, or a reading that
/// proves no payment (`untrusted`, `contradicted`, `unparsed`).
pub fn assign_payment(
    conn: &mut PgConnection,
    rules: &OrderRules,
    operator: Operator<'_>,
    assignment: &Assignment<'_>,
) -> Result<(Payment, Order), RuleError> {
    let Assignment {
        payment_id,
        order_id,
        note,
        second_payment,
        accept_differences,
    } = *assignment;
    transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        // First the lock matching takes for the reports of one payment, so that a copy being
        // matched meanwhile is decided before or after this assign, never beside it.
        payment_rows::lock_reports_of_same_payment(conn, payment_id)?;
        let payment =
            payment_rows::lock(conn, payment_id)?.ok_or_else(|| RuleError::not_found("payment"))?;
        if let Some(paid) = &payment.order_id {
            return Err(RuleError::InvalidState(format!(
                "the payment already pays order {paid}"
            )));
        }
        // Every report of one payment is decided one at a time: the first report's row is the
        // lock they share (taken after the report's own, as every assign does).
        let first = payment.duplicate_of.as_deref().unwrap_or(&payment.id);
        if first != payment.id {
            payment_rows::lock(conn, first)?;
        }
        if !second_payment {
            if let Some(credited) = payment_rows::order_paid_by_reports_of(conn, first)? {
                return Err(RuleError::InvalidState(format!(
                    "another report of this payment paid order {credited}: assign it only if \
                     the payer paid twice, with \"second_payment\": true"
                )));
            }
            // A report withheld from matching (untrusted, say) is no duplicate of the report of
            // the same payment that was matched: they share the device and the key.
            let window = stored_payment_window(conn, rules, payment.notification_row)?;
            if let Some((other, credited)) =
                payment_rows::order_paid_by_same_payment(conn, &payment.id, window)?
            {
                return Err(RuleError::InvalidState(format!(
                    "payment {other}, reported by the same device with the same text, paid \
                     order {credited}: assign this one only if the payer paid twice, with \
                     \"second_payment\": true"
                )));
            }
            // Another app's copy of the payment (a report the matching kept because it
            // contested an order) shares no key with the first: what arrived from the phone
            // within a paid order's hold of it may be the same payment. First what is still
            // undecided, then what paid: a report decided between the two reads is seen by the
            // second.
            let hold = rules.paid_hold();
            if let Some(row) = payment_rows::undecided_report_nearby(conn, &payment.id, hold)? {
                return Err(RuleError::InvalidState(format!(
                    "notification {row} from the same device, which arrived within {} s of this \
                     payment, is not processed yet and may be this payment reported again: look \
                     again once the sweep has finished it (normally within a minute), or assign \
                     this one now only if you know it is another payment, with \
                     \"second_payment\": true",
                    hold.as_secs()
                )));
            }
            if let Some((other, credited)) =
                payment_rows::order_paid_by_payment_nearby(conn, &payment.id, hold)?
            {
                return Err(RuleError::InvalidState(format!(
                    "payment {other}, from the same device within {} s of this one (of its \
                     channel and amount, where both were read), paid order {credited}: this may \
                     be that payment reported again (another app's copy); assign this one only \
                     if you know it is another payment (another payer, or the payer paid twice), \
                     with \"second_payment\": true",
                    hold.as_secs()
                )));
            }
            if payment.result == PaymentResult::Duplicate {
                let instead = match &payment.duplicate_of {
                    Some(first) => format!(" (or assign its first report, {first})"),
                    None => String::new(),
                };
                return Err(RuleError::InvalidState(format!(
                    "the payment is a duplicate ({}): assign it only if the payer paid twice, \
                     with \"second_payment\": true{instead}",
                    payment
                        .reason
                        .as_deref()
                        .unwrap_or("a report of an earlier payment")
                )));
            }
        }
        let (order, overdue) =
            order_rows::lock(conn, order_id)?.ok_or_else(|| RuleError::not_found("order"))?;
        if order.status == OrderStatus::Paid {
            return Err(RuleError::InvalidState("the order is already paid".into()));
        }
        let differences = differences(&payment, &order);
        if !differences.is_empty() && !accept_differences {
            return Err(RuleError::InvalidState(format!(
                "the payment does not fit the order: {}; assign it anyway with \
                 \"accept_differences\": true",
                differences.join("; ")
            )));
        }
        let paid = pay_by_hand(conn, rules, &order, overdue)?;
        let assigned = payment_rows::assign(conn, PaymentId(payment_id), OrderId(order_id))?;
        audit(
            conn,
            operator,
            AuditAction::PaymentAssign,
            payment_id,
            note,
            serde_json::json!({
                "order_id": order_id,
                "previous_result": payment.result,
                "payment_amount": payment.amount.map(|a| a.to_string()),
                "payable_amount": order.payable_amount.to_string(),
                "previous_order_status": order.status,
                "second_payment": second_payment,
                "differences": differences,
            }),
        )?;
        Ok((assigned, paid))
    })
}

/// An operator's assignment of a payment to an order, with what the operator confirms.
#[derive(Debug, Clone, Copy)]
pub struct Assignment<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub note: Option<&'a str>,
    /// The payer paid twice: a report of a payment that already paid an order may pay another.
    pub second_payment: bool,
    /// The operator has seen how the payment differs from the order and assigns it anyway.
    pub accept_differences: bool,
}

/// How a payment differs from what the order asks for, in words for the operator.
pub fn differences(payment: &Payment, order: &Order) -> Vec<String> {
    let mut differences = Vec::new();
    let payable = order.payable_amount;
    let read_the_payable = payment
        .amounts_read
        .iter()
        .flatten()
        .any(|read| *read == Some(payable));
    match payment.amount {
        Some(amount) if amount == payable => {}
        None if read_the_payable => {}
        Some(amount) => differences.push(format!(
            "it is {amount}, the order's payable amount is {payable}"
        )),
        None => differences.push(format!(
            "no amount was read, the order's payable amount is {payable}"
        )),
    }
    match payment.channel {
        Some(channel) if channel == order.channel => {}
        Some(channel) => differences.push(format!(
            "it came through {channel}, the order is for {}",
            order.channel
        )),
        None => differences.push("its channel is unknown".into()),
    }
    if payment.payee_id.as_deref() != Some(order.payee_id.as_str()) {
        differences.push(format!(
            "it reached payee {}, the order's payee is {}",
            payment.payee_id.as_deref().unwrap_or("unknown"),
            order.payee_id
        ));
    }
    if matches!(
        payment.result,
        PaymentResult::Untrusted | PaymentResult::Contradicted | PaymentResult::Unparsed
    ) {
        differences.push(format!(
            "it is kept as {}: nothing proves the payment ({})",
            payment.result,
            payment.reason.as_deref().unwrap_or("no reason recorded")
        ));
    }
    differences
}

/// One day and channel of the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub date: NaiveDate,
    pub channel: Option<String>,
    pub orders_created: i64,
    pub orders_paid: i64,
    pub orders_expired: i64,
    pub amount_paid: Decimal,
    pub payments_unmatched: i64,
    pub payments_unparsed: i64,
    pub payments_ambiguous: i64,
    pub payments_untrusted: i64,
    pub payments_contradicted: i64,
    pub payments_duplicate: i64,
}

/// Today's date in `timezone`, by the database clock.
pub fn today_in(conn: &mut PgConnection, timezone: &str) -> Result<NaiveDate, RuleError> {
    Ok(diesel::select(
        diesel::dsl::sql::<Date>("(now() AT TIME ZONE ")
            .bind::<Text, _>(timezone.to_string())
            .sql(")::date"),
    )
    .get_result(conn)?)
}

/// The time zone names Postgres has confirmed, in this process. Asking it reads every zone file
/// (`pg_timezone_names`: 50 to 70 ms on this project's machine, most of a month's summary), and
/// a name it knows stays known; only names it confirmed are kept, so the set is bounded by the
/// zone database.
static KNOWN_ZONES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// Refuses a time zone Postgres does not know by name (an offset such as `UTC+8` included).
fn check_zone(conn: &mut PgConnection, timezone: &str) -> Result<(), RuleError> {
    let known = |zones: &std::collections::HashSet<String>| zones.contains(timezone);
    if KNOWN_ZONES.lock().is_ok_and(|zones| known(&zones)) {
        return Ok(());
    }
    #[derive(QueryableByName)]
    struct Known {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        known: bool,
    }
    let zone: Known = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1) AS known",
    )
    .bind::<Text, _>(timezone)
    .get_result(conn)?;
    if !zone.known {
        return Err(RuleError::InvalidRequest(format!(
            "unknown time zone {timezone:?}"
        )));
    }
    if let Ok(mut zones) = KNOWN_ZONES.lock() {
        zones.insert(timezone.to_owned());
    }
    Ok(())
}

/// Per day (in `timezone`) and channel, from `from` to `to` inclusive: orders created, paid and
/// expired (an order paid late counts as expired too), the amount paid, and the payments that
/// paid nothing by result. Days without activity are left out.
pub fn daily_summary(
    conn: &mut PgConnection,
    from: NaiveDate,
    to: NaiveDate,
    timezone: &str,
) -> Result<Vec<DayTotals>, RuleError> {
    check_zone(conn, timezone)?;
    let rows = crate::db::summary::day_metrics(conn, from, to, timezone)?;

    // Keyed by day and channel; sorted by the key at the end.
    let mut days: std::collections::BTreeMap<(NaiveDate, Option<String>), DayTotals> =
        std::collections::BTreeMap::new();
    for row in rows {
        let day = days
            .entry((row.day, row.channel.clone()))
            .or_insert_with(|| DayTotals {
                date: row.day,
                channel: row.channel.clone(),
                ..DayTotals::default()
            });
        // A day may come twice: from the kept quarters and from the rows counted beside them.
        let count = match row.metric.as_str() {
            "created" => &mut day.orders_created,
            "paid" => {
                day.amount_paid += row.total.unwrap_or_default();
                &mut day.orders_paid
            }
            "expired" => &mut day.orders_expired,
            "payments_unmatched" => &mut day.payments_unmatched,
            "payments_unparsed" => &mut day.payments_unparsed,
            "payments_ambiguous" => &mut day.payments_ambiguous,
            "payments_untrusted" => &mut day.payments_untrusted,
            "payments_contradicted" => &mut day.payments_contradicted,
            "payments_duplicate" => &mut day.payments_duplicate,
            _ => continue,
        };
        *count += row.n;
    }
    Ok(days.into_values().collect())
}

/// Pays a locked order by the operator's hand (no notification: no arrival time).
fn pay_by_hand(
    conn: &mut PgConnection,
    rules: &OrderRules,
    order: &Order,
    overdue: bool,
) -> Result<Order, RuleError> {
    pay_locked(
        conn,
        OrderId(&order.id),
        order.status,
        overdue,
        None,
        rules.paid_hold(),
    )
}
