//! Create-order load: closed-loop clients, fresh payees per run, and the invariant check.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::Result;
use crate::client::{Api, Device, Listeners, Merchant, text_field};
use crate::measure::{Latency, Probe, ResourceUse, RunLimit, closed_loop, vacuum_analyze};
use crate::payments::WebhookReceiver;
use crate::report::CreateOrderRun;
use crate::service::Service;

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
    let (api, merchant, prefix) = (api.clone(), merchant.clone(), tag.to_string());
    let run = closed_loop(tag, RunLimit::requests(requests), concurrency, move |i| {
        let (api, merchant) = (api.clone(), merchant.clone());
        let (merchant_order_id, amount) = (format!("{prefix}-{i}"), amount(i));
        async move {
            match api
                .create_order(&merchant, &merchant_order_id, &amount, channel)
                .await
            {
                Ok(Ok(order)) => Ok(CreatedOrder {
                    id: text_field(&order, "id").map_err(|e| e.to_string())?,
                    payable_amount: text_field(&order, "payable_amount")
                        .map_err(|e| e.to_string())?,
                }),
                Ok(Err(problem)) => Err(problem),
                Err(error) => Err(format!("transport: {error}")),
            }
        }
    })
    .await?;
    let mut batch = OrderBatch {
        created: Vec::with_capacity(requests),
        errors: BTreeMap::new(),
        latencies: Vec::with_capacity(requests),
        elapsed: run.elapsed,
    };
    for (answer, latency) in run.answers {
        batch.latencies.push(latency);
        match answer {
            Ok(order) => batch.created.push(order),
            Err(error) => *batch.errors.entry(error).or_default() += 1,
        }
    }
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

/// What a phase measures with: a shop, a shop whose webhooks go to a local receiver, and the
/// listener devices kept online (heartbeats until `heartbeats` is aborted).
pub struct Shops {
    pub listeners: Listeners,
    pub heartbeats: tokio::task::JoinHandle<()>,
    pub receiver: WebhookReceiver,
    pub shop: Merchant,
    pub webhook_shop: Merchant,
}

/// Creates the two shops and starts the receiver and the heartbeats, then warms the service up.
pub async fn set_up_shops(api: &Api) -> Result<Shops> {
    let listeners = Listeners::default();
    let heartbeats = listeners.keep_alive(api.clone());
    let receiver = WebhookReceiver::start()?;
    let shop = api.create_merchant("bench shop", None).await?;
    let webhook_shop = api
        .create_merchant("bench shop with webhooks", Some(&receiver.url()))
        .await?;
    warm_up(api, &shop, &listeners).await?;
    Ok(Shops {
        listeners,
        heartbeats,
        receiver,
        shop,
        webhook_shop,
    })
}

/// One measured create-order run: its case, channel, request tag, size and concurrency.
pub struct OrderRunPlan {
    pub case: &'static str,
    pub channel: &'static str,
    pub tag: String,
    pub requests: usize,
    pub concurrency: usize,
}

/// Runs `plan` on the payees of `devices` (online), with fresh statistics first and the CPU and
/// database sessions probed meanwhile; then retires the devices and checks the invariant.
pub async fn measured_order_run(
    api: &Api,
    service: &Service,
    db: &Arc<tokio_postgres::Client>,
    shops: &Shops,
    devices: &[Device],
    plan: OrderRunPlan,
    amount: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Result<CreateOrderRun> {
    vacuum_analyze(db).await?;
    let probe = Probe::start(service.pid, db, &service.database);
    let batch = create_orders(
        api,
        &shops.shop,
        plan.channel,
        &plan.tag,
        plan.requests,
        plan.concurrency,
        amount,
    )
    .await?;
    let resources = probe.finish().await;
    retire(api, &shops.listeners, devices).await?;
    order_run(plan.case, plan.concurrency, batch, resources, db).await
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
        api.set_device_enabled(device, false).await?;
    }
    Ok(())
}

/// The device whose payee holds each of these orders, by order id.
pub async fn devices_of_orders(
    db: &tokio_postgres::Client,
    order_ids: &[String],
) -> Result<HashMap<String, String>> {
    Ok(db
        .query(
            "SELECT o.id, p.device_id FROM orders o JOIN payees p ON p.id = o.payee_id \
              WHERE o.id = ANY($1)",
            &[&order_ids],
        )
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// How many of these orders are paid.
pub async fn orders_paid(db: &tokio_postgres::Client, order_ids: &[String]) -> Result<i64> {
    let row = db
        .query_one(
            "SELECT count(*) FROM orders WHERE id = ANY($1) AND status = 'paid'",
            &[&order_ids],
        )
        .await?;
    Ok(row.get(0))
}

/// Two orders holding one amount of one payee at once. Among the orders that hold (all of a run's
/// orders do: an order is released hours after its reservation ended), as the exclusion
/// constraint is; the history's orders were never released into overlap.
const INVARIANT_VIOLATIONS: &str = "\
    SELECT count(*) FROM orders a JOIN orders b \
        ON a.payee_id = b.payee_id AND a.payable_amount = b.payable_amount AND a.id < b.id \
       AND a.holds_amount AND b.holds_amount \
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
