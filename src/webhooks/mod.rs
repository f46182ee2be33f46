//! The outbox worker: drains due webhook deliveries on every instance. A delivery is claimed
//! (attempt number and lease) in one statement with `FOR NO KEY UPDATE SKIP LOCKED`, attempted, and
//! settled with its attempt record in one transaction. Woken through `LISTEN` by whatever writes a
//! delivery (an order's event) or makes one due again (a redelivery), and locally when one of its
//! own attempts ends, with a polling fallback for retries that come due.

pub mod sender;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::core::compat::{Callback, PaidOrder, callback, vpay, with_query};
use crate::core::error::RuleError;
use crate::core::platform_keys::epay_v2_key;
use crate::core::rsa_signing::PlatformKey;
use crate::core::webhooks::{Next, Payload, accepted, after_failure, signature_header};
use crate::db::merchants::Merchant;
use crate::db::orders::{self as order_rows, Order};
use crate::db::payments as payment_rows;
use crate::db::sealed::Sealed;
use crate::db::webhooks::{self as delivery_rows, Claimed, Delivery, NewAttempt, Settled};
use crate::db::{Db, merchants as merchant_rows, retry_aborted, transaction_with_retry};
use crate::db::{StorageError, StorageFailure};
use crate::domain::{AuditAction, Operator};
use crate::domain::{DeliveryKind, EventType};
use crate::metrics::Metrics;
use sender::{Request, Sender};

/// A claimed delivery with everything its attempt needs.
struct ClaimedDelivery {
    delivery: Delivery,
    /// What the request is made of, or why it could not be loaded (recorded as the attempt's
    /// error, so that one broken row never holds up the others claimed with it).
    content: Result<DeliveryContent, String>,
}

struct DeliveryContent {
    event_type: EventType,
    event_created_at: chrono::DateTime<Utc>,
    data: serde_json::Value,
    secrets: Vec<Sealed>,
    /// For the old protocols' callbacks: what the callback describes.
    compat: Option<CompatContent>,
}

/// What an old protocol's callback is made of: the order, its merchant (pid, md5 key), the
/// payment that paid it, and for 易支付 V2 the platform's key.
struct CompatContent {
    order: Order,
    merchant: Merchant,
    payment_id: Option<String>,
    platform_key: Option<std::sync::Arc<PlatformKey>>,
}

#[derive(Clone)]
struct Worker {
    db: Db,
    sender: Sender,
    schedule: Arc<Vec<Duration>>,
    lease: Duration,
    /// Attempts in flight to one destination, all instances together.
    per_destination: i64,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

/// Starts the delivery worker of this instance.
pub fn spawn(
    db: Db,
    settings: &Settings,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, String> {
    let worker = Worker {
        db,
        sender: Sender::new(settings.webhook_timeout, settings.allow_private_webhooks)?,
        schedule: Arc::new(settings.webhook_retry_schedule.clone()),
        // Longer than an attempt can take (the client enforces the timeout) plus recording it,
        // so a lease only runs out when its holder died; then another instance takes over.
        lease: settings.webhook_timeout + Duration::from_secs(10),
        per_destination: i64::try_from(settings.webhook_per_destination).unwrap_or(i64::MAX),
        metrics,
        wake,
    };
    let concurrency = settings.webhook_concurrency;
    let poll = settings.webhook_poll_interval;
    Ok(tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(concurrency));
        loop {
            let free = slots.available_permits();
            let mut claimed = 0;
            if free > 0 {
                match worker.claim(free).await {
                    Ok(deliveries) => {
                        claimed = deliveries.len();
                        for claim in deliveries {
                            let Ok(slot) = slots.clone().acquire_owned().await else {
                                return;
                            };
                            let worker = worker.clone();
                            tokio::spawn(async move {
                                worker.attempt(claim).await;
                                drop(slot);
                                // A slot is free: look for more due work.
                                worker.wake.notify_one();
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot claim webhook deliveries"),
                }
            }
            if free > 0 && claimed == free {
                continue; // possibly more due right now
            }
            tokio::select! {
                _ = worker.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => break,
            }
        }
        // Let attempts in flight finish and be recorded.
        let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(worker.lease, slots.acquire_many(all)).await;
    }))
}

/// The event and the merchant's signing secrets (read with the claim) and, for the old
/// protocols, the order and merchant.
fn load_content(conn: &mut PgConnection, claimed: Claimed) -> Result<DeliveryContent, RuleError> {
    let delivery = &claimed.delivery;
    let gone =
        |what: &str| RuleError::internal(format!("the {what} of delivery {} is gone", delivery.id));
    let (Some(event_type), Some(event_created_at), Some(data)) = (
        claimed.event_type,
        claimed.event_created_at,
        claimed.event_data,
    ) else {
        return Err(gone("event"));
    };
    let current = claimed.webhook_secret.ok_or_else(|| gone("merchant"))?;
    let secrets = std::iter::once(current)
        .chain(claimed.previous_webhook_secret)
        .map(|stored| Sealed::open_stored(&stored).map_err(RuleError::internal))
        .collect::<Result<Vec<_>, _>>()?;
    let compat = if delivery.kind == DeliveryKind::Standard {
        None
    } else {
        let order = order_rows::find(conn, &delivery.order_id)?;
        let merchant = merchant_rows::find(conn, &delivery.merchant_id)?;
        let payment_id = payment_rows::of_order(conn, &delivery.order_id)?
            .into_iter()
            .next()
            .map(|payment| payment.id);
        let platform_key = match delivery.kind {
            DeliveryKind::Epay2 => Some(epay_v2_key(conn)?),
            _ => None,
        };
        order.zip(merchant).map(|(order, merchant)| CompatContent {
            order,
            merchant,
            payment_id,
            platform_key,
        })
    };
    Ok(DeliveryContent {
        event_type,
        event_created_at,
        data,
        secrets,
        compat,
    })
}

impl Worker {
    /// The request a delivery's kind calls for: a signed Standard Webhooks POST, or an old
    /// protocol's signed GET.
    fn request(&self, claim: &ClaimedDelivery, timestamp: i64) -> Result<Request, String> {
        let delivery = &claim.delivery;
        let content = claim.content.as_ref().map_err(Clone::clone)?;
        let get = |fields: Vec<(&'static str, String)>| Request {
            method: reqwest::Method::GET,
            url: with_query(&delivery.url, &fields),
            body: Vec::new(),
            headers: Vec::new(),
        };
        match (delivery.kind, &content.compat) {
            (DeliveryKind::Standard, _) => {
                let body = Payload::body(
                    &delivery.event_id,
                    content.event_type,
                    content.event_created_at,
                    &content.data,
                );
                let secrets: Vec<&str> = content.secrets.iter().map(Sealed::expose).collect();
                let signature = signature_header(&secrets, &delivery.event_id, timestamp, &body)
                    .map_err(|e| e.to_string())?;
                Ok(Request {
                    method: reqwest::Method::POST,
                    url: delivery.url.clone(),
                    body,
                    headers: vec![
                        ("webhook-id", delivery.event_id.clone()),
                        ("webhook-timestamp", timestamp.to_string()),
                        ("webhook-signature", signature),
                    ],
                })
            }
            (kind, Some(compat)) => {
                let paid = PaidOrder {
                    order: &compat.order,
                    merchant: &compat.merchant,
                    payment_id: compat.payment_id.as_deref(),
                };
                Ok(
                    match callback(kind, &paid, compat.platform_key.as_deref(), timestamp)? {
                        Callback::Query(fields) if kind == DeliveryKind::Vpay => Request {
                            url: with_query(
                                &vpay::notify_url(&delivery.url, &compat.order),
                                &fields,
                            ),
                            ..get(Vec::new())
                        },
                        Callback::Query(fields) => get(fields),
                        Callback::Json(body) => Request {
                            method: reqwest::Method::POST,
                            url: delivery.url.clone(),
                            body,
                            headers: Vec::new(),
                        },
                    },
                )
            }
            (_, None) => Err("the order or merchant of this callback is gone".into()),
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<ClaimedDelivery>, RuleError> {
        let lease = self.lease;
        let per_destination = self.per_destination;
        self.db
            .run(move |conn| -> Result<_, RuleError> {
                let due = delivery_rows::claim_due(
                    conn,
                    i64::try_from(limit).unwrap_or(1),
                    per_destination,
                    lease,
                )?;
                let mut claimed = Vec::with_capacity(due.len());
                for row in due {
                    let delivery = row.delivery.clone();
                    let content = match load_content(conn, row) {
                        Ok(content) => Ok(content),
                        Err(e) if e.storage_error().is_some_and(StorageError::is_unavailable) => {
                            return Err(e);
                        }
                        Err(error) => {
                            tracing::warn!(delivery = %delivery.id, %error, "cannot load a delivery");
                            Err(format!("cannot load the delivery: {error}"))
                        }
                    };
                    claimed.push(ClaimedDelivery { delivery, content });
                }
                Ok(claimed)
            })
            .await
    }

    async fn attempt(&self, claim: ClaimedDelivery) {
        let delivery = &claim.delivery;
        let started_at = Utc::now();
        let response = match self.request(&claim, started_at.timestamp()) {
            Ok(request) => self.sender.send(request).await,
            Err(error) => sender::Response {
                status: None,
                excerpt: None,
                error: Some(error),
                retry_after: None,
                latency: Duration::ZERO,
            },
        };

        let settled = if accepted(delivery.kind, response.status, response.excerpt.as_deref()) {
            Settled::Succeeded
        } else {
            let step = usize::try_from(delivery.retry_step).unwrap_or(usize::MAX);
            let jitter = rand::random_range(-1.0..=1.0);
            match after_failure(step, &self.schedule, response.retry_after, jitter) {
                Next::RetryAfter(wait) => Settled::RetryIn(wait),
                Next::GiveUp => Settled::Failed,
                Next::Done => Settled::Succeeded,
            }
        };
        self.metrics
            .record_webhook_attempt(&settled, response.latency);
        let level_failed = matches!(settled, Settled::Failed);
        tracing::info!(
            delivery = %delivery.id,
            event = %delivery.event_id,
            attempt = delivery.attempts,
            status = response.status,
            latency_ms = u64::try_from(response.latency.as_millis()).unwrap_or(u64::MAX),
            outcome = ?settled,
            error = response.error.as_deref(),
            "webhook attempt"
        );
        if level_failed {
            tracing::warn!(delivery = %delivery.id, "webhook delivery failed after its last retry");
        }

        let record = RecordedAttempt {
            delivery_id: delivery.id.clone(),
            attempt: delivery.attempts,
            started_at,
            latency_ms: i32::try_from(response.latency.as_millis()).unwrap_or(i32::MAX),
            status_code: response.status.map(i32::from),
            excerpt: response.excerpt,
            error: response.error,
        };
        let attempted = delivery.clone();
        let recorded = self
            .db
            .run(move |conn| -> Result<_, RuleError> {
                let attempt = NewAttempt {
                    delivery_id: &record.delivery_id,
                    attempt: record.attempt,
                    started_at: record.started_at,
                    latency_ms: record.latency_ms,
                    status_code: record.status_code,
                    response_excerpt: record.excerpt.as_deref(),
                    error: record.error.as_deref(),
                };
                if matches!(settled, Settled::Succeeded) {
                    // Nothing for the owner to know: the record is one statement, on its own.
                    retry_aborted(|| {
                        delivery_rows::record_attempt(conn, &attempt, settled)
                            .map_err(RuleError::from)
                    })?;
                    return Ok(());
                }
                transaction_with_retry(conn, |conn| -> Result<_, RuleError> {
                    let settled_here = delivery_rows::record_attempt(conn, &attempt, settled)?;
                    // A delivery that keeps failing is the owner's to know, told with its record.
                    if settled_here {
                        let error = match (record.status_code, record.error.as_deref()) {
                            (_, Some(error)) => error.to_string(),
                            (Some(status), None) => format!("the endpoint answered {status}"),
                            (None, None) => "no answer".to_string(),
                        };
                        crate::core::alerts::webhook_attempted(
                            conn,
                            &attempted,
                            matches!(settled, Settled::Failed),
                            &error,
                        )?;
                    }
                    Ok(())
                })
            })
            .await;
        if let Err(error) = recorded {
            // The lease runs out and another attempt follows: at least once, never lost.
            tracing::warn!(delivery = %delivery.id, %error, "cannot record a webhook attempt");
        }
    }
}

/// An attempt's outcome, owned, to record on a blocking thread.
struct RecordedAttempt {
    delivery_id: String,
    attempt: i32,
    started_at: chrono::DateTime<Utc>,
    latency_ms: i32,
    status_code: Option<i32>,
    excerpt: Option<String>,
    error: Option<String>,
}

/// Makes a delivery due again with a fresh retry schedule and wakes the workers.
pub fn redeliver(
    conn: &mut PgConnection,
    operator: Operator<'_>,
    id: &str,
) -> Result<Delivery, RuleError> {
    transaction_with_retry(conn, |conn| {
        let Some(delivery) = delivery_rows::redeliver(conn, id)? else {
            return Err(match delivery_rows::find(conn, id)? {
                Some(_) => {
                    RuleError::InvalidState("an attempt of this delivery is in progress".into())
                }
                None => RuleError::not_found("webhook delivery"),
            });
        };
        crate::db::wakeups::wake(conn, crate::db::wakeups::Wakeup::DeliveryDue)?;
        crate::core::reconciliation::audit(
            conn,
            operator,
            AuditAction::WebhookRedeliver,
            id,
            None,
            serde_json::json!({ "previous_status": delivery.status }),
        )?;
        Ok(delivery)
    })
}
