//! Wakes long-polls when an order changes on any instance: every state change is followed by
//! `NOTIFY solopay_order_changed, '<order id>'` once its transaction commits ([`crate::db::wakeups`]);
//! each instance keeps one `LISTEN` connection and wakes the requests waiting on that order. The
//! same connection sends the wake-ups of the instance's own work ([`wakeups::Courier`]).

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
use crate::db::wakeups::{self, Courier, Gathered, Mailbag};
use crate::db::webhooks::DELIVERY_DUE_CHANNEL;
use crate::db::{Db, StorageError};

/// The LISTEN connection's `application_name` (unless `DATABASE_URL` names one): what
/// `pg_stat_activity` shows for it.
pub const LISTENER_NAME: &str = "solopay listener";

/// How often the LISTEN connection is checked.
const LISTENER_PING: Duration = Duration::from_secs(30);
/// How long the LISTEN connection may take to answer a ping or a statement before it is given up.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Why the LISTEN connection was given up (and is opened again).
#[derive(Debug, thiserror::Error)]
enum ListenError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the connection did not answer a ping or a statement in time")]
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
    /// While it is up, it also sends the wake-ups `courier` carries (see [`wakeups::Courier`]):
    /// those handed over meanwhile in one statement. Whenever it goes down, what was handed
    /// over and not sent is sent through `db` (a pool without a courier) instead, or kept for
    /// the next connection, or the next try, when that fails too.
    pub fn spawn_listener(
        &self,
        database_url: String,
        db: Db,
        courier: Courier,
        mut mailbag: Mailbag,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let watch = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            // Wake-ups handed over and not sent yet, once the connection that owed them is gone.
            let mut unsent = Gathered::default();
            while !*shutdown.borrow() {
                let sending = Sending {
                    courier: &courier,
                    mailbag: &mut mailbag,
                    unsent: &mut unsent,
                };
                let listened = watch.listen(&database_url, sending, &mut shutdown).await;
                // Nothing is handed over from here on: what the mailbag holds is all that is owed.
                courier.set_up(false);
                watch.inner.listening.store(false, Ordering::Release);
                while let Ok(more) = mailbag.try_recv() {
                    unsent.merge(more);
                }
                unsent = send_through_pool(&db, unsent).await;
                let Err(error) = listened else {
                    break;
                };
                tracing::warn!(%error, retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "order change listener lost its connection");
                watch.wake_all();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }

    /// Listens, and sends the wake-ups carried to it, until the connection fails (`Err`) or
    /// `shutdown` (`Ok`, once what was carried to it is sent).
    async fn listen(
        &self,
        database_url: &str,
        mut sending: Sending<'_>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ListenError> {
        let mut config: tokio_postgres::Config = database_url.parse()?;
        // As libpq does for the pool's connections: a password kept out of the URL.
        if config.get_password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            config.password(password);
        }
        if config.get_application_name().is_none() {
            config.application_name(LISTENER_NAME);
        }
        let (client, mut connection) = answered(config.connect(tokio_postgres::NoTls)).await?;
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
        let channels = format!(
            "LISTEN {ORDER_CHANGED_CHANNEL}; LISTEN {DELIVERY_DUE_CHANNEL}; \
             LISTEN {ALERT_DUE_CHANNEL}"
        );
        answered(client.batch_execute(&channels)).await?;
        let statement = wakeups::statement(true);
        let wake = answered(client.prepare(&statement)).await?;
        sending.send(&client, &wake, Gathered::default()).await?;
        sending.courier.set_up(true);
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
                    if let Err(error) = answered(client.simple_query("SELECT 1")).await {
                        break Err(error);
                    }
                }
                Some(carried) = sending.mailbag.recv() => {
                    if let Err(error) = sending.send(&client, &wake, carried).await {
                        break Err(error);
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
                _ = shutdown.changed() => {
                    // Work that committed before the stop is announced: nothing more is handed
                    // over once set down, and everything handed over before is sent.
                    sending.courier.set_up(false);
                    break sending.send(&client, &wake, Gathered::default()).await;
                }
            }
        };
        drop(client);
        outcome
    }
}

/// Sends `batch` through `db`'s own connection; gives it back when that fails too.
async fn send_through_pool(db: &Db, batch: Gathered) -> Gathered {
    if batch.is_empty() {
        return batch;
    }
    let sending = batch.clone();
    let sent = db
        .run(move |conn| wakeups::send_now(conn, &sending).map_err(StorageError::from))
        .await;
    match sent {
        Ok(()) => Gathered::default(),
        Err(error) => {
            tracing::warn!(%error, "cannot send wake-ups yet; the next connection will");
            batch
        }
    }
}

/// What the listener's connection sends for the instance (see [`wakeups::Courier`]).
struct Sending<'a> {
    courier: &'a Courier,
    mailbag: &'a mut Mailbag,
    /// Left by a connection that ended while sending them.
    unsent: &'a mut Gathered,
}

impl Sending<'_> {
    /// Sends `carried` with everything else waiting (left unsent, or handed over since), in one
    /// statement. When the connection ends meanwhile they are kept for the next one (`Err`); a
    /// statement the server refuses on a working connection is not tried again.
    async fn send(
        &mut self,
        client: &tokio_postgres::Client,
        wake: &tokio_postgres::Statement,
        carried: Gathered,
    ) -> Result<(), ListenError> {
        let mut batch = std::mem::take(self.unsent);
        batch.merge(carried);
        while let Ok(more) = self.mailbag.try_recv() {
            batch.merge(more);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let (orders, delivery_due, alert_due) = batch.parameters();
        let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&orders, &delivery_due, &alert_due];
        match answered(client.execute(wake, &parameters)).await {
            Ok(_) => Ok(()),
            // Refused by a server that goes on (an ERROR): not tried again. Anything else (no
            // answer in time, the connection lost, the server stopping it: FATAL) keeps the
            // batch for whoever sends next.
            Err(ListenError::Postgres(error))
                if !client.is_closed()
                    && error
                        .as_db_error()
                        .is_some_and(|db| db.severity() == "ERROR") =>
            {
                tracing::warn!(%error, "could not wake the other instances after commits; their polling will find it");
                Ok(())
            }
            Err(error) => {
                *self.unsent = batch;
                Err(error)
            }
        }
    }
}

/// What the LISTEN connection answers to `request` within [`ANSWER_WITHIN`]; a connection that
/// takes longer is given up (`Unresponsive`).
async fn answered<T>(
    request: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ListenError> {
    tokio::time::timeout(ANSWER_WITHIN, request)
        .await
        .map_err(|_| ListenError::Unresponsive)?
        .map_err(ListenError::Postgres)
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
