//! Paying orders: notify at a fixed rate and flat out, payment-to-webhook and long-poll wake-up
//! latency with a local webhook receiver, and memory while many long-polls are open.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;
use tokio::sync::Notify;

use crate::client::{Api, Device, Merchant, Outcome};
use crate::measure::{
    Latency, Probe, Progress, ResourceUse, RunLimit, closed_loop, vacuum_analyze,
};
use crate::orders::{Shops, create_orders, devices_of_orders, orders_paid, random_price};
use crate::report::{MemoryReport, NotifyRun};
use crate::service::{Memory, Service};
use crate::{Args, Result};

/// A pending order and the listener that will report its payment.
#[derive(Debug, Clone)]
struct Payable {
    pub order_id: String,
    pub amount: String,
    pub device: Device,
}

/// Creates `count` orders over the online WeChat payees and pairs each with its payee's device.
async fn payable_orders(
    api: &Api,
    merchant: &Merchant,
    db: &tokio_postgres::Client,
    devices: &HashMap<String, Device>,
    tag: &str,
    count: usize,
) -> Result<Vec<Payable>> {
    let batch = create_orders(api, merchant, "wechat", tag, count, 32, |_| random_price()).await?;
    if !batch.errors.is_empty() {
        return Err(format!("creating orders to pay failed: {:?}", batch.errors).into());
    }
    let ids: Vec<String> = batch.created.iter().map(|o| o.id.clone()).collect();
    let device_of = devices_of_orders(db, &ids).await?;
    batch
        .created
        .into_iter()
        .map(|order| {
            let device = device_of
                .get(&order.id)
                .and_then(|id| devices.get(id))
                .ok_or_else(|| format!("no listener for order {}", order.id))?;
            Ok(Payable {
                order_id: order.id,
                amount: order.payable_amount,
                device: device.clone(),
            })
        })
        .collect()
}

/// What one notification came to.
struct Paid {
    pub payable: Payable,
    pub notification_id: String,
    /// The notification's post time, by the phone: the same in a retry.
    pub posted_at: String,
    pub sent: Instant,
    pub latency: Duration,
    pub answer: Outcome,
    /// The first answer, when it was a refusal that a retry then replaced.
    pub refused_first: Option<String>,
}

impl Paid {
    pub fn matched_as_expected(&self) -> bool {
        matches!(&self.answer, Ok(answer)
            if answer["result"] == "matched"
                && answer["order_id"].as_str() == Some(self.payable.order_id.as_str()))
    }

    /// A refusal a listener app retries: the service was overloaded or unreachable.
    fn retryable(&self) -> bool {
        matches!(&self.answer, Err(problem)
            if problem.starts_with("503") || problem.starts_with("transport"))
    }
}

async fn pay(api: &Api, payable: &Payable) -> Paid {
    let notification_id = format!("n-{}", uuid::Uuid::new_v4().simple());
    let posted_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let sent = Instant::now();
    let answer = notify(api, payable, &notification_id, &posted_at).await;
    Paid {
        payable: payable.clone(),
        notification_id,
        posted_at,
        sent,
        latency: sent.elapsed(),
        answer,
        refused_first: None,
    }
}

async fn notify(api: &Api, payable: &Payable, notification_id: &str, posted_at: &str) -> Outcome {
    match api
        .notify(&payable.device, notification_id, &payable.amount, posted_at)
        .await
    {
        Ok(answer) => answer,
        Err(error) => Err(format!("transport: {error}")),
    }
}

/// Sends every refused notification again, one at a time and with the same notification id, as
/// the listener app would; the latency stays that of the first attempt.
async fn retry_refused(api: &Api, answers: &mut [Paid]) {
    for paid in answers.iter_mut().filter(|p| p.retryable()) {
        let answer = notify(api, &paid.payable, &paid.notification_id, &paid.posted_at).await;
        let first = std::mem::replace(&mut paid.answer, answer);
        paid.refused_first = first.err();
    }
}

/// Pays every order, `concurrency` notifications in flight.
async fn pay_all(api: &Api, payables: Vec<Payable>, concurrency: usize) -> Result<Vec<Paid>> {
    let limit = RunLimit::requests(payables.len());
    let (api, payables) = (api.clone(), Arc::new(payables));
    let run = closed_loop("notify", limit, concurrency, move |i| {
        let (api, payables) = (api.clone(), payables.clone());
        async move { pay(&api, &payables[i]).await }
    })
    .await?;
    Ok(run.answers.into_iter().map(|(paid, _)| paid).collect())
}

/// Notify at a fixed rate (open loop), then as fast as it goes (closed loop), each notification
/// paying a distinct pending order over the listener payees.
pub async fn notify_runs(
    args: &Args,
    api: &Api,
    shop: &Merchant,
    db: &Arc<tokio_postgres::Client>,
    service: &Service,
    devices: &HashMap<String, Device>,
) -> Result<Vec<NotifyRun>> {
    let fixed_count = (args.notify_rate * args.notify_secs) as usize;
    println!(
        "notify: creating {} orders to pay ...",
        fixed_count + args.notify_fast
    );
    let mut payables = payable_orders(
        api,
        shop,
        db,
        devices,
        "to-pay",
        fixed_count + args.notify_fast,
    )
    .await?;
    let fast = payables.split_off(fixed_count);
    let fixed = payables;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.notify_rate));

    println!(
        "a one-row commit alone at {}/s for {} s (the disk's floor under notify's p99) ...",
        args.notify_rate, args.notify_secs
    );
    let commit_alone = commits_alone(db, interval, fixed.len()).await?;

    println!(
        "notify at {}/s for {} s ...",
        args.notify_rate, args.notify_secs
    );
    vacuum_analyze(db).await?;
    let probe = Probe::start(service.pid, db, &service.database);
    let (mut answers, elapsed) = paced(api, fixed, interval, "notify").await?;
    let resources = probe.finish().await;
    retry_refused(api, &mut answers).await;
    let case = format!("fixed rate {}/s", args.notify_rate);
    let fixed_run = NotifyRun {
        commit_alone: Some(commit_alone),
        ..notify_run(case, answers, elapsed, resources, db).await?
    };

    println!(
        "notify as fast as it goes (c={}) ...",
        args.notify_concurrency
    );
    vacuum_analyze(db).await?;
    let probe = Probe::start(service.pid, db, &service.database);
    let started = Instant::now();
    let mut answers = pay_all(api, fast, args.notify_concurrency).await?;
    let elapsed = started.elapsed();
    let resources = probe.finish().await;
    retry_refused(api, &mut answers).await;
    let case = format!("as fast as it goes, c={}", args.notify_concurrency);
    let fast_run = notify_run(case, answers, elapsed, resources, db).await?;
    Ok(vec![fixed_run, fast_run])
}

/// Pays each of `payables` at its turn, one every `interval` (open loop); returns the answers,
/// each with its latency from when it was due, and how long the run took.
async fn paced(
    api: &Api,
    payables: Vec<Payable>,
    interval: Duration,
    label: &str,
) -> Result<(Vec<Paid>, Duration)> {
    let progress = Progress::start(label, RunLimit::requests(payables.len()));
    let started = Instant::now();
    let mut in_flight = Vec::with_capacity(payables.len());
    for (i, payable) in payables.into_iter().enumerate() {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (api, progress) = (api.clone(), progress.clone());
        in_flight.push(tokio::spawn(async move {
            let mut paid = pay(&api, &payable).await;
            // From when it was due, so that a slow answer cannot hide itself by delaying the
            // next send (coordinated omission).
            paid.latency = due.elapsed();
            progress.done_one();
            paid
        }));
    }
    let mut answers = Vec::with_capacity(in_flight.len());
    for paid in in_flight {
        answers.push(paid.await?);
    }
    let elapsed = started.elapsed();
    progress.stop();
    Ok((answers, elapsed))
}

/// `count` one-row inserts, each committed on its own (flushed, as a payment's commit is), one
/// every `interval` from one connection with nothing else running: how long the database takes
/// to commit on this disk at notify's fixed rate. Each latency counts from when the insert was
/// due, as notify's do.
async fn commits_alone(
    db: &tokio_postgres::Client,
    interval: Duration,
    count: usize,
) -> Result<Latency> {
    // A table of its own (not TEMP: a temporary table's commits write no WAL to wait for).
    db.batch_execute(
        "CREATE TABLE solopay_bench_commits (id bigint GENERATED ALWAYS AS IDENTITY, \
         at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let insert = db
        .prepare("INSERT INTO solopay_bench_commits DEFAULT VALUES")
        .await?;
    let progress = Progress::start("commits", RunLimit::requests(count));
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        db.execute(&insert, &[]).await?;
        latencies.push(due.elapsed());
        progress.done_one();
    }
    progress.stop();
    db.batch_execute("DROP TABLE solopay_bench_commits").await?;
    Ok(Latency::of(latencies))
}

async fn notify_run(
    case: String,
    answers: Vec<Paid>,
    elapsed: Duration,
    resources: ResourceUse,
    db: &tokio_postgres::Client,
) -> Result<NotifyRun> {
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_first: BTreeMap<String, usize> = BTreeMap::new();
    let mut matched_as_expected = 0;
    let mut order_ids = Vec::with_capacity(answers.len());
    let mut latencies = Vec::with_capacity(answers.len());
    for paid in answers {
        latencies.push(paid.latency);
        if let Some(refusal) = &paid.refused_first {
            *refused_first.entry(refusal.clone()).or_default() += 1;
        }
        if paid.matched_as_expected() {
            matched_as_expected += 1;
        } else {
            let error = match &paid.answer {
                Ok(answer) => format!("answered {} for another order", answer["result"]),
                Err(problem) => problem.clone(),
            };
            *errors.entry(error).or_default() += 1;
        }
        order_ids.push(paid.payable.order_id);
    }
    let payments = db
        .query_one(
            "SELECT count(*), count(DISTINCT order_id) FROM payments \
              WHERE order_id = ANY($1) AND result = 'matched'",
            &[&order_ids],
        )
        .await?;
    let seconds = elapsed.as_secs_f64();
    Ok(NotifyRun {
        case,
        notifications: order_ids.len(),
        seconds,
        notifications_per_second: order_ids.len() as f64 / seconds,
        latency: Latency::of(latencies),
        commit_alone: None,
        matched_as_expected,
        errors,
        refused_first,
        orders_paid: orders_paid(db, &order_ids).await?,
        matched_payments: payments.get(0),
        distinct_orders_matched: payments.get(1),
        resources,
    })
}

/// A merchant's webhook endpoint on 127.0.0.1 that notes when each order's `order.paid` arrived.
pub struct WebhookReceiver {
    port: u16,
    arrivals: Arc<Arrivals>,
}

#[derive(Default)]
struct Arrivals {
    pub paid: Mutex<HashMap<String, Instant>>,
    pub arrived: Notify,
}

async fn receive_webhook(body: web::Bytes, arrivals: web::Data<Arc<Arrivals>>) -> HttpResponse {
    let at = Instant::now();
    if let Ok(event) = serde_json::from_slice::<Value>(&body)
        && event["type"] == "order.paid"
        && let Some(order_id) = event["data"]["id"].as_str()
    {
        // A redelivery keeps the first arrival.
        arrivals
            .paid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(order_id.to_string())
            .or_insert(at);
        arrivals.arrived.notify_waiters();
    }
    HttpResponse::Ok().body("ok")
}

impl WebhookReceiver {
    pub fn start() -> Result<WebhookReceiver> {
        let arrivals = Arc::new(Arrivals::default());
        let data = web::Data::new(arrivals.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive_webhook))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))?;
        let port = server
            .addrs()
            .first()
            .ok_or("the receiver has no address")?
            .port();
        tokio::spawn(server.run());
        Ok(WebhookReceiver { port, arrivals })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// When each of these orders' `order.paid` arrived, waiting up to `timeout` for all.
    async fn wait_for(&self, order_ids: &[String], timeout: Duration) -> HashMap<String, Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrivals.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let paid = self
                .arrivals
                .paid
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let all = order_ids.iter().all(|id| paid.contains_key(id));
            if all || tokio::time::Instant::now() >= deadline {
                return paid;
            }
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }
}

/// A long-poll's answer and when it came.
struct Woken {
    pub order_id: String,
    pub at: Instant,
    pub status: Option<String>,
}

/// Opens `GET /orders/{id}?wait=30` for each order; `answered` counts those that came back.
fn open_long_polls(
    api: &Api,
    order_ids: Vec<String>,
    answered: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Woken>> {
    order_ids
        .into_iter()
        .map(|order_id| {
            let (api, answered) = (api.clone(), answered.clone());
            tokio::spawn(async move {
                let answer = api.long_poll(&order_id).await;
                let at = Instant::now();
                answered.fetch_add(1, Ordering::Relaxed);
                let status = match answer {
                    Ok(Ok(order)) => order["status"].as_str().map(str::to_string),
                    _ => None,
                };
                Woken {
                    order_id,
                    at,
                    status,
                }
            })
        })
        .collect()
}

/// Notify at a fixed rate and flat out, then payment-to-webhook and long-poll wake-up latency,
/// on the payees of `devices` (online); gives the devices back by id for what follows.
pub async fn notify_and_latencies(
    args: &Args,
    api: &Api,
    db: &Arc<tokio_postgres::Client>,
    service: &Service,
    shops: &Shops,
    devices: Vec<Device>,
) -> Result<(Vec<NotifyRun>, PacedLatencies, HashMap<String, Device>)> {
    let devices: HashMap<String, Device> = devices.into_iter().map(|d| (d.id.clone(), d)).collect();
    let notify = notify_runs(args, api, &shops.shop, db, service, &devices).await?;
    println!("payment-to-webhook and long-poll wake-up latency ...");
    let paced = paced_payments(
        args,
        api,
        &shops.webhook_shop,
        db,
        &devices,
        &shops.receiver,
    )
    .await?;
    Ok((notify, paced, devices))
}

pub struct PacedLatencies {
    pub webhook: Latency,
    pub long_poll: Latency,
    pub notify: Latency,
    pub failures: BTreeMap<String, usize>,
}

/// Pays orders one every 50 ms while each is long-polled, and times from sending the
/// notification to the long-poll's answer and to the webhook's arrival at the receiver.
pub async fn paced_payments(
    args: &Args,
    api: &Api,
    webhook_shop: &Merchant,
    db: &tokio_postgres::Client,
    devices: &HashMap<String, Device>,
    receiver: &WebhookReceiver,
) -> Result<PacedLatencies> {
    let payables = payable_orders(
        api,
        webhook_shop,
        db,
        devices,
        "paced",
        args.latency_samples,
    )
    .await?;
    let order_ids: Vec<String> = payables.iter().map(|p| p.order_id.clone()).collect();
    vacuum_analyze(db).await?;
    let long_polls = open_long_polls(api, order_ids.clone(), Arc::new(AtomicUsize::new(0)));
    // Every long-poll is waiting before the first payment.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut sent_at = HashMap::new();
    let mut notify_latencies = Vec::new();
    let progress = Progress::start("payments", RunLimit::requests(payables.len()));
    let started = Instant::now();
    for (i, payable) in payables.iter().enumerate() {
        let paid = pay(api, payable).await;
        progress.done_one();
        if !paid.matched_as_expected() {
            *failures.entry("notify not matched".into()).or_default() += 1;
        }
        sent_at.insert(payable.order_id.clone(), paid.sent);
        notify_latencies.push(paid.latency);
        tokio::time::sleep_until((started + Duration::from_millis(50 * (i as u64 + 1))).into())
            .await;
    }

    progress.stop();
    let mut long_poll_latencies = Vec::new();
    for long_poll in long_polls {
        let woken = long_poll.await?;
        match (woken.status.as_deref(), sent_at.get(&woken.order_id)) {
            (Some("paid"), Some(sent)) => long_poll_latencies.push(woken.at.duration_since(*sent)),
            _ => {
                *failures
                    .entry("long-poll did not answer paid".into())
                    .or_default() += 1
            }
        }
    }
    let arrivals = receiver.wait_for(&order_ids, Duration::from_secs(30)).await;
    let mut webhook_latencies = Vec::new();
    for id in &order_ids {
        match (arrivals.get(id), sent_at.get(id)) {
            (Some(arrived), Some(sent)) => webhook_latencies.push(arrived.duration_since(*sent)),
            _ => *failures.entry("no order.paid webhook".into()).or_default() += 1,
        }
    }
    Ok(PacedLatencies {
        webhook: Latency::of(webhook_latencies),
        long_poll: Latency::of(long_poll_latencies),
        notify: Latency::of(notify_latencies),
        failures,
    })
}

/// Holds `long_polls` long-polls open and samples the service's memory meanwhile, then pays all
/// their orders at once and times the wake-ups.
pub async fn memory_with_long_polls(
    args: &Args,
    api: &Api,
    shop: &Merchant,
    db: &tokio_postgres::Client,
    devices: &HashMap<String, Device>,
    service: &Service,
    after_setup: Memory,
) -> Result<MemoryReport> {
    let payables = payable_orders(api, shop, db, devices, "held", args.long_polls).await?;
    let order_ids: Vec<String> = payables.iter().map(|p| p.order_id.clone()).collect();

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pid, sampling) = (service.pid, sampling.clone());
        tokio::spawn(async move {
            let mut highest = Memory::default();
            while sampling.load(Ordering::Relaxed) {
                let now = Memory::of(pid);
                if now.rss_mb >= highest.rss_mb {
                    highest = now;
                }
                highest.threads = highest.threads.max(now.threads);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            highest
        })
    };
    let answered = Arc::new(AtomicUsize::new(0));
    let long_polls = open_long_polls(api, order_ids, answered.clone());
    // Enough for a thousand connections to be accepted and their first read done, and for
    // the memory to settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let threads_by_name = service.threads_by_name();
    sampling.store(false, Ordering::Relaxed);
    let with_long_polls = sampler.await?;
    let answered_early = answered.load(Ordering::Relaxed);

    let paid = pay_all(api, payables, 32).await?;
    let sent_at: HashMap<String, Instant> = paid
        .iter()
        .map(|p| (p.payable.order_id.clone(), p.sent))
        .collect();
    let mut wake_ups = Vec::new();
    let mut answered_paid = 0;
    for long_poll in long_polls {
        let woken = long_poll.await?;
        if woken.status.as_deref() == Some("paid") {
            answered_paid += 1;
            if let Some(sent) = sent_at.get(&woken.order_id) {
                wake_ups.push(woken.at.saturating_duration_since(*sent));
            }
        }
    }
    Ok(MemoryReport {
        after_setup,
        with_long_polls,
        threads_by_name,
        long_polls: args.long_polls,
        long_polls_answered_early: answered_early,
        burst_wake_up: Latency::of(wake_ups),
        long_polls_answered_paid: answered_paid,
        at_end: service.memory(),
    })
}
