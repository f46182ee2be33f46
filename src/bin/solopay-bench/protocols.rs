//! The older protocols under load (issue 19): V免签's merchant `createOrder` (the same price,
//! and prices 1–50, over both types) and its app's `appHeart` and `appPush`, and 易支付 V1's
//! `mapi.php`, each with a new connection per request (as shop plugins and the app connect)
//! and with keep-alive. Against any server that speaks them (`--base-url`, credentials from the
//! command line), or against a service of the bench's own, set up for them.
//!
//! Each run is a closed loop of `--protocol-concurrency` clients for `--protocol-secs`; what
//! was refused is counted by the server's message. `appPush` pays the orders the `createOrder`
//! runs created, each from the app whose payee holds it. On the bench's own service every
//! order-creating run gets new phones and payees (the previous run's disabled), so that each
//! starts from the same state, whatever ran before it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::NoTls;

use crate::client::{Api, Device, Listeners};
use crate::compat_client::{
    Answer, CompatClient, Connection, EpayMerchant, VmqApp, VmqMerchant, VmqOrder,
};
use crate::measure::{Latency, Probe, RunLimit, closed_loop, vacuum_analyze};
use crate::orders::{devices_of_orders, orders_paid};
use crate::report::{ProtocolReport, ProtocolRun};
use crate::service::{on_fresh_database, with_service};
use crate::{Args, Result};

const VMQ: &str = "V免签";
const EPAY: &str = "易支付 V1";
/// Listener phones of each order-creating run on the bench's own service, each with a WeChat
/// and an Alipay payee: the same price fits 1,000 pending orders per payee, 8,000 a run.
const APP_DEVICES: usize = 8;
const CONNECTIONS: [Connection; 2] = [Connection::PerRequest, Connection::KeepAlive];

/// Who the workloads speak as; a workload without its credentials is left out.
pub struct Credentials {
    pub vmq_merchant: Option<VmqMerchant>,
    /// The V免签 apps, by device id (one, under "", when given on the command line).
    pub apps: HashMap<String, VmqApp>,
    pub epay_merchant: Option<EpayMerchant>,
}

/// A service the bench started: its database, to probe and check each run, and its phones.
pub struct OwnService {
    pub pid: u32,
    pub database: String,
    pub db: Arc<tokio_postgres::Client>,
    pub api: Api,
    /// The phones kept online.
    pub listeners: Listeners,
    /// The phones whose payees take the next orders.
    pub enabled: Vec<Device>,
    /// Earlier runs' phones, disabled.
    pub retired: Vec<Device>,
}

/// Against a server someone else runs.
pub async fn on_server(args: &Args, base_url: &str) -> Result<ProtocolReport> {
    let credentials = Credentials {
        vmq_merchant: args.vmq_key.clone().map(|key| VmqMerchant { key }),
        apps: args
            .vmq_app_secret
            .clone()
            .map(|secret| (String::new(), VmqApp { secret }))
            .into_iter()
            .collect(),
        epay_merchant: args
            .epay_pid
            .clone()
            .zip(args.epay_key.clone())
            .map(|(pid, key)| EpayMerchant { pid, key }),
    };
    if credentials.vmq_merchant.is_none()
        && credentials.apps.is_empty()
        && credentials.epay_merchant.is_none()
    {
        return Err(
            "--base-url needs --vmq-key, --vmq-app-secret or --epay-pid with \
                    --epay-key: nothing to measure"
                .into(),
        );
    }
    run_workloads(args, base_url, &credentials, None).await
}

/// On a service of the bench's own and a fresh database: one merchant (V免签's, through
/// `SOLOPAY_VMQ_MERCHANT`, and 易支付's by its pid) and `APP_DEVICES` phones kept online.
pub async fn on_own_service(args: &Args) -> Result<ProtocolReport> {
    on_fresh_database(args, async |database| {
        // V免签's merchant endpoints serve the merchant a setting names: it is created first,
        // then the service is started again with the setting.
        println!("setting up a service for the old protocols ...");
        let merchant = with_service(args, database, &[], async |service| {
            let api = Api::new(service)?;
            api.create_merchant("bench V免签 and 易支付 shop", None)
                .await
        })
        .await?;
        let settings = [("SOLOPAY_VMQ_MERCHANT", merchant.id.as_str())];
        with_service(args, database, &settings, async |service| {
            let api = Api::new(service)?;
            let listeners = Listeners::default();
            let heartbeats = listeners.keep_alive(api.clone());
            let (db, connection) = tokio_postgres::connect(&service.database_url, NoTls).await?;
            tokio::spawn(connection);
            let own = OwnService {
                pid: service.pid,
                database: service.database.clone(),
                db: Arc::new(db),
                api,
                listeners,
                enabled: Vec::new(),
                retired: Vec::new(),
            };
            let credentials = Credentials {
                vmq_merchant: Some(VmqMerchant {
                    key: merchant.md5_key.clone(),
                }),
                apps: HashMap::new(),
                epay_merchant: Some(EpayMerchant {
                    pid: merchant.pid.to_string(),
                    key: merchant.md5_key.clone(),
                }),
            };
            let report = run_workloads(args, &service.base_url, &credentials, Some(own)).await;
            heartbeats.abort();
            report
        })
        .await
    })
    .await
}

/// The runs, and what they need between them.
struct Phase<'a> {
    args: &'a Args,
    own: Option<OwnService>,
    /// The V免签 apps, by device id.
    apps: HashMap<String, VmqApp>,
    /// Makes this phase's order numbers unique on a server that keeps them.
    tag: String,
    runs: Vec<ProtocolRun>,
}

async fn run_workloads(
    args: &Args,
    base_url: &str,
    credentials: &Credentials,
    own: Option<OwnService>,
) -> Result<ProtocolReport> {
    let server = if own.is_some() {
        format!("a solopay of the bench's own ({base_url})")
    } else {
        base_url.to_string()
    };
    let mut phase = Phase {
        args,
        own,
        apps: credentials.apps.clone(),
        tag: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        runs: Vec::new(),
    };
    let clients = CONNECTIONS
        .into_iter()
        .map(|connection| Ok((connection, CompatClient::new(base_url, connection)?)))
        .collect::<Result<Vec<_>>>()?;

    // As the app does while it runs, so that its payees are online for the orders.
    if let Some((_, client)) = clients.first() {
        for app in phase.apps.values() {
            if let Err(refusal) = client.vmq_app_heart(app).await {
                eprintln!("warning: appHeart refused: {refusal}");
            }
        }
    }
    let mut to_pay: Vec<Vec<VmqOrder>> = vec![Vec::new(); clients.len()];
    if let Some(merchant) = &credentials.vmq_merchant {
        for prices in [Prices::Same, Prices::OneToFifty] {
            for (k, (connection, client)) in clients.iter().enumerate() {
                phase.fresh_payees().await?;
                let created = phase
                    .vmq_create_orders(client, *connection, merchant, prices)
                    .await?;
                to_pay[k].extend(created);
            }
        }
    }
    phase.bring_back_payees().await?;
    let apps: Vec<VmqApp> = phase.apps.values().cloned().collect();
    if !apps.is_empty() {
        let apps = Arc::new(apps);
        for (connection, client) in &clients {
            let (client, apps) = (client.clone(), apps.clone());
            phase
                .measure(VMQ, "appHeart", *connection, usize::MAX, move |i| {
                    let (client, app) = (client.clone(), apps[i % apps.len()].clone());
                    async move { client.vmq_app_heart(&app).await }
                })
                .await?;
        }
        for ((connection, client), orders) in clients.iter().zip(to_pay) {
            if !orders.is_empty() {
                phase.vmq_app_pushes(client, *connection, orders).await?;
            }
        }
    }
    if let Some(merchant) = &credentials.epay_merchant {
        for (connection, client) in &clients {
            phase.fresh_payees().await?;
            phase
                .epay_create_orders(client, *connection, merchant)
                .await?;
        }
    }
    Ok(ProtocolReport {
        server,
        concurrency: args.protocol_concurrency,
        seconds_per_run: args.protocol_secs,
        runs: phase.runs,
    })
}

/// The prices a run's orders ask for.
#[derive(Debug, Clone, Copy)]
enum Prices {
    /// Every order 10 yuan: the allocation's worst case, all on one amount.
    Same,
    /// Whole yuan from 1 to 50, at random.
    OneToFifty,
}

impl Prices {
    fn describe(self) -> &'static str {
        match self {
            Prices::Same => "same price (10)",
            Prices::OneToFifty => "prices 1-50",
        }
    }

    /// As a PHP shop sends a whole-yuan price: `10`.
    fn price(self) -> String {
        match self {
            Prices::Same => "10".to_string(),
            Prices::OneToFifty => rand::random_range(1..=50_u32).to_string(),
        }
    }
}

impl Phase<'_> {
    /// On the bench's own service: `APP_DEVICES` new phones with a WeChat and an Alipay payee
    /// each take the next run's orders; the previous run's phones are disabled.
    async fn fresh_payees(&mut self) -> Result<()> {
        let Some(own) = self.own.as_mut() else {
            return Ok(());
        };
        for device in std::mem::take(&mut own.enabled) {
            own.listeners.remove(&device);
            own.api.set_device_enabled(&device, false).await?;
            own.retired.push(device);
        }
        let first = own.retired.len();
        for i in first..first + APP_DEVICES {
            let name = format!("V免签 app {i}");
            let device = own.api.online_payees(&name, &["wechat", "alipay"]).await?;
            let app = VmqApp {
                secret: device.secret.clone(),
            };
            self.apps.insert(device.id.clone(), app);
            own.listeners.add(device.clone());
            own.enabled.push(device);
        }
        Ok(())
    }

    /// On the bench's own service: every phone enabled and online again, so that each can
    /// report the payments of the orders its payees hold.
    async fn bring_back_payees(&mut self) -> Result<()> {
        let Some(own) = self.own.as_mut() else {
            return Ok(());
        };
        for device in std::mem::take(&mut own.retired) {
            own.api.set_device_enabled(&device, true).await?;
            own.api.heartbeat(&device).await?;
            own.listeners.add(device.clone());
            own.enabled.push(device);
        }
        Ok(())
    }

    /// One run: `request(i)` in a closed loop for `--protocol-secs`, at most `requests` (and
    /// `--protocol-max-requests`) of them; records the run and returns what succeeded.
    async fn measure<T, F, Fut>(
        &mut self,
        protocol: &'static str,
        workload: &str,
        connection: Connection,
        requests: usize,
        request: F,
    ) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Answer<T>> + Send,
    {
        let args = self.args;
        let label = format!("{protocol} {workload}, {}", connection.describe());
        println!(
            "{label} (c={}, {} s) ...",
            args.protocol_concurrency, args.protocol_secs
        );
        if let Some(own) = &self.own {
            vacuum_analyze(&own.db).await?;
        }
        let probe = self
            .own
            .as_ref()
            .map(|own| Probe::start(own.pid, &own.db, &own.database));
        let limit = RunLimit {
            requests: requests.min(args.protocol_max_requests),
            within: Some(Duration::from_secs(args.protocol_secs)),
        };
        let run = closed_loop(&label, limit, args.protocol_concurrency, request).await?;
        let resources = match probe {
            Some(probe) => Some(probe.finish().await),
            None => None,
        };
        let requests = run.answers.len();
        let mut succeeded = Vec::with_capacity(requests);
        let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
        let mut latencies = Vec::with_capacity(requests);
        for (answer, latency) in run.answers {
            latencies.push(latency);
            match answer {
                Ok(outcome) => succeeded.push(outcome),
                Err(refusal) => *refusals.entry(refusal).or_default() += 1,
            }
        }
        let seconds = run.elapsed.as_secs_f64();
        self.runs.push(ProtocolRun {
            protocol,
            workload: workload.to_string(),
            connection: connection.describe(),
            requests,
            succeeded: succeeded.len(),
            seconds,
            requests_per_second: requests as f64 / seconds,
            succeeded_per_second: succeeded.len() as f64 / seconds,
            latency: Latency::of(latencies),
            refusals,
            orders_paid: None,
            resources,
        });
        Ok(succeeded)
    }

    /// `createOrder` over both types (1 WeChat, 2 Alipay, in turn).
    async fn vmq_create_orders(
        &mut self,
        client: &CompatClient,
        connection: Connection,
        merchant: &VmqMerchant,
        prices: Prices,
    ) -> Result<Vec<VmqOrder>> {
        let workload = format!("createOrder, {}, types 1+2", prices.describe());
        let prefix = format!("b{}-{}-", self.tag, self.runs.len());
        let (client, merchant) = (client.clone(), merchant.clone());
        self.measure(VMQ, &workload, connection, usize::MAX, move |i| {
            let (client, merchant) = (client.clone(), merchant.clone());
            let (pay_id, pay_type) = (format!("{prefix}{i}"), ["1", "2"][i % 2]);
            let price = prices.price();
            async move {
                client
                    .vmq_create_order(&merchant, &pay_id, pay_type, &price)
                    .await
            }
        })
        .await
    }

    /// `appPush` of each order's `reallyPrice`, from the app whose payee holds it; on a service
    /// of the bench's own, the orders paid are then counted.
    async fn vmq_app_pushes(
        &mut self,
        client: &CompatClient,
        connection: Connection,
        orders: Vec<VmqOrder>,
    ) -> Result<()> {
        let pushes = Arc::new(self.pushers(orders).await?);
        let (client, count) = (client.clone(), pushes.len());
        let pushed = self
            .measure(VMQ, "appPush", connection, count, move |i| {
                let (client, pushes) = (client.clone(), pushes.clone());
                async move {
                    let (order, app) = &pushes[i];
                    let pushed = client.vmq_app_push(app, &order.pay_type, &order.really_price);
                    pushed.await.map(|()| order.order_id.clone())
                }
            })
            .await?;
        if let (Some(own), Some(run)) = (&self.own, self.runs.last_mut()) {
            run.orders_paid = Some(orders_paid(&own.db, &pushed).await?);
        }
        Ok(())
    }

    /// Each order with the app that reports its payment: the one whose payee holds it on a
    /// service of the bench's own, the one given otherwise.
    async fn pushers(&self, orders: Vec<VmqOrder>) -> Result<Vec<(VmqOrder, VmqApp)>> {
        let apps = &self.apps;
        let Some(own) = &self.own else {
            let Some(app) = apps.values().next() else {
                return Ok(Vec::new());
            };
            return Ok(orders.into_iter().map(|o| (o, app.clone())).collect());
        };
        let ids: Vec<String> = orders.iter().map(|o| o.order_id.clone()).collect();
        let device_of = devices_of_orders(&own.db, &ids).await?;
        Ok(orders
            .into_iter()
            .filter_map(|order| {
                let app = device_of.get(&order.order_id).and_then(|d| apps.get(d))?;
                Some((order, app.clone()))
            })
            .collect())
    }

    /// `mapi.php`, prices 1–50 over both types (wxpay, alipay in turn).
    async fn epay_create_orders(
        &mut self,
        client: &CompatClient,
        connection: Connection,
        merchant: &EpayMerchant,
    ) -> Result<()> {
        let prefix = format!("b{}-{}-", self.tag, self.runs.len());
        let (client, merchant) = (client.clone(), merchant.clone());
        let workload = "mapi.php, prices 1-50, types wxpay+alipay";
        self.measure(EPAY, workload, connection, usize::MAX, move |i| {
            let (client, merchant) = (client.clone(), merchant.clone());
            let out_trade_no = format!("{prefix}{i}");
            let (pay_type, money) = (["wxpay", "alipay"][i % 2], Prices::OneToFifty.price());
            async move {
                client
                    .epay_create_order(&merchant, &out_trade_no, pay_type, &format!("{money}.00"))
                    .await
            }
        })
        .await?;
        Ok(())
    }
}
