//! The owner-alert worker: drains due alert deliveries on every instance, like the merchant
//! webhook worker but apart from it (its own slots and HTTP client), so that a failing alert
//! channel never delays a merchant's webhook. A delivery is claimed under a lease with
//! `FOR NO KEY UPDATE SKIP LOCKED` (one instance sends it), sent, and recorded; failures are retried on
//! `SOLOPAY_ALERT_RETRY_SCHEDULE`, then the delivery is failed.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::PgConnection;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::core::alerts::channels::{
    ChannelSettings, EmailAlert, Message, Outgoing, SmtpSecurity, delivered, outgoing,
};
use crate::core::alerts::digest_body;
use crate::core::error::RuleError;
use crate::db::Db;
use crate::db::alerts::{self as alert_rows, Alert, Channel, Delivery, Outcome};
use crate::domain::AlertKind;
use crate::webhooks::sender::{Request, Sender};

/// Alert attempts in flight per instance.
const CONCURRENCY: usize = 4;
/// How long one attempt may take (the HTTP client's and SMTP's own timeout) before another
/// instance may take the delivery over.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Worker {
    db: Db,
    sender: Sender,
    schedule: Arc<Vec<Duration>>,
    wake: Arc<Notify>,
}

/// A claimed delivery with what it needs to be sent.
struct Claimed {
    delivery: Delivery,
    content: Result<(Alert, Channel, ChannelSettings, Option<String>), String>,
}

/// Starts this instance's alert worker.
pub fn spawn(
    db: Db,
    settings: &Settings,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, String> {
    let worker = Worker {
        db,
        sender: Sender::new(ATTEMPT_TIMEOUT, settings.allow_private_webhooks)?,
        schedule: Arc::new(settings.alert_retry_schedule.clone()),
        wake,
    };
    let poll = settings.webhook_poll_interval;
    Ok(tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
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
                                worker.wake.notify_one();
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot claim alert deliveries"),
                }
            }
            if free > 0 && claimed == free {
                continue;
            }
            tokio::select! {
                _ = worker.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => break,
            }
        }
        let all = u32::try_from(CONCURRENCY).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(ATTEMPT_TIMEOUT * 2, slots.acquire_many(all)).await;
    }))
}

/// The alert, its channel with its secrets opened, and a digest's body.
fn load(
    conn: &mut PgConnection,
    delivery: &Delivery,
) -> Result<(Alert, Channel, ChannelSettings, Option<String>), String> {
    let alert = alert_rows::find_alert(conn, &delivery.alert_id).map_err(|e| e.to_string())?;
    let channel = alert_rows::find_channel(conn, &delivery.channel_id)
        .map_err(|e| e.to_string())?
        .ok_or("the channel is gone")?;
    let settings = open_settings(&channel)?;
    let digest = if alert.kind == AlertKind::Digest {
        let members = alert_rows::digest_members(conn, &alert.id).map_err(|e| e.to_string())?;
        Some(digest_body(&members))
    } else {
        None
    };
    Ok((alert, channel, settings, digest))
}

/// A stored channel's settings with its secrets opened.
pub fn open_settings(channel: &Channel) -> Result<ChannelSettings, String> {
    let stored: ChannelSettings = serde_json::from_value(channel.config.clone())
        .map_err(|e| format!("unreadable channel settings: {e}"))?;
    stored.map_secrets(crate::db::sealed::open)
}

impl Worker {
    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, RuleError> {
        let lease = ATTEMPT_TIMEOUT + Duration::from_secs(10);
        self.db
            .run(move |conn| -> Result<_, RuleError> {
                let due = alert_rows::claim_due(conn, i64::try_from(limit).unwrap_or(1), lease)?;
                Ok(due
                    .into_iter()
                    .map(|delivery| {
                        let content = load(conn, &delivery);
                        Claimed { delivery, content }
                    })
                    .collect())
            })
            .await
    }

    async fn attempt(&self, claim: Claimed) {
        let delivery = claim.delivery;
        let error = match claim.content {
            Ok((alert, channel, settings, digest)) => {
                send(&self.sender, &alert, &channel, &settings, digest.as_deref()).await
            }
            Err(error) => Some(error),
        };
        let outcome = match &error {
            None => Outcome::Sent,
            Some(_) => {
                let retries = usize::try_from(delivery.attempts).unwrap_or(usize::MAX);
                match self.schedule.get(retries.saturating_sub(1)) {
                    Some(wait) => Outcome::RetryIn(*wait),
                    None => Outcome::Failed,
                }
            }
        };
        match &error {
            None => {
                tracing::info!(alert = %delivery.alert_id, channel = %delivery.channel_id, "alert sent")
            }
            Some(error) => tracing::warn!(
                alert = %delivery.alert_id, channel = %delivery.channel_id,
                attempt = delivery.attempts, %error, outcome = ?outcome, "alert not delivered"
            ),
        }
        let (id, attempt) = (delivery.id, delivery.attempts);
        let recorded = self
            .db
            .run(move |conn| -> Result<_, RuleError> {
                Ok(alert_rows::record(
                    conn,
                    id,
                    attempt,
                    outcome,
                    error.as_deref(),
                )?)
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "cannot record an alert attempt; it is tried again");
        }
    }
}

/// Sends an alert on a channel now; `None` when the service took it, else why not.
pub async fn send(
    sender: &Sender,
    alert: &Alert,
    channel: &Channel,
    settings: &ChannelSettings,
    digest: Option<&str>,
) -> Option<String> {
    let message = Message {
        id: &alert.id,
        kind: alert.kind.as_str(),
        subject: &alert.subject,
        title: &alert.title,
        body: digest.unwrap_or(&alert.body),
        details: &alert.details,
        created_at: alert.created_at,
    };
    match outgoing(settings, &message, Utc::now()) {
        Err(error) => Some(error),
        Ok(Outgoing::Http(http)) => {
            let response = sender
                .send(Request {
                    method: reqwest::Method::POST,
                    url: http.url,
                    body: http.body,
                    headers: http.headers,
                })
                .await;
            if delivered(channel.kind, response.status, response.excerpt.as_deref()) {
                None
            } else {
                Some(match (response.status, response.error, response.excerpt) {
                    (_, Some(error), _) => error,
                    (Some(status), None, excerpt) => format!(
                        "{} answered {status}: {}",
                        channel.kind,
                        excerpt.unwrap_or_default()
                    ),
                    (None, None, _) => "no answer".into(),
                })
            }
        }
        Ok(Outgoing::Email(email)) => send_email(email).await.err(),
    }
}

async fn send_email(email: EmailAlert) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let mut builder = lettre::Message::builder()
        .from(email.from.parse().map_err(|e| format!("from: {e}"))?)
        .subject(email.subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
    }
    let mail = builder.body(email.body).map_err(|e| e.to_string())?;
    let transport = match email.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&email.host)
            .map_err(|e| e.to_string())?,
        SmtpSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&email.host).map_err(|e| e.to_string())?
        }
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host),
    };
    let mut transport = transport.port(email.port).timeout(Some(ATTEMPT_TIMEOUT));
    if let Some((user, password)) = email.credentials {
        transport = transport.credentials(Credentials::new(user, password));
    }
    let response = transport
        .build()
        .send(mail)
        .await
        .map_err(|e| format!("smtp: {e}"))?;
    if response.is_positive() {
        Ok(())
    } else {
        Err(format!("smtp answered {}", response.code()))
    }
}
