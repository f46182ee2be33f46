//! Create-order load: closed-loop clients, fresh payees per run, and the invariant check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Api, Device, Listeners, Merchant, text_field};
use crate::measure::{Latency, ResourceUse};
use crate::report::CreateOrderRun;
use crate::{Error, Result};

/// An order the service created, as the merchant saw it.
#[derive(Debug, Clone)]
pub struct CreatedOrder {
    pub id: String,
    pub payable_amount: String,
}

/// What one batch of create-order requests came to.
pub struct OrderBatch {
    pub created: Vec<CreatedOrder>,
    pub errors: BTreeMap<String, usize>,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// Sends `requests` create-order requests from `concurrency` clients, each sending its next
/// request when the previous one is answered. `amount(i)` is the i-th request's amount.
pub async fn create_orders(
    api: &Api,
    merchant: &Merchant,
    channel: &'static str,
    tag: &str,
    requests: usize,
    concurrency: usize,
    amount: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Result<OrderBatch> {
    let next = Arc::new(AtomicUsize::new(0));
    let amount = Arc::new(amount);
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (api, merchant, next, amount) =
                (api.clone(), merchant.clone(), next.clone(), amount.clone());
            let tag = tag.to_string();
            tokio::spawn(async move {
                let mut created = Vec::new();
                let mut errors: Vec<String> = Vec::new();
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    let sent = Instant::now();
                    let answer = api
                        .create_order(&merchant, &format!("{tag}-{i}"), &amount(i), channel)
                        .await;
                    latencies.push(sent.elapsed());
                    match answer {
                        Ok(Ok(order)) => created.push(CreatedOrder {
                            id: text_field(&order, "id")?,
                            payable_amount: text_field(&order, "payable_amount")?,
                        }),
                        Ok(Err(problem)) => errors.push(problem),
                        Err(error) => errors.push(format!("transport: {error}")),
                    }
                }
                Ok::<_, Error>((created, errors, latencies))
            })
        })
        .collect();
    let mut batch = OrderBatch {
        created: Vec::with_capacity(requests),
        errors: BTreeMap::new(),
        latencies: Vec::with_capacity(requests),
        elapsed: Duration::ZERO,
    };
    for client in clients {
        let (created, errors, latencies) = client.await??;
        batch.created.extend(created);
        batch.latencies.extend(latencies);
        for error in errors {
            *batch.errors.entry(error).or_default() += 1;
        }
    }
    batch.elapsed = started.elapsed();
    Ok(batch)
}

/// A random price between 1.00 and 999.99.
pub fn random_price() -> String {
    let cents: u32 = rand::random_range(100..100_000);
    format!("{}.{:02}", cents / 100, cents % 100)
}

pub const ONE_PAYEE: &str = "one payee, same amount";
pub const SPREAD: &str = "16 payees, many amounts";

/// Fills the service's connection pool and its sessions' plan caches, so that the first
/// measured run does not pay for connecting.
pub async fn warm_up(api: &Api, shop: &Merchant, listeners: &Listeners) -> Result<()> {
    let devices = online_payees(api, listeners, 1, "warm-up", "wechat").await?;
    let batch = create_orders(api, shop, "wechat", "warm-up", 500, 64, |_| random_price()).await?;
    if !batch.errors.is_empty() {
        return Err(format!("warm-up orders failed: {:?}", batch.errors).into());
    }
    retire(api, listeners, &devices).await
}

/// `count` new devices, each with one payee on `channel`, kept online.
pub async fn online_payees(
    api: &Api,
    listeners: &Listeners,
    count: usize,
    name: &str,
    channel: &str,
) -> Result<Vec<Device>> {
    let mut devices = Vec::with_capacity(count);
    for i in 0..count {
        let device = api.online_payee(&format!("{name} {i}"), channel).await?;
        listeners.add(device.clone());
        devices.push(device);
    }
    Ok(devices)
}

/// Disables a run's devices, so that the next run allocates on fresh payees only.
pub async fn retire(api: &Api, listeners: &Listeners, devices: &[Device]) -> Result<()> {
    for device in devices {
        listeners.remove(device);
        api.disable_device(device).await?;
    }
    Ok(())
}

const INVARIANT_VIOLATIONS: &str = "\
    SELECT count(*) FROM orders a JOIN orders b \
        ON a.payee_id = b.payee_id AND a.payable_amount = b.payable_amount AND a.id < b.id \
       AND tstzrange(a.created_at, a.reserved_until) && tstzrange(b.created_at, b.reserved_until)";

pub async fn order_run(
    case: &'static str,
    concurrency: usize,
    batch: OrderBatch,
    resources: ResourceUse,
    db: &tokio_postgres::Client,
) -> Result<CreateOrderRun> {
    let invariant_violations: i64 = db.query_one(INVARIANT_VIOLATIONS, &[]).await?.get(0);
    let seconds = batch.elapsed.as_secs_f64();
    Ok(CreateOrderRun {
        case,
        concurrency,
        requests: batch.latencies.len(),
        created: batch.created.len(),
        errors: batch.errors,
        seconds,
        orders_per_second: batch.created.len() as f64 / seconds,
        latency: Latency::of(batch.latencies),
        invariant_violations,
        resources,
    })
}
