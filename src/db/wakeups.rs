//! Wake-ups (`NOTIFY`) of every instance's listeners: an order changed (long-polls), a webhook
//! delivery or an alert is due (their workers). Inside [`after_commit`] (which every
//! [`transaction_with_retry`](super::transaction_with_retry) is) they are gathered and sent in
//! one statement once the transaction has committed, not in it: Postgres lets one transaction
//! that notifies commit at a time, holding a cluster-wide lock through the commit's WAL flush,
//! so notifying inside the payment's transaction held every recorded payment to one commit at a
//! time. The wake-ups' own statement is a transaction too (`NOTIFY` takes a transaction id), so
//! it commits with `synchronous_commit` off: it holds that lock without waiting for the disk. A
//! wake-up lost to a crash between the commit and its sending (or to that unflushed commit)
//! delays, and never loses, what it announces: the delivery and alert workers also poll, and a
//! long-poll reads the order again at its deadline. Outside [`after_commit`], or inside a
//! transaction that [`after_commit`] did not open, a wake-up is queued in the caller's
//! transaction, as `NOTIFY` does.

use std::cell::RefCell;

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

/// The wake-ups gathered by the innermost running [`after_commit`] of this thread.
#[derive(Debug, Default)]
struct Gathered {
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

    fn is_empty(&self) -> bool {
        self.orders.is_empty() && !self.delivery_due && !self.alert_due
    }
}

thread_local! {
    /// Set while an [`after_commit`] runs on this thread (diesel work is synchronous: a
    /// transaction starts and ends on one thread).
    static GATHERING: RefCell<Option<Gathered>> = const { RefCell::new(None) };
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

/// Runs `work` (a transaction), then sends the wake-ups it gathered if it succeeded; those of a
/// failed attempt are dropped with it. Within another `after_commit` it only runs `work`: the
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
        && let Err(error) = send(conn, &gathered, true)
    {
        tracing::warn!(%error, "could not wake the other instances after a commit; their polling will find it");
    }
    outcome
}

/// Sends gathered wake-ups in one statement: queued in the caller's transaction, or
/// (`after_commit`) a transaction of its own, which then commits without waiting for its WAL
/// flush (see the module's documentation). Never that inside a caller's transaction: the
/// setting would last until its commit.
fn send(conn: &mut PgConnection, gathered: &Gathered, after_commit: bool) -> QueryResult<()> {
    if gathered.is_empty() {
        return Ok(());
    }
    let unflushed = if after_commit {
        ", LATERAL set_config('synchronous_commit', 'off', true) AS unflushed"
    } else {
        ""
    };
    diesel::sql_query(format!(
        "SELECT true AS done FROM ( \
             SELECT '{ORDER_CHANGED_CHANNEL}' AS channel, id AS payload FROM unnest($1) AS id \
             UNION ALL SELECT '{DELIVERY_DUE_CHANNEL}', '' WHERE $2 \
             UNION ALL SELECT '{ALERT_DUE_CHANNEL}', '' WHERE $3) AS wakeups, \
         LATERAL pg_notify(channel, payload){unflushed}"
    ))
    .bind::<Array<Text>, _>(&gathered.orders)
    .bind::<Bool, _>(gathered.delivery_due)
    .bind::<Bool, _>(gathered.alert_due)
    .prepared()
    .load::<super::prepared::Done>(conn)
    .map(|_| ())
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
}
