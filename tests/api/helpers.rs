//! Test harness: a fresh database per test, service instances on port 0, and clients for each
//! role (operator, merchant, listener device) that build requests the way real clients do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::RunQueryDsl;
use hmac::{KeyInit, Mac};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use solopay::app::Application;
use solopay::config::Settings;
use tokio::process::{Child, Command};

pub const ADMIN_TOKEN: &str = "test-operator-token-0123456789";

/// The Postgres server tests use, without a database name.
fn server_url() -> String {
    std::env::var("SOLOPAY_TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://localhost:5432".to_string())
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A name no other test uses; the service creates the database at start.
    pub fn fresh() -> TestDb {
        let name = format!("solopay_test_{}", uuid::Uuid::new_v4().simple());
        TestDb {
            url: format!("{}/{name}", server_url()),
            name,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// Runs a statement (for simulating the passage of time, or setting up what the API cannot).
    pub async fn execute(&self, sql: &str) -> u64 {
        self.client()
            .await
            .execute(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The single i64 a query returns (counts).
    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Ends every other connection to this database (the service's included; its pool opens new
    /// ones); how many were ended.
    pub async fn end_connections(&self) -> i64 {
        self.count(
            "WITH ended AS (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                            WHERE datname = current_database() AND pid <> pg_backend_pid()) \
             SELECT count(*) FROM ended",
        )
        .await
    }

    /// How many deadlocks Postgres detected in this database. Backends flush their statistics
    /// when they exit: the service's connections are ended first.
    pub async fn deadlocks(&self) -> i64 {
        self.end_connections().await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        self.count("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            .await
    }

    /// The single text a query returns.
    pub async fn text(&self, sql: &str) -> Option<String> {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = format!("{}/postgres", server_url());
        let name = self.name.clone();
        // Outside the async runtime: diesel's connection is synchronous.
        let _ = std::thread::spawn(move || {
            if let Ok(mut conn) = solopay::db::startup::establish(&url) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn);
            }
        })
        .join();
    }
}

/// Settings for a test instance: port 0, a small pool, a fast sweep, a known operator token.
pub fn test_settings(db: &TestDb) -> Settings {
    settings_for(&db.url)
}

/// The tests' settings of an instance on the database at `url`.
pub fn settings_for(url: &str) -> Settings {
    let mut settings = Settings::from_lookup(|_| None).expect("default settings");
    settings.database_url = url.to_string().into();
    settings.bind = "127.0.0.1:0".parse().expect("address");
    settings.admin_token = Some(solopay::config::Secret::new(ADMIN_TOKEN.to_string()));
    settings.db_pool_size = 8;
    settings.workers = 2;
    settings.sweep_interval = Duration::from_millis(200);
    settings.secret_key = Some(solopay::config::Secret::new(TEST_SECRET_KEY));
    // Tests fire bursts from one address; the limit itself is tested on its own.
    settings.rate_limit = 10_000;
    settings.rate_limit_burst = 10_000;
    settings
}

/// Seals the stored secrets of in-process instances (one key per process).
pub const TEST_SECRET_KEY: [u8; 32] = [42; 32];

/// One running instance of the service (cheap to clone into spawned requests).
#[derive(Clone)]
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

/// A fresh database and one instance on it.
pub struct TestEnv {
    pub app: TestApp,
    pub db: TestDb,
}

pub async fn spawn_app() -> TestEnv {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestEnv {
    let db = TestDb::fresh();
    let mut settings = test_settings(&db);
    configure(&mut settings);
    let app = start(settings).await;
    TestEnv { app, db }
}

/// Another instance of the service on the same database (a second process in production).
pub async fn spawn_instance(db: &TestDb, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(db);
    configure(&mut settings);
    start(settings).await
}

pub async fn start(settings: Settings) -> TestApp {
    // SOLOPAY_TEST_LOG=1 shows the service's logs (with --nocapture).
    if std::env::var_os("SOLOPAY_TEST_LOG").is_some() {
        solopay::telemetry::init(solopay::config::LogFormat::Text);
    }
    let app = Application::build(settings)
        .await
        .expect("build the application");
    let address = format!("http://{}", app.address());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: solopay::webhooks::sender::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
    }
}

/// A merchant's credentials, as the operator received them.
#[derive(Debug, Clone)]
pub struct MerchantKeys {
    pub id: String,
    pub api_key: String,
    pub webhook_secret: String,
    /// The key of the old protocols' md5 signs.
    pub md5_key: String,
}

/// A listener device's credentials.
#[derive(Debug, Clone)]
pub struct DeviceKeys {
    pub id: String,
    pub secret: String,
}

/// A listening device with one payee per channel it was set up for.
#[derive(Debug, Clone)]
pub struct Listener {
    pub device: DeviceKeys,
    pub payee_id: String,
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The listener signature, computed here independently of the service's code.
pub fn device_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl TestApp {
    /// A client for a service process listening on `port`.
    pub fn at_port(port: u16) -> TestApp {
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            client: solopay::webhooks::sender::http_client_builder()
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// The status of a plain GET of `path`.
    pub async fn status_of(&self, path: &str) -> StatusCode {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .status()
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("metrics text")
    }

    /// `PATCH /admin/devices/{id}` with `allowed_packages` (`null`: the defaults).
    pub async fn allow_packages(&self, device_id: &str, packages: Value) {
        let response = self
            .client
            .patch(self.url(&format!("/admin/devices/{device_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "allowed_packages": packages }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request")
    }

    pub async fn create_merchant(&self, name: &str) -> MerchantKeys {
        self.create_merchant_with(json!({ "name": name })).await
    }

    /// A merchant whose webhooks go to `notify_url`.
    pub async fn merchant_with_webhooks(&self, notify_url: &str) -> MerchantKeys {
        self.create_merchant_with(json!({ "name": "shop", "notify_url": notify_url }))
            .await
    }

    async fn create_merchant_with(&self, body: Value) -> MerchantKeys {
        let response = self.admin_post("/admin/merchants", &body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        let field = |name: &str| body[name].as_str().expect(name).to_string();
        MerchantKeys {
            id: field("id"),
            api_key: field("api_key"),
            webhook_secret: field("webhook_secret"),
            md5_key: field("md5_key"),
        }
    }

    pub async fn create_device(&self, name: &str) -> DeviceKeys {
        let response = self
            .admin_post("/admin/devices", &json!({ "name": name }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        DeviceKeys {
            id: body["id"].as_str().expect("id").to_string(),
            secret: body["secret"].as_str().expect("secret").to_string(),
        }
    }

    pub async fn create_payee(&self, device: &DeviceKeys, channel: &str, extra: Value) -> Value {
        let mut body = json!({
            "channel": channel,
            "name": format!("{channel} payee"),
            "qr_code": format!("{channel}://collect/{}", device.id),
            "device_id": device.id,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = self.admin_post("/admin/payees", &body).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{:?}",
            response.text().await
        );
        response.json().await.expect("json")
    }

    /// A device with a payee on `channel`, online.
    pub async fn online_listener(&self, channel: &str) -> Listener {
        self.online_listener_with(channel, json!({})).await
    }

    pub async fn online_listener_with(&self, channel: &str, payee_extra: Value) -> Listener {
        let device = self.create_device("phone").await;
        let payee = self.create_payee(&device, channel, payee_extra).await;
        assert_eq!(self.heartbeat(&device).await.status(), StatusCode::OK);
        Listener {
            device,
            payee_id: payee["id"].as_str().expect("id").to_string(),
        }
    }

    /// A request signed by the device, at `timestamp`, with these exact body bytes.
    pub async fn signed_post(
        &self,
        path: &str,
        device: &DeviceKeys,
        timestamp: i64,
        body: &[u8],
    ) -> Response {
        let timestamp = timestamp.to_string();
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("X-Solopay-Device", &device.id)
            .header("X-Solopay-Timestamp", &timestamp)
            .header(
                "X-Solopay-Signature",
                device_signature(&device.secret, &timestamp, body),
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("request")
    }

    pub async fn heartbeat(&self, device: &DeviceKeys) -> Response {
        self.signed_post("/heartbeat", device, now_unix(), b"{}")
            .await
    }

    pub async fn notify(&self, device: &DeviceKeys, body: &Value) -> Response {
        self.signed_post("/notify", device, now_unix(), body.to_string().as_bytes())
            .await
    }

    /// A payment notification of `amount` on `channel` with a fresh notification id.
    pub async fn pay(&self, device: &DeviceKeys, channel: &str, amount: &str) -> Value {
        let response = self
            .notify(
                device,
                &json!({
                    "notification_id": uuid::Uuid::new_v4().to_string(),
                    "channel": channel,
                    "amount": amount,
                }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    pub async fn create_order(&self, merchant: &MerchantKeys, body: &Value) -> Response {
        self.client
            .post(self.url("/orders"))
            .bearer_auth(&merchant.api_key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates an order that must succeed; returns its JSON.
    pub async fn order(&self, merchant: &MerchantKeys, amount: &str, channel: &str) -> Value {
        let response = self
            .create_order(
                merchant,
                &json!({
                    "merchant_order_id": uuid::Uuid::new_v4().simple().to_string(),
                    "amount": amount,
                    "channel": channel,
                }),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{:?}",
            response.text().await
        );
        response.json().await.expect("json")
    }

    pub async fn get_order(&self, id: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/orders/{id}")))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    pub async fn close_order(&self, merchant: &MerchantKeys, id: &str) -> Response {
        self.client
            .post(self.url(&format!("/orders/{id}/close")))
            .bearer_auth(&merchant.api_key)
            .send()
            .await
            .expect("request")
    }
}

/// Sends a request that must get an answer, and reads the answer as JSON.
pub async fn json_answer(request: reqwest::RequestBuilder) -> Value {
    request
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// Asserts a problem+json answer with this status and code; returns the problem.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected {status} {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let problem: Value = response.json().await.expect("problem json");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status.as_u16());
    assert!(problem["type"].as_str().is_some_and(|t| t.ends_with(code)));
    assert!(problem["title"].is_string() && problem["detail"].is_string());
    problem
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves an order `secs` seconds into the past (creation, expiry and reservation alike), as if
/// that much time had gone by since it was created.
pub async fn age_order(db: &TestDb, order_id: &str, secs: i64) {
    let changed = db.execute(&age_order_sql(order_id, secs)).await;
    assert_eq!(changed, 1);
}

/// Sets an order as the one that held its amount a moment ago: created 25 s ago, expired 6 s
/// ago, its reservation ended 5 s ago (the amount can go to the next customer).
pub async fn end_reservation(db: &TestDb, order_id: &str) {
    let changed = db
        .execute(&format!(
            "UPDATE orders SET created_at = now() - interval '25 seconds', \
                               expires_at = now() - interval '6 seconds', \
                               reserved_until = now() - interval '5 seconds' \
              WHERE id = '{order_id}'"
        ))
        .await;
    assert_eq!(changed, 1);
}

/// The statement of [`age_order`].
pub fn age_order_sql(order_id: &str, secs: i64) -> String {
    format!(
        "UPDATE orders SET created_at = created_at - interval '{secs} seconds', \
                           expires_at = expires_at - interval '{secs} seconds', \
                           reserved_until = reserved_until - interval '{secs} seconds' \
         WHERE id = '{order_id}'"
    )
}

/// When an order was created, by the database's clock.
pub async fn order_created_at(db: &TestDb, order: &Value) -> chrono::DateTime<chrono::Utc> {
    let micros = db
        .text(&format!(
            "SELECT (extract(epoch FROM created_at) * 1000000)::bigint::text FROM orders \
             WHERE id = '{}'",
            order["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    chrono::DateTime::from_timestamp_micros(micros.parse().unwrap()).unwrap()
}

/// A free port on 127.0.0.1 for a process a test starts, chosen below the kernel's range of
/// ephemeral ports. A port bound as `:0` (another test's in-process instance, every outgoing
/// connection) comes from that range, so none can take this one before the process binds it.
/// One did: the process could not bind, and `/readyz` was answered by another test's instance
/// on the same port, until that test ended.
pub fn free_port() -> u16 {
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000, ephemeral_from.max(10_100));
    loop {
        let port = rand::random_range(from..to);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The `solopay` binary with the settings of a test: this database, this port, logs on stdout.
pub fn solopay(db: &TestDb, dir: &Path, port: u16) -> Command {
    solopay_on(&db.url, dir, port)
}

/// The `solopay` binary with the settings of a test, on the database at `url`.
pub fn solopay_on(url: &str, dir: &Path, port: u16) -> Command {
    with_settings(Command::new(env!("CARGO_BIN_EXE_solopay")), url, dir, port)
}

/// `command` (the `solopay` binary, or a program that runs it) with the settings of a test.
pub fn with_settings(mut command: Command, url: &str, dir: &Path, port: u16) -> Command {
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("SOLOPAY_BIND", format!("127.0.0.1:{port}"))
        .env("SOLOPAY_ADMIN_TOKEN_FILE", dir.join("admin-token"))
        .env("SOLOPAY_LOG", "info")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Creates and migrates the test's database with `solopay migrate` (no service runs on it).
pub async fn migrate(db: &TestDb) {
    let dir = temp_dir();
    let output = solopay(db, &dir, free_port())
        .arg("migrate")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the process on `port` is ready.
pub async fn wait_until_up(port: u16) {
    let client = solopay::webhooks::sender::http_client_builder()
        .build()
        .unwrap();
    let up = eventually(Duration::from_secs(20), || {
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        }
    })
    .await;
    assert!(up, "the service did not become ready");
}

/// A running `solopay` process. Its stdout and stderr are drained into memory as they come, so a
/// chatty service never blocks on a full pipe, and a test can read what it logged.
pub struct Service {
    child: Child,
    logs: Arc<Mutex<String>>,
    drains: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    pub fn spawn(command: &mut Command) -> Service {
        let mut child = command.spawn().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let mut drains = Vec::new();
        let outputs: [Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>; 2] = [
            child.stdout.take().map(|out| Box::new(out) as _),
            child.stderr.take().map(|err| Box::new(err) as _),
        ];
        for output in outputs.into_iter().flatten() {
            let logs = logs.clone();
            drains.push(tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(output).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            }));
        }
        Service {
            child,
            logs,
            drains,
        }
    }

    /// Kills the process uncleanly (SIGKILL) and waits for it to be gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Everything the process wrote so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit; returns the status and everything the process logged.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the service did not stop after SIGTERM")
            .unwrap();
        for drain in self.drains.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        }
        (status, self.logs())
    }
}

pub async fn operator_can_list(port: u16, token: &str) -> StatusCode {
    solopay::webhooks::sender::http_client_builder()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/admin/merchants"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("solopay-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PostgreSQL cluster of the test's own (see [`solopay::private_cluster`]), so that it can be
/// stopped without disturbing the shared server other tests use at the same moment.
pub struct PrivateCluster(solopay::private_cluster::PrivateCluster);

impl PrivateCluster {
    pub fn create() -> PrivateCluster {
        let cluster = PrivateCluster::create_stopped();
        cluster.start();
        cluster
    }

    /// A new cluster, initialised but not started.
    pub fn create_stopped() -> PrivateCluster {
        PrivateCluster(solopay::private_cluster::PrivateCluster::init("solopay-test").unwrap())
    }

    pub fn start(&self) {
        self.0.start(&["fsync=off", "max_connections=40"]).unwrap();
    }

    /// A fast shutdown: open sessions are terminated, as in a restart or a failover.
    pub fn stop(&self) {
        self.0.stop().unwrap();
    }

    pub fn url(&self) -> String {
        format!("{}/solopay?sslmode=disable", self.0.server_url())
    }
}

/// A session of the test's own that holds `device_id`'s row (`FOR UPDATE`) until it is told
/// `COMMIT`: the device's notifications wait at that row as they are stored.
pub async fn hold_device_row(db: &TestDb, device_id: &str) -> tokio_postgres::Client {
    let session = db.client().await;
    session.batch_execute("BEGIN").await.unwrap();
    session
        .execute(
            "SELECT 1 FROM devices WHERE id = $1 FOR UPDATE",
            &[&device_id],
        )
        .await
        .unwrap();
    session
}

/// Whether, within 10 s, at least `n` sessions of the test's database wait for a lock.
pub async fn lock_waiters(db: &TestDb, n: i64) -> bool {
    eventually(Duration::from_secs(10), || async {
        db.count(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await
            >= n
    })
    .await
}

/// The lines of `EXPLAIN (<options>) <query>` (no options: plain `EXPLAIN`) on `client`.
pub async fn explain(client: &tokio_postgres::Client, options: &str, query: &str) -> Vec<String> {
    let options = if options.is_empty() {
        String::new()
    } else {
        format!("({options}) ")
    };
    client
        .query(&format!("EXPLAIN {options}{query}"), &[])
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {query}: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The shared buffers the top node of `call`'s plan read when run on `client` (a function
/// scan's include its statements'). Run it once on the client before: the first run reads the
/// catalog into the connection's caches and plans the function's statements.
pub async fn buffers_read(client: &tokio_postgres::Client, call: &str) -> u64 {
    let plan = explain(client, "ANALYZE, BUFFERS", call).await;
    let line = plan
        .iter()
        .find(|line| line.trim_start().starts_with("Buffers:"))
        .unwrap_or_else(|| panic!("no buffers in {plan:?}"));
    line.split_whitespace()
        .filter_map(|part| part.split_once('='))
        .filter(|(what, _)| matches!(*what, "hit" | "read"))
        .map(|(_, n)| n.parse::<u64>().unwrap())
        .sum()
}

/// The operator assigns `payment` (an answer with `payment_id`) to `order`, the differences
/// accepted: refused (`invalid_state`, naming `paid_by`, the order another report of the payment
/// paid) and the order left pending without `second_payment`; accepted with it.
pub async fn assign_only_as_a_second_payment(
    app: &TestApp,
    payment: &Value,
    order: &Value,
    paid_by: &Value,
) {
    let path = format!(
        "/admin/payments/{}/assign",
        payment["payment_id"].as_str().expect("payment_id")
    );
    let assign = |second_payment: bool| {
        let body = json!({"order_id": order["id"], "accept_differences": true,
                          "second_payment": second_payment});
        let path = path.clone();
        async move { app.admin_post(&path, &body).await }
    };
    let refused: Value = assign(false).await.json().await.expect("json");
    assert_eq!(refused["code"], "invalid_state", "{refused}");
    let named = format!("paid order {}", paid_by["id"].as_str().expect("id"));
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&named),
        "{refused}"
    );
    let order_id = order["id"].as_str().expect("id");
    assert_eq!(app.get_order(order_id).await["status"], "pending");
    assert_eq!(assign(true).await.status(), StatusCode::OK);
    assert_eq!(app.get_order(order_id).await["status"], "paid");
}

/// A session of the test's own that listens on `channel` of `db`, and the payloads it hears.
pub async fn listen(
    db: &TestDb,
    channel: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use futures_util::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (heard, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = heard.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();
    (client, rx)
}
