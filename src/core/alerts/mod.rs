//! Owner alerts: when money may be slipping, solopay tells the owner at once. An alert is
//! written in the transaction of what caused it (an outbox, like merchant webhooks), with one
//! delivery per channel that sends its kind ([`channels`]); the alert worker sends them.
//!
//! What is told, and how often:
//! - a device going offline (once, until it is heard from again) and coming back; a device whose
//!   heartbeats go on while its notifications stopped and orders on its payees expired unpaid
//!   (the listener lost notification access: judged from the device's own history, once until
//!   it reports a notification again); a listener saying it has no notification access;
//! - a notification from a payment app that could not be read or that contradicts the
//!   listener's amount, and every payment kept for the operator; when more than
//!   [`DIGEST_AFTER`] of these come within [`DIGEST_WINDOW`], the rest of the window is told in
//!   one digest at its end;
//! - a merchant webhook failing [`WEBHOOK_FAILING_AFTER`] times in a row, and failing for good;
//! - a payee running out of free amounts at a price (a create reaching 80 % of the offset range,
//!   or refused for lack of one), at most once an hour per payee and price.

pub mod channels;

use std::time::Duration;

use diesel::PgConnection;

use crate::core::secrets::new_id;
use crate::db::StorageError;
use crate::db::alerts::{self as alert_rows, NewAlert};
use crate::db::devices::Device;
use crate::db::payments::Payment;
use crate::domain::{AlertKind, PaymentResult};

/// How many unreadable, contradicted and kept-payment alerts are told one by one within
/// [`DIGEST_WINDOW`] before the rest are gathered into a digest.
pub const DIGEST_AFTER: i64 = 3;
/// The window of a digest: it is sent at its end.
pub const DIGEST_WINDOW: Duration = Duration::from_secs(10 * 60);
/// A merchant webhook is reported failing at this attempt (and when it fails for good).
pub const WEBHOOK_FAILING_AFTER: i32 = 3;
/// Amounts running out at one payee and price are told at most this often.
const AMOUNTS_ALERT_EVERY: Duration = Duration::from_secs(3600);
/// Expired unpaid orders on a device's payees since its last notification before it is told
/// silent.
pub const SILENT_AFTER_EXPIRED: i64 = 3;

/// The kinds gathered into a digest when many come at once.
const GATHERED: &[AlertKind] = &[
    AlertKind::NotificationUnreadable,
    AlertKind::NotificationContradicted,
    AlertKind::PaymentKept,
];

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct Raise<'a> {
    pub kind: AlertKind,
    /// What it is about: a device, payment, delivery or payee id (for dedupe and the owner).
    pub subject: &'a str,
    pub title: String,
    pub body: String,
    pub details: serde_json::Value,
}

/// Raises an alert in the caller's transaction, unless the rules above say it was told already;
/// returns its id.
pub fn raise(conn: &mut PgConnection, alert: Raise<'_>) -> Result<Option<String>, StorageError> {
    let mut digest_id = None;
    if GATHERED.contains(&alert.kind)
        && alert_rows::count_recent(conn, GATHERED, DIGEST_WINDOW)? >= DIGEST_AFTER
    {
        digest_id = Some(match alert_rows::gathering_digest(conn, DIGEST_WINDOW)? {
            Some(open) => open,
            None => open_digest(conn)?,
        });
    }
    if alert.kind == AlertKind::AmountsRunningOut
        && alert_rows::raised_recently(conn, alert.kind, alert.subject, AMOUNTS_ALERT_EVERY)?
    {
        return Ok(None);
    }
    let id = new_id("alr");
    alert_rows::insert(
        conn,
        &NewAlert {
            id: &id,
            kind: alert.kind,
            subject: alert.subject,
            title: &alert.title,
            body: &alert.body,
            details: &alert.details,
            digest_id: digest_id.as_deref(),
        },
        &[alert.kind],
        None,
    )?;
    crate::db::wakeups::wake(conn, crate::db::wakeups::Wakeup::AlertDue)?;
    Ok(Some(id))
}

/// A digest, sent at the end of its window with whatever joined it.
fn open_digest(conn: &mut PgConnection) -> Result<String, StorageError> {
    let id = new_id("alr");
    alert_rows::insert(
        conn,
        &NewAlert {
            id: &id,
            kind: AlertKind::Digest,
            subject: "payments",
            title: "Several payments and notifications need a look",
            body: "",
            details: &serde_json::json!({}),
            digest_id: None,
        },
        // Every channel that takes one of the gathered kinds hears the digest, so a channel
        // that chose `payment.kept` alone still hears the fourth kept payment in a window.
        &[&[AlertKind::Digest], GATHERED].concat(),
        Some(DIGEST_WINDOW),
    )?;
    Ok(id)
}

/// What a digest says, from the alerts it gathered.
pub fn digest_body(members: &[alert_rows::Alert]) -> String {
    let mut lines = vec![format!(
        "{} more in the last {} minutes:",
        members.len(),
        DIGEST_WINDOW.as_secs() / 60
    )];
    lines.extend(
        members
            .iter()
            .take(30)
            .map(|member| format!("- {} ({})", member.title, member.subject)),
    );
    if members.len() > 30 {
        lines.push(format!("- … and {} more", members.len() - 30));
    }
    lines.push("See GET /admin/payments for each.".into());
    lines.join("\n")
}

/// A payment was recorded: tells the owner when it is kept or unreadable. Part of the
/// recording's transaction.
pub fn payment_recorded(
    conn: &mut PgConnection,
    device: &Device,
    payment: &Payment,
) -> Result<(), StorageError> {
    let from_payment_app = payment
        .package
        .as_deref()
        .is_some_and(|package| crate::core::reading::channel_of_package(package).is_some());
    let (kind, what) = match payment.result {
        PaymentResult::Matched => return Ok(()),
        PaymentResult::Unparsed if from_payment_app => (
            AlertKind::NotificationUnreadable,
            "A notification from a payment app could not be read",
        ),
        PaymentResult::Contradicted => (
            AlertKind::NotificationContradicted,
            "A notification contradicts the listener's amount",
        ),
        PaymentResult::Unparsed => (AlertKind::PaymentKept, "A report could not be read"),
        PaymentResult::Unmatched => (AlertKind::PaymentKept, "A payment matched no order"),
        PaymentResult::Ambiguous => (
            AlertKind::PaymentKept,
            "A notification mentions more than one amount",
        ),
        PaymentResult::Duplicate => (AlertKind::PaymentKept, "A payment was reported again"),
        PaymentResult::Untrusted => (
            AlertKind::PaymentKept,
            "A notification came from an app this device may not report for",
        ),
    };
    let amount = payment
        .amount
        .map(|a| format!("¥{a}"))
        .unwrap_or_else(|| "no amount".into());
    raise(
        conn,
        Raise {
            kind,
            subject: &payment.id,
            title: format!("{what}: {amount} on {}", device.name),
            body: format!(
                "Payment {} ({}) from device {}: {}.\nCheck it with GET /admin/payments?result={}; \
                 assign it with POST /admin/payments/{}/assign.",
                payment.id,
                payment.result,
                device.name,
                payment.reason.as_deref().unwrap_or("no reason recorded"),
                payment.result,
                payment.id,
            ),
            details: serde_json::json!({
                "payment_id": payment.id, "result": payment.result, "device_id": device.id,
                "amount": payment.amount.map(|a| a.to_string()), "reason": payment.reason,
            }),
        },
    )?;
    Ok(())
}

/// A device told offline was heard from again (a heartbeat or a notification, whose recording
/// cleared the mark): the owner hears it is back. Part of the transaction that recorded it.
pub fn device_back(
    conn: &mut PgConnection,
    was: &Device,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<(), StorageError> {
    {
        raise(
            conn,
            Raise {
                kind: AlertKind::DeviceOnline,
                subject: &was.id,
                title: format!("{} is back online", was.name),
                body: format!(
                    "Device {} ({}) was heard from again; it was offline since {}.",
                    was.name,
                    was.id,
                    since.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                details: serde_json::json!({"device_id": was.id, "offline_since": since}),
            },
        )?;
    }
    Ok(())
}

/// The listener said whether it has notification access: losing it is told at once.
pub fn notification_access_reported(
    conn: &mut PgConnection,
    was: &Device,
    has_access: Option<bool>,
) -> Result<(), StorageError> {
    if has_access == Some(false) && was.notification_access != Some(false) {
        raise(
            conn,
            Raise {
                kind: AlertKind::NotificationAccessLost,
                subject: &was.id,
                title: format!("{} has no notification access", was.name),
                body: format!(
                    "The listener on {} ({}) says Android took its notification access away: \
                     it cannot see payments. Open the listener app and grant it again.",
                    was.name, was.id
                ),
                details: serde_json::json!({"device_id": was.id}),
            },
        )?;
    }
    Ok(())
}

/// The sweep's look at the devices: the ones that went offline, and the ones whose listener
/// went silent while orders on their payees expired unpaid. Returns how many alerts it raised.
pub fn sweep_devices(
    conn: &mut PgConnection,
    offline_after: Duration,
) -> Result<usize, StorageError> {
    let mut raised = 0;
    for device in crate::db::devices::mark_offline(conn, offline_after)? {
        let last = device
            .last_seen_at
            .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".into());
        raise(
            conn,
            Raise {
                kind: AlertKind::DeviceOffline,
                subject: &device.id,
                title: format!("{} is offline", device.name),
                body: format!(
                    "Device {} ({}) sent no heartbeat or notification for over {} s (last: {}). \
                     Its payees get no new orders until it is back: check the phone, its \
                     battery and the listener app.",
                    device.name,
                    device.id,
                    offline_after.as_secs(),
                    last
                ),
                details: serde_json::json!({"device_id": device.id, "last_seen_at": device.last_seen_at}),
            },
        )?;
        raised += 1;
    }
    for (device, expired) in
        crate::db::devices::mark_silent(conn, offline_after, SILENT_AFTER_EXPIRED)?
    {
        raise(
            conn,
            Raise {
                kind: AlertKind::ListenerSilent,
                subject: &device.id,
                title: format!("{} may have lost notification access", device.name),
                body: format!(
                    "Device {} ({}) keeps sending heartbeats, but reported no notification while \
                     {expired} orders on its payees expired unpaid. Android may have taken the \
                     listener's notification access away: open the listener app and check.",
                    device.name, device.id
                ),
                details: serde_json::json!({"device_id": device.id, "expired_unpaid": expired}),
            },
        )?;
        raised += 1;
    }
    Ok(raised)
}

/// A merchant webhook attempt was recorded: tells the owner when it keeps failing, and when it
/// failed for good. Part of the recording's transaction.
pub fn webhook_attempted(
    conn: &mut PgConnection,
    delivery: &crate::db::webhooks::Delivery,
    failed_for_good: bool,
    error: &str,
) -> Result<(), StorageError> {
    let (kind, title) = if failed_for_good {
        (
            AlertKind::WebhookFailed,
            format!("A webhook to {} failed for good", delivery.destination),
        )
    } else if delivery.attempts == WEBHOOK_FAILING_AFTER {
        (
            AlertKind::WebhookFailing,
            format!(
                "A webhook to {} failed {} times",
                delivery.destination, delivery.attempts
            ),
        )
    } else {
        return Ok(());
    };
    raise(
        conn,
        Raise {
            kind,
            subject: &delivery.id,
            title,
            body: format!(
                "Delivery {} of order {} to {} (merchant {}): {}.\n{}",
                delivery.id,
                delivery.order_id,
                // Not the URL: a merchant's may carry a token, and this goes to chat services.
                delivery.destination,
                delivery.merchant_id,
                error,
                if failed_for_good {
                    "No more retries: redeliver it with POST /admin/webhooks/{id}/redeliver once \
                     the merchant's endpoint works."
                } else {
                    "It is retried on its schedule."
                }
            ),
            details: serde_json::json!({
                "delivery_id": delivery.id, "order_id": delivery.order_id,
                "merchant_id": delivery.merchant_id, "attempts": delivery.attempts,
                "error": error,
            }),
        },
    )?;
    Ok(())
}

/// Where amounts ran short: one payee (a create took a deep offset on it), or every payee of a
/// channel (a create found no free amount on any).
#[derive(Debug, Clone, Copy)]
pub enum Shortage<'a> {
    Payee { payee_id: &'a str, offset: u32 },
    Channel(crate::domain::Channel),
}

/// A create went deep into the offset range (80 % of it or more), or found no free amount: the
/// owner hears that amounts are running out at this price.
pub fn amounts_running_out(
    conn: &mut PgConnection,
    shortage: Shortage<'_>,
    price: &str,
    max_steps: u32,
) -> Result<(), StorageError> {
    let (subject, where_, how) = match shortage {
        Shortage::Payee { payee_id, offset } => (
            format!("{payee_id}:{price}"),
            format!("payee {payee_id}"),
            format!("an order for ¥{price} had to take offset {offset} of {max_steps}"),
        ),
        Shortage::Channel(channel) => (
            format!("{channel}:{price}"),
            format!("every {channel} payee"),
            format!("an order for ¥{price} found no free amount on any"),
        ),
    };
    raise(
        conn,
        Raise {
            kind: AlertKind::AmountsRunningOut,
            subject: &subject,
            title: format!("Amounts are running out at ¥{price} on {where_}"),
            body: format!(
                "On {where_}, {how}. More payees for the channel, a larger \
                 SOLOPAY_MAX_OFFSET_STEPS or a shorter order TTL give more room."
            ),
            details: serde_json::json!({"subject": subject, "price": price,
                                        "max_offset_steps": max_steps}),
        },
    )?;
    Ok(())
}

/// Whether a create's offset is deep enough in the range to warn about.
pub fn is_deep(offset: u32, max_steps: u32) -> bool {
    max_steps > 0 && u64::from(offset) * 5 >= u64::from(max_steps) * 4
}

/// A channel the operator adds: settings checked, secrets sealed, a generic webhook given a
/// secret when it has none (shown once, in the answer), the change audited.
pub fn create_channel(
    conn: &mut PgConnection,
    operator: crate::domain::Operator<'_>,
    name: &str,
    settings: channels::ChannelSettings,
    kinds: Option<Vec<AlertKind>>,
    enabled: bool,
) -> Result<(alert_rows::Channel, channels::ChannelSettings), crate::core::error::RuleError> {
    use crate::core::error::RuleError;
    settings.check()?;
    let settings = match settings {
        channels::ChannelSettings::Webhook { url, secret: None } => {
            channels::ChannelSettings::Webhook {
                url,
                secret: Some(crate::core::secrets::new_webhook_secret()),
            }
        }
        other => other,
    };
    let stored = sealed(&settings)?;
    let id = new_id("alc");
    let kinds: Option<Vec<String>> =
        kinds.map(|kinds| kinds.iter().map(|k| k.as_str().to_string()).collect());
    let channel = crate::db::transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let channel = alert_rows::insert_channel(
            conn,
            &alert_rows::NewChannel {
                id: &id,
                kind: settings.kind(),
                name,
                config: &stored,
                kinds: kinds.clone(),
                enabled,
            },
        )?;
        crate::core::reconciliation::audit(
            conn,
            operator,
            crate::domain::AuditAction::AlertChannelCreate,
            &channel.id,
            None,
            serde_json::json!({"name": name, "kind": channel.kind}),
        )?;
        Ok(channel)
    })?;
    Ok((channel, settings))
}

/// Changes a channel; new settings replace the old ones whole (secrets included).
pub fn update_channel(
    conn: &mut PgConnection,
    operator: crate::domain::Operator<'_>,
    id: &str,
    changes: ChannelChanges,
) -> Result<alert_rows::Channel, crate::core::error::RuleError> {
    use crate::core::error::RuleError;
    let config = match &changes.settings {
        Some(settings) => {
            settings.check()?;
            Some(sealed(settings)?)
        }
        None => None,
    };
    crate::db::transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
        let before = alert_rows::find_channel(conn, id)?
            .ok_or_else(|| RuleError::not_found("alert channel"))?;
        if let Some(settings) = &changes.settings
            && settings.kind() != before.kind
        {
            return Err(RuleError::InvalidRequest(format!(
                "a {} channel stays one: create another channel for {}",
                before.kind,
                settings.kind()
            )));
        }
        let updated = alert_rows::update_channel(
            conn,
            id,
            &alert_rows::ChannelChanges {
                name: changes.name.clone(),
                config: config.clone(),
                kinds: changes.kinds.clone().map(|kinds| {
                    kinds.map(|kinds| kinds.iter().map(|k| k.as_str().to_string()).collect())
                }),
                enabled: changes.enabled,
            },
        )?
        .ok_or_else(|| RuleError::not_found("alert channel"))?;
        crate::core::reconciliation::audit(
            conn,
            operator,
            crate::domain::AuditAction::AlertChannelUpdate,
            id,
            None,
            serde_json::json!({
                "name": changes.name, "enabled": changes.enabled,
                "kinds": changes.kinds, "settings_replaced": changes.settings.is_some(),
            }),
        )?;
        Ok(updated)
    })
}

/// What an operator may change on a channel; `None` leaves it as it is.
#[derive(Debug, Default, Clone)]
pub struct ChannelChanges {
    pub name: Option<String>,
    pub settings: Option<channels::ChannelSettings>,
    /// `Some(None)`: every kind again.
    pub kinds: Option<Option<Vec<AlertKind>>>,
    pub enabled: Option<bool>,
}

fn sealed(
    settings: &channels::ChannelSettings,
) -> Result<serde_json::Value, crate::core::error::RuleError> {
    use crate::core::error::RuleError;
    let sealed = settings
        .clone()
        .map_secrets(crate::db::sealed::seal)
        .map_err(RuleError::internal)?;
    serde_json::to_value(sealed).map_err(RuleError::internal)
}
