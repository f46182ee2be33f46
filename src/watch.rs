//! Wakes long-polls when an order changes on any instance: every state change is followed by
//! `NOTIFY solopay_order_changed, '<order id>'` once its transaction commits ([`crate::db::wakeups`]);
//! each instance keeps one `LISTEN` connection and wakes the requests waiting on that order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::db::alerts::ALERT_DUE_CHANNEL;
use crate::db::events::ORDER_CHANGED_CHANNEL;
use crate::db::webhooks::DELIVERY_DUE_CHANNEL;

/// How often the LISTEN connection is checked.
const LISTENER_PING: Duration = Duration::from_secs(30);

/// Why the LISTEN connection was given up (and is opened again).
#[derive(Debug, thiserror::Error)]
enum ListenError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the connection did not answer a ping")]
    Unresponsive,
    #[error("the connection closed")]
    Closed,
}

/// The registry of waiting requests, by order id.
#[derive(Clone, Default)]
pub struct OrderWatch {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// Whether the LISTEN connection is up; while it is down, waiters re-read periodically.
    listening: AtomicBool,
    /// Wakes the webhook delivery worker: deliveries were written (with an order's events), or
    /// one was made due again. An order's change alone does not: most write no delivery (a
    /// merchant without a webhook URL), and each wake-up is a claim.
    deliveries_due: Arc<Notify>,
    /// Wakes the alert worker: an alert was raised.
    alerts_due: Arc<Notify>,
}

/// A request's interest in one order, for as long as it is held.
pub struct Subscription {
    watch: OrderWatch,
    order_id: String,
    notify: Arc<Notify>,
}

impl OrderWatch {
    pub fn new() -> OrderWatch {
        OrderWatch::default()
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        // The map stays consistent even if a holder panicked: every operation is a single step.
        self.inner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn subscribe(&self, order_id: &str) -> Subscription {
        let notify = self
            .waiters()
            .entry(order_id.to_string())
            .or_default()
            .clone();
        Subscription {
            watch: self.clone(),
            order_id: order_id.to_string(),
            notify,
        }
    }

    /// Wakes every request waiting on this order.
    pub fn wake(&self, order_id: &str) {
        if let Some(notify) = self.waiters().get(order_id) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiting request (the listener reconnected and may have missed changes).
    pub fn wake_all(&self) {
        for notify in self.waiters().values() {
            notify.notify_waiters();
        }
    }

    /// The signal the webhook delivery worker waits on.
    pub fn deliveries_due(&self) -> Arc<Notify> {
        self.inner.deliveries_due.clone()
    }

    /// The signal the alert worker waits on.
    pub fn alerts_due(&self) -> Arc<Notify> {
        self.inner.alerts_due.clone()
    }

    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// How many orders have waiting requests.
    pub fn watched_orders(&self) -> usize {
        self.waiters().len()
    }

    /// Keeps a LISTEN connection to `database_url` until `shutdown`, reconnecting after errors.
    pub fn spawn_listener(
        &self,
        database_url: String,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let watch = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while !*shutdown.borrow() {
                match watch.listen(&database_url, &mut shutdown).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                            "order change listener lost its connection");
                    }
                }
                watch.inner.listening.store(false, Ordering::Release);
                watch.wake_all();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            watch.inner.listening.store(false, Ordering::Release);
        })
    }

    /// Listens until the connection fails (`Err`) or `shutdown` (`Ok`).
    async fn listen(
        &self,
        database_url: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ListenError> {
        let mut config: tokio_postgres::Config = database_url.parse()?;
        // As libpq does for the pool's connections: a password kept out of the URL.
        if config.get_password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            config.password(password);
        }
        let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
        let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
        // The connection must be polled for any query to progress; it forwards notifications.
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        let change = (n.channel().to_string(), n.payload().to_string());
                        if sender.send(change).is_err() {
                            return Ok(());
                        }
                    }
                    Ok(_) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        });
        client
            .batch_execute(&format!(
                "LISTEN {ORDER_CHANGED_CHANNEL}; LISTEN {DELIVERY_DUE_CHANNEL}; \
                 LISTEN {ALERT_DUE_CHANNEL}"
            ))
            .await?;
        self.inner.listening.store(true, Ordering::Release);
        // Changes made while no connection listened reach nobody: have every waiter re-read.
        self.wake_all();
        self.inner.deliveries_due.notify_one();
        self.inner.alerts_due.notify_one();
        tracing::debug!("listening for order changes");

        // A connection can die without a word (a half-open TCP connection): ask it regularly.
        let mut ping = tokio::time::interval(LISTENER_PING);
        ping.tick().await;
        let outcome = loop {
            tokio::select! {
                _ = ping.tick() => {
                    match tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => break Err(ListenError::Postgres(error)),
                        Err(_) => break Err(ListenError::Unresponsive),
                    }
                }
                change = changes.recv() => match change {
                    Some((channel, payload)) => {
                        if channel == ALERT_DUE_CHANNEL {
                            self.inner.alerts_due.notify_one();
                            continue;
                        }
                        if channel == ORDER_CHANGED_CHANNEL {
                            self.wake(&payload);
                            continue;
                        }
                        // notify_one keeps the signal if the worker is busy: none is lost.
                        self.inner.deliveries_due.notify_one();
                    }
                    None => break match driver.await {
                        Ok(Ok(())) | Err(_) => Err(ListenError::Closed),
                        Ok(Err(error)) => Err(ListenError::Postgres(error)),
                    },
                },
                _ = shutdown.changed() => break Ok(()),
            }
        };
        drop(client);
        outcome
    }
}

impl Subscription {
    /// Resolves on the next change of the order after this future is enabled; enable it (or
    /// poll it) before reading the order, so that no change slips between the read and the wait.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut waiters = self.watch.waiters();
        // The map's reference and this one: no one else waits on the order any more.
        if waiters
            .get(&self.order_id)
            .is_some_and(|n| Arc::ptr_eq(n, &self.notify) && Arc::strong_count(n) <= 2)
        {
            waiters.remove(&self.order_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_an_enabled_waiter_and_subscriptions_clean_up() {
        let watch = OrderWatch::new();
        let first = watch.subscribe("ord_1");
        let second = watch.subscribe("ord_1");
        assert_eq!(watch.watched_orders(), 1);

        {
            let notified = first.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            watch.wake("ord_2");
            watch.wake("ord_1");
            tokio::time::timeout(Duration::from_secs(1), notified)
                .await
                .unwrap_or_else(|_| panic!("the waiter was not woken"));
        }

        drop(first);
        assert_eq!(watch.watched_orders(), 1);
        drop(second);
        assert_eq!(watch.watched_orders(), 0);
    }
}
