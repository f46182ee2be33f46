//! Wake-ups (`NOTIFY`) of every instance's listeners: an order changed (long-polls), a webhook
//! delivery or an alert is due (their workers). Inside [`after_commit`] (which every
//! [`transaction_with_retry`](super::transaction_with_retry) is) they are gathered and sent in
//! one statement once the transaction has committed, not in it: Postgres lets one transaction
//! that notifies commit at a time, holding a cluster-wide lock through the commit's WAL flush,
//! so notifying inside the payment's transaction held every recorded payment to one commit at a
//! time. The wake-ups' own statement is a transaction too (`NOTIFY` takes a transaction id), so
//! it commits with `synchronous_commit` off: it holds that lock without waiting for the disk.
//!
//! Work run by [`Db::run`](super::Db::run) hands what it gathered to the instance's [`Courier`]
//! instead of sending it: the listener's own connection sends it, with whatever other work
//! handed over meanwhile, in one statement (one `NOTIFY` transaction for many payments, and no
//! round trip of the request's for it). While the listener is not connected the work sends its
//! own, as before; what was handed to a connection that went down is sent through the pool, or
//! by the next connection (`watch::OrderWatch::spawn_listener`).
//!
//! A wake-up lost to a crash between the commit and its sending (or to that unflushed commit)
//! delays, and never loses, what it announces: the delivery and alert workers also poll, and a
//! long-poll reads the order again at its deadline. Outside [`after_commit`], or inside a
//! transaction that [`after_commit`] did not open, a wake-up is queued in the caller's
//! transaction, as `NOTIFY` does.

use std::cell::RefCell;
use std::sync::{Arc, PoisonError, RwLock};

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Text};

use super::alerts::ALERT_DUE_CHANNEL;
use super::events::ORDER_CHANGED_CHANNEL;
use super::prepared::KeepPrepared;
use super::webhooks::DELIVERY_DUE_CHANNEL;

/// What to tell the other instances.
#[derive(Debug, Clone, Copy)]
pub enum Wakeup<'a> {
    /// These orders changed: wake the requests waiting on them.
    OrdersChanged(&'a [&'a str]),
    /// A webhook delivery is due.
    DeliveryDue,
    /// An alert is due.
    AlertDue,
}

/// Wake-ups gathered for one statement: by the innermost running [`after_commit`] of this
/// thread, or by the [`Courier`] from several.
#[derive(Debug, Default, Clone)]
pub struct Gathered {
    orders: Vec<String>,
    delivery_due: bool,
    alert_due: bool,
}

impl Gathered {
    fn add(&mut self, wakeup: Wakeup<'_>) {
        match wakeup {
            Wakeup::OrdersChanged(ids) => {
                for id in ids {
                    if !self.orders.iter().any(|known| known == id) {
                        self.orders.push((*id).to_owned());
                    }
                }
            }
            Wakeup::DeliveryDue => self.delivery_due = true,
            Wakeup::AlertDue => self.alert_due = true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty() && !self.delivery_due && !self.alert_due
    }

    /// Adds `other`'s wake-ups to these. An order may then be named twice: Postgres sends one
    /// notification for identical ones of one transaction.
    pub fn merge(&mut self, other: Gathered) {
        self.orders.extend(other.orders);
        self.delivery_due |= other.delivery_due;
        self.alert_due |= other.alert_due;
    }

    /// The parameters of [`statement`]: the orders, whether a delivery and an alert are due.
    pub fn parameters(&self) -> (&[String], bool, bool) {
        (&self.orders, self.delivery_due, self.alert_due)
    }
}

/// Carries the wake-ups gathered after commits to the connection that sends them for the
/// instance (its listener's), while that connection is up ([`Courier::set_up`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Courier {
    queue: tokio::sync::mpsc::UnboundedSender<Gathered>,
    /// Whether the sending connection is up; held (read) while handing over, so that once it is
    /// set down nothing more is handed over.
    up: Arc<RwLock<bool>>,
}

/// The sending side's end of a [`Courier`]: what was handed over, in order.
pub type Mailbag = tokio::sync::mpsc::UnboundedReceiver<Gathered>;

impl Courier {
    pub fn new() -> (Courier, Mailbag) {
        let (queue, mailbag) = tokio::sync::mpsc::unbounded_channel();
        let courier = Courier {
            queue,
            up: Arc::new(RwLock::new(false)),
        };
        (courier, mailbag)
    }

    /// Whether the sending connection is up: while it is not, work sends its own wake-ups.
    /// Once this returns `false` set, nothing more is handed over: what the mailbag holds then
    /// is all the sender owes.
    pub fn set_up(&self, up: bool) {
        *self.up.write().unwrap_or_else(PoisonError::into_inner) = up;
    }

    /// Hands `gathered` over, or gives it back when nobody would send it now.
    fn carry(&self, gathered: Gathered) -> Result<(), Gathered> {
        let up = self.up.read().unwrap_or_else(PoisonError::into_inner);
        if !*up {
            return Err(gathered);
        }
        self.queue.send(gathered).map_err(|refused| refused.0)
    }
}

/// Runs `work` with `courier` carrying the wake-ups its [`after_commit`]s gather on this thread
/// (none: they are sent by the work's own connection).
pub fn carried_by<T>(courier: Option<&Courier>, work: impl FnOnce() -> T) -> T {
    /// Puts back the courier that was set before, however `work` ends.
    struct Restore(Option<Courier>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            COURIER.with(|current| *current.borrow_mut() = before);
        }
    }
    let before = COURIER.with(|current| current.replace(courier.cloned()));
    let _restore = Restore(before);
    work()
}

thread_local! {
    /// Set while an [`after_commit`] runs on this thread (diesel work is synchronous: a
    /// transaction starts and ends on one thread).
    static GATHERING: RefCell<Option<Gathered>> = const { RefCell::new(None) };
    /// The instance's courier while work of [`carried_by`] runs on this thread.
    static COURIER: RefCell<Option<Courier>> = const { RefCell::new(None) };
}

/// Wakes the listeners of every instance: after the enclosing [`after_commit`], or with the
/// caller's transaction when there is none.
pub fn wake(conn: &mut PgConnection, wakeup: Wakeup<'_>) -> QueryResult<()> {
    let gathered = GATHERING.with(|gathering| match gathering.borrow_mut().as_mut() {
        Some(gathered) => {
            gathered.add(wakeup);
            true
        }
        None => false,
    });
    if gathered {
        return Ok(());
    }
    let mut one = Gathered::default();
    one.add(wakeup);
    send(conn, &one, false)
}

/// Runs `work` (a transaction), then sends the wake-ups it gathered if it succeeded (or hands
/// them to the thread's [`Courier`], see [`carried_by`]); those of a failed attempt are dropped
/// with it. Within another `after_commit` it only runs `work`: the
/// outermost sends. Within a transaction it did not open it gathers nothing: its `work` is a
/// savepoint, and its wake-ups are queued in that transaction, sent at its commit. A wake-up
/// that cannot be sent is logged, not returned: what it announces is committed, and the
/// listeners' fallbacks find it.
pub fn after_commit<T, E>(
    conn: &mut PgConnection,
    work: impl FnOnce(&mut PgConnection) -> Result<T, E>,
) -> Result<T, E> {
    let outermost = !super::in_transaction(conn)
        && GATHERING.with(|gathering| {
            let mut gathering = gathering.borrow_mut();
            gathering.is_none() && {
                *gathering = Some(Gathered::default());
                true
            }
        });
    if !outermost {
        return work(conn);
    }
    /// Ends the gathering however `work` ends, a panic included.
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            GATHERING.with(|gathering| gathering.borrow_mut().take());
        }
    }
    let scope = Scope;
    let outcome = work(conn);
    let gathered = GATHERING.with(|gathering| gathering.borrow_mut().take());
    drop(scope);
    if let (Ok(_), Some(gathered)) = (&outcome, gathered)
        && !gathered.is_empty()
        && let Err(gathered) = match COURIER.with(|current| current.borrow().clone()) {
            Some(courier) => courier.carry(gathered),
            None => Err(gathered),
        }
        && let Err(error) = send_now(conn, &gathered)
    {
        tracing::warn!(%error, "could not wake the other instances after a commit; their polling will find it");
    }
    outcome
}

/// Sends `gathered` now, in a transaction of its own committed without waiting for its WAL flush
/// (what [`after_commit`] does without a courier, and what a courier's sender falls back to).
pub fn send_now(conn: &mut PgConnection, gathered: &Gathered) -> QueryResult<()> {
    send(conn, gathered, true)
}

/// Sends gathered wake-ups in one statement ([`statement`]): queued in the caller's transaction,
/// or (`after_commit`) a transaction of its own, which then commits without waiting for its WAL
/// flush.
fn send(conn: &mut PgConnection, gathered: &Gathered, after_commit: bool) -> QueryResult<()> {
    if gathered.is_empty() {
        return Ok(());
    }
    let (orders, delivery_due, alert_due) = gathered.parameters();
    diesel::sql_query(statement(after_commit))
        .bind::<Array<Text>, _>(orders)
        .bind::<Bool, _>(delivery_due)
        .bind::<Bool, _>(alert_due)
        .prepared()
        .load::<super::prepared::Done>(conn)
        .map(|_| ())
}

/// The statement that sends wake-ups, given [`Gathered::parameters`] (`$1` the orders, `$2`
/// and `$3` whether a delivery and an alert are due): whoever sends them, the work's own
/// connection or the [`Courier`]'s. On its own (`after_commit`) it is a transaction of its own,
/// committed without waiting for its WAL flush (see the module's documentation); never that
/// inside a caller's transaction, where the setting would last until its commit.
pub fn statement(after_commit: bool) -> String {
    let unflushed = if after_commit {
        ", LATERAL set_config('synchronous_commit', 'off', true) AS unflushed"
    } else {
        ""
    };
    format!(
        "SELECT true AS done FROM ( \
             SELECT '{ORDER_CHANGED_CHANNEL}' AS channel, id AS payload FROM unnest($1::text[]) AS id \
             UNION ALL SELECT '{DELIVERY_DUE_CHANNEL}', '' WHERE $2::boolean \
             UNION ALL SELECT '{ALERT_DUE_CHANNEL}', '' WHERE $3::boolean) AS wakeups, \
         LATERAL pg_notify(channel, payload){unflushed}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathered_wakeups_name_each_order_once() {
        let mut gathered = Gathered::default();
        assert!(gathered.is_empty());
        gathered.add(Wakeup::OrdersChanged(&["ord_a", "ord_b"]));
        gathered.add(Wakeup::OrdersChanged(&["ord_b", "ord_c"]));
        assert_eq!(gathered.orders, ["ord_a", "ord_b", "ord_c"]);
        assert!(!gathered.delivery_due && !gathered.alert_due);
        gathered.add(Wakeup::DeliveryDue);
        gathered.add(Wakeup::AlertDue);
        assert!(gathered.delivery_due && gathered.alert_due && !gathered.is_empty());
    }

    #[test]
    fn merged_wakeups_keep_every_order_and_every_due_worker() {
        let mut batch = Gathered::default();
        batch.merge(Gathered::default());
        assert!(batch.is_empty());
        let mut one = Gathered::default();
        one.add(Wakeup::OrdersChanged(&["ord_a"]));
        batch.merge(one);
        let mut other = Gathered::default();
        other.add(Wakeup::OrdersChanged(&["ord_b"]));
        other.add(Wakeup::DeliveryDue);
        batch.merge(other);
        let mut last = Gathered::default();
        last.add(Wakeup::AlertDue);
        batch.merge(last);
        let (orders, delivery_due, alert_due) = batch.parameters();
        assert_eq!(orders, ["ord_a", "ord_b"]);
        assert!(delivery_due && alert_due);
    }
}
