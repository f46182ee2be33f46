//! Storage: the row types and queries of each table (one file per table), the server-side SQL
//! functions (`sql/`, applied by [`sql_sources`]), and [`Db::run`], which runs sync diesel code
//! on a blocking thread, never on the async executor, retrying what the server aborted. Starting
//! (connect, migrate, check) is in [`startup`], the pool in [`pool`], the errors in [`error`].

pub mod alerts;
pub mod audit;
pub mod checkouts;
pub mod console;
pub mod devices;
pub mod error;
pub mod events;
pub mod forwarder_signatures;
pub mod matching;
pub mod merchants;
pub mod notifications;
pub mod operator_tokens;
pub mod orders;
pub mod payees;
pub mod payments;
pub mod platform_keys;
pub mod pool;
pub mod prepared;
pub mod schema;
pub mod sealed;
pub mod sql_sources;
pub mod startup;
pub mod summary;
pub mod wakeups;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::data_types::PgInterval;
use diesel::prelude::*;
use tokio::sync::Semaphore;

pub use error::{StorageError, StorageFailure};
use pool::PgPool;

use crate::domain::Channel;

/// The pool, and the one way handlers and background tasks reach the database.
///
/// Work waits for a free connection on the async side (a semaphore as large as the pool) before
/// it takes a blocking thread, so a burst of requests queues cheaply instead of piling up
/// hundreds of blocked threads; the wait is bounded by the pool's connection timeout.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    slots: Arc<Semaphore>,
    /// The share of the pool that work waiting on a payee's lock may hold, per channel (half of
    /// it): a payee whose lock is held up cannot take the connections that polls, notifications
    /// and the other channel's payees need.
    allocation_slots: HashMap<Channel, Arc<Semaphore>>,
    /// Sends the wake-ups that work run here gathers after its commits (`None`: the work's own
    /// connection sends them).
    courier: Option<wakeups::Courier>,
}

impl Db {
    pub fn new(pool: PgPool) -> Db {
        // A u32 fits a usize wherever tokio runs.
        let permits = usize::try_from(pool.max_size()).unwrap_or(Semaphore::MAX_PERMITS);
        let slots = Arc::new(Semaphore::new(permits));
        let allocation_slots = Channel::ALL
            .iter()
            .map(|channel| (*channel, Arc::new(Semaphore::new(permits.div_ceil(2)))))
            .collect();
        Db {
            pool,
            slots,
            allocation_slots,
            courier: None,
        }
    }

    /// This pool, with `courier` sending the wake-ups of the work run on it
    /// ([`wakeups::carried_by`]).
    pub fn with_courier(self, courier: wakeups::Courier) -> Db {
        Db {
            courier: Some(courier),
            ..self
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `work` with a pooled connection on a blocking thread. `work` fails with an error of
    /// its caller's layer, which tells whether the database failed (and how, for the
    /// connection's sake).
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: StorageFailure + Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    {
        self.run_within(self.pool.connection_timeout(), work).await
    }

    /// [`Db::run`] for work that takes a payee's lock of `channel` (creating an order): it holds
    /// one of that channel's allocation slots too, so that at most half the pool waits on the
    /// channel's payee locks at once. A slot not free within the pool's timeout is
    /// `PoolExhausted`, as a busy pool is. Without a channel (a request that names none is
    /// refused before it allocates) it is [`Db::run`].
    pub async fn run_allocating<T, E, F>(&self, channel: Option<Channel>, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: StorageFailure + Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    {
        let timeout = self.pool.connection_timeout();
        let Some(lane) = channel.and_then(|channel| self.allocation_slots.get(&channel)) else {
            return self.run_within(timeout, work).await;
        };
        let started = Instant::now();
        let _allocating = tokio::time::timeout(timeout, lane.clone().acquire_owned())
            .await
            .map_err(|_| {
                tracing::warn!(
                    channel = ?channel,
                    "no allocation slot became free in time (a payee's lock is held up?)"
                );
                E::from(StorageError::PoolExhausted)
            })?
            .map_err(|_| E::from(StorageError::PoolExhausted))?;
        self.run_within(timeout.saturating_sub(started.elapsed()), work)
            .await
    }

    /// [`Db::run`], waiting at most `timeout` for a connection (`/readyz` answers within a
    /// second, whatever the pool's timeout).
    pub async fn run_within<T, E, F>(&self, timeout: Duration, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: StorageFailure + Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    {
        let started = Instant::now();
        let slot = tokio::time::timeout(timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                tracing::warn!("no database connection became free in time");
                E::from(StorageError::PoolExhausted)
            })?
            // The semaphore is never closed while a Db exists.
            .map_err(|_| E::from(StorageError::PoolExhausted))?;
        let pool = self.pool.clone();
        let courier = self.courier.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let left = timeout.saturating_sub(started.elapsed());
            let mut conn = pool
                .get_timeout(left.max(Duration::from_millis(10)))
                .map_err(|e| E::from(StorageError::from(e)))?;
            let outcome = wakeups::carried_by(courier.as_ref(), || work(&mut conn));
            // Only what the database answered counts: a refused key or a conflict says nothing
            // about the connection.
            if let Some(error) = outcome.as_ref().err().and_then(E::storage_error) {
                conn.record_failure(error);
            }
            outcome
        })
        .await;
        match outcome {
            Ok(outcome) => outcome,
            // The work panicked: the connection is dropped with its thread; the caller learns
            // as much as a lost server tells.
            Err(join) => Err(E::from(StorageError::Unreachable(Box::new(join)))),
        }
    }
}

/// Whether `conn` is inside a transaction (or its state is unknown, after an error).
pub fn in_transaction(conn: &mut PgConnection) -> bool {
    use diesel::connection::TransactionManager;
    <PgConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .map_or(true, |depth| depth.is_some())
}

/// Runs `work` in a transaction, again when Postgres aborted it as a deadlock victim or a
/// serialization failure (safe to retry: the aborted attempt changed nothing). The wake-ups it
/// asks for are sent once it has committed ([`wakeups::after_commit`]).
pub fn transaction_with_retry<T, E, F>(conn: &mut PgConnection, mut work: F) -> Result<T, E>
where
    E: StorageFailure + From<diesel::result::Error>,
    F: FnMut(&mut PgConnection) -> Result<T, E>,
{
    retry_aborted(|| wakeups::after_commit(conn, |conn| conn.transaction(&mut work)))
}

/// Runs `work` (one statement on its own, or a whole transaction) again when Postgres aborted
/// it as a deadlock victim or a serialization failure, up to three attempts in all.
pub fn retry_aborted<T, E: StorageFailure>(mut work: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        match work() {
            Err(error)
                if attempt < ATTEMPTS
                    && error
                        .storage_error()
                        .is_some_and(StorageError::is_retryable) =>
            {
                if let Some(reason) = error.storage_error() {
                    tracing::debug!(attempt, %reason, "retrying work the database aborted");
                }
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Runs a retention statement of one table's file (`RETIRE_BATCH`: `$1` the age, `$2` the
/// batch size) whose one row is `counts`, how many rows of each kind it deleted or compacted.
pub fn run_retention<const N: usize>(
    conn: &mut PgConnection,
    statement: &str,
    keep: Duration,
    limit: i64,
) -> QueryResult<[usize; N]> {
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Int8>)]
        counts: Vec<i64>,
    }
    let row: Counts = diesel::sql_query(statement)
        .bind::<diesel::sql_types::Interval, _>(interval(keep))
        .bind::<diesel::sql_types::Int8, _>(limit)
        .get_result(conn)?;
    let mut counts = [0; N];
    for (slot, count) in counts.iter_mut().zip(row.counts) {
        *slot = usize::try_from(count).unwrap_or(0);
    }
    Ok(counts)
}

/// A `std::time::Duration` as a Postgres interval.
pub fn interval(duration: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
}

/// The database clock, which every time decision uses.
pub fn clock(conn: &mut PgConnection) -> diesel::QueryResult<chrono::DateTime<chrono::Utc>> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()")).get_result(conn)
}
