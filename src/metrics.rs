//! Prometheus metrics of one instance (`GET /metrics`): requests, notifications by result,
//! webhook attempts by outcome and their latency, and, read at scrape time, orders by status,
//! the webhook queue depth, the connection pool, the LISTEN connection and waiting long-polls.

use std::fmt::Write;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::webhooks::Settled;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The matched route pattern (`/orders/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Orders by status.
pub type OrderCounts = Vec<(String, i64)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram, fn() -> Histogram>,
    notifications: Family<ResultLabel, Counter>,
    webhook_attempts: Family<OutcomeLabel, Counter>,
    webhook_attempt_seconds: Histogram,
    orders: Family<StatusLabel, Gauge>,
    webhook_queue_depth: Gauge,
    db_connections: Family<StateLabel, Gauge>,
    listener_connected: Gauge,
    long_poll_orders: Gauge,
    summary_kept_behind: Gauge,
    /// The last count of every order by status, and when it was made.
    order_counts: std::sync::Mutex<Option<(std::time::Instant, OrderCounts)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("solopay");
        let metrics = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            notifications: Family::default(),
            webhook_attempts: Family::default(),
            webhook_attempt_seconds: latency_histogram(),
            orders: Family::default(),
            webhook_queue_depth: Gauge::default(),
            db_connections: Family::default(),
            listener_connected: Gauge::default(),
            long_poll_orders: Gauge::default(),
            summary_kept_behind: Gauge::default(),
            order_counts: std::sync::Mutex::new(None),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests",
            metrics.request_seconds.clone(),
        );
        registry.register(
            "notifications",
            "Listener notifications by result (matched, unmatched, or the error code)",
            metrics.notifications.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook attempts by outcome (succeeded, retrying, failed)",
            metrics.webhook_attempts.clone(),
        );
        registry.register(
            "webhook_attempt_duration_seconds",
            "Latency of webhook attempts",
            metrics.webhook_attempt_seconds.clone(),
        );
        registry.register("orders", "Orders by status", metrics.orders.clone());
        registry.register(
            "webhook_queue_depth",
            "Webhook deliveries waiting for an attempt or a retry",
            metrics.webhook_queue_depth.clone(),
        );
        registry.register(
            "db_connections",
            "Database pool connections by state (idle, in_use) and its size (max)",
            metrics.db_connections.clone(),
        );
        registry.register(
            "order_listener_connected",
            "1 while the LISTEN connection that wakes long-polls and webhook delivery is up",
            metrics.listener_connected.clone(),
        );
        registry.register(
            "long_poll_orders",
            "Orders that long-polls are waiting on",
            metrics.long_poll_orders.clone(),
        );
        registry.register(
            "summary_kept_behind_seconds",
            "How long ago the last quarter of an hour the summary keeps counts of ended (more \
             than an hour: the sweep cannot keep them, see the logs)",
            metrics.summary_kept_behind.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn record_request(&self, labels: RequestLabels, elapsed: Duration) {
        self.request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    pub fn record_notification(&self, result: &str) {
        self.notifications
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn record_webhook_attempt(&self, settled: &Settled, latency: Duration) {
        let outcome = match settled {
            Settled::Succeeded => "succeeded",
            Settled::RetryIn(_) => "retrying",
            Settled::Failed => "failed",
        };
        self.webhook_attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.webhook_attempt_seconds.observe(latency.as_secs_f64());
    }

    /// The count of every order by status made less than `fresh_for` ago, if there is one.
    pub fn order_counts(&self, fresh_for: Duration) -> Option<OrderCounts> {
        let counts = self
            .order_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts
            .as_ref()
            .filter(|(at, _)| at.elapsed() < fresh_for)
            .map(|(_, counts)| counts.clone())
    }

    /// Keeps a count of every order by status, made now.
    pub fn keep_order_counts(&self, counts: &[(String, i64)]) {
        let mut kept = self
            .order_counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *kept = Some((std::time::Instant::now(), counts.to_vec()));
    }

    /// Sets the values read at scrape time.
    pub fn set_snapshot(&self, snapshot: &Snapshot) {
        for (status, count) in &snapshot.orders_by_status {
            self.orders
                .get_or_create(&StatusLabel {
                    status: status.clone(),
                })
                .set(*count);
        }
        self.webhook_queue_depth.set(snapshot.webhook_queue_depth);
        self.listener_connected
            .set(i64::from(snapshot.listener_connected));
        self.long_poll_orders.set(snapshot.long_poll_orders);
        self.summary_kept_behind
            .set(snapshot.summary_kept_behind_seconds);
        for (state, count) in [
            ("idle", snapshot.pool_idle),
            ("in_use", snapshot.pool_in_use),
            ("max", snapshot.pool_max),
        ] {
            self.db_connections
                .get_or_create(&StateLabel {
                    state: state.to_string(),
                })
                .set(count);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        if !out.ends_with('\n') {
            out.write_char('\n')?;
        }
        Ok(out)
    }
}

/// What `/metrics` reads from the database and the pool.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub orders_by_status: Vec<(String, i64)>,
    pub webhook_queue_depth: i64,
    pub pool_idle: i64,
    pub pool_in_use: i64,
    pub pool_max: i64,
    pub listener_connected: bool,
    pub long_poll_orders: i64,
    pub summary_kept_behind_seconds: i64,
}
