//! Surviving the database primary's failure: a real pg_auto_failover cluster (a monitor, a
//! primary and a standby with synchronous replication, on free local ports, as the `postgres`
//! user), two solopay instances on its multi-host URL, orders and payments flowing, then a
//! planned switchover and the primary's machine killed (its keeper and postmaster, SIGKILL). What
//! a client was told holds afterwards; the refused window is printed.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::receiver::Receiver;

/// A pg_auto_failover formation of a monitor and two Postgres nodes, each run by its own
/// `pg_autoctl` keeper in a process group of its own (killed as one, like a machine).
struct AutoFailoverCluster {
    dir: PathBuf,
    monitor_port: u16,
    nodes: Vec<(String, u16)>,
    keepers: Mutex<Vec<(String, Child)>>,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--", "env"])
        .arg(format!("PATH={PG_BIN}:/usr/bin:/bin"));
    command.arg(program).env("LC_ALL", "C");
    command
}

fn run_ok(mut command: Command) -> String {
    let output = command
        .output()
        .expect("run pg_autoctl (is pg-auto-failover-cli installed?)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?}: {text}");
    text
}

impl AutoFailoverCluster {
    fn create() -> AutoFailoverCluster {
        assert!(
            Path::new("/usr/bin/pg_autoctl").exists(),
            "the failover test needs pg_auto_failover: apt-get install postgresql-15-auto-failover \
             pg-auto-failover-cli (.ci/run installs them)"
        );
        let dir = temp_dir();
        let chowned = Command::new("chown")
            .arg("postgres:")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chowned.success());
        let cluster = AutoFailoverCluster {
            monitor_port: free_port(),
            nodes: vec![("a".into(), free_port()), ("b".into(), free_port())],
            keepers: Mutex::new(Vec::new()),
            dir,
        };
        let monitor = cluster.dir.join("monitor");
        let mut create = as_postgres("pg_autoctl");
        create
            .args(["create", "monitor", "--pgdata"])
            .arg(&monitor)
            .args(["--pgport", &cluster.monitor_port.to_string()])
            .args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]);
        run_ok(create);
        cluster.keep("monitor");
        cluster.wait_for(Duration::from_secs(30), "the monitor", || {
            cluster.monitor_query("SELECT 1").is_some()
        });
        // Decide within seconds, not the defaults' half minute: failures are checked every
        // second, and a primary that stopped answering is given 3 s to demote itself.
        for (setting, value) in [
            ("health_check_period", 1000),
            ("health_check_timeout", 1000),
            ("health_check_max_retries", 1),
            ("health_check_retry_delay", 500),
            ("node_considered_unhealthy_timeout", 3000),
            ("primary_demote_timeout", 3000),
        ] {
            cluster.monitor_query(&format!(
                "ALTER SYSTEM SET pgautofailover.{setting} = {value}"
            ));
        }
        cluster.monitor_query("SELECT pg_reload_conf()");
        for (name, port) in cluster.nodes.clone() {
            let mut create = as_postgres("pg_autoctl");
            create
                .args(["create", "postgres", "--pgdata"])
                .arg(cluster.dir.join(&name))
                .args(["--pgport", &port.to_string(), "--name", &name])
                .args(["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"])
                .args(["--pgctl", &format!("{PG_BIN}/pg_ctl")])
                .args(["--monitor", &cluster.monitor_url()]);
            run_ok(create);
            cluster.keep(&name);
            // Alone, a node is `single`; with its standby, `primary` and `secondary`.
            let settled: &[&str] = if name == "a" {
                &["single"]
            } else {
                &["primary", "secondary"]
            };
            // Long enough for a loaded machine: a standby catching up under a parallel build
            // was seen to take more than a minute (this is set-up, not a figure).
            cluster.wait_for(Duration::from_secs(180), "the nodes to settle", || {
                let mut states: Vec<String> = cluster
                    .states()
                    .into_iter()
                    .map(|(_, state)| state)
                    .collect();
                states.sort();
                states == settled
            });
        }
        cluster
    }

    fn monitor_url(&self) -> String {
        format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
            self.monitor_port
        )
    }

    /// Starts `pg_autoctl run` for a node (or the monitor) in a process group of its own.
    fn keep(&self, name: &str) {
        let mut run = as_postgres("pg_autoctl");
        run.args(["run", "--pgdata"])
            .arg(self.dir.join(name))
            .process_group(0)
            .stdout(std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap())
            .stderr(std::process::Stdio::null());
        let child = run.spawn().unwrap();
        self.keepers.lock().unwrap().push((name.to_string(), child));
    }

    /// One value from the monitor's database, as text (`None` while it cannot answer).
    fn monitor_query(&self, sql: &str) -> Option<String> {
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.monitor_port.to_string()])
            .args(["-U", "postgres", "-d", "pg_auto_failover", "-Atqc", sql])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Each node's name and reported state.
    fn states(&self) -> Vec<(String, String)> {
        self.monitor_query("SELECT nodename || '=' || reportedstate FROM pgautofailover.node")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (name, state) = line.split_once('=')?;
                Some((name.to_string(), state.to_string()))
            })
            .collect()
    }

    fn primary(&self) -> Option<String> {
        self.states()
            .into_iter()
            .find(|(_, state)| matches!(state.as_str(), "primary" | "wait_primary" | "single"))
            .map(|(name, _)| name)
    }

    fn wait_for(&self, within: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < within,
                "waited {within:?} for {what}: {:?}",
                self.states()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The URL solopay is given: every node, the primary chosen by libpq.
    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect();
        format!(
            "postgres://postgres@{}/solopay?target_session_attrs=read-write&sslmode=disable&connect_timeout=2",
            hosts.join(",")
        )
    }

    fn switchover(&self) {
        let mut switchover = as_postgres("pg_autoctl");
        switchover
            .args([
                "perform",
                "switchover",
                "--formation",
                "default",
                "--pgdata",
            ])
            .arg(self.dir.join("monitor"));
        run_ok(switchover);
    }

    /// Kills the primary's machine: its keeper, its postmaster and every backend, with SIGKILL.
    fn kill_primary(&self) -> String {
        let primary = self.primary().expect("a primary");
        let mut keepers = self.keepers.lock().unwrap();
        let (_, keeper) = keepers
            .iter_mut()
            .find(|(name, _)| *name == primary)
            .expect("the primary's keeper");
        let group = keeper.id();
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status()
            .unwrap();
        assert!(killed.success());
        let _ = keeper.wait();
        primary
    }
}

impl Drop for AutoFailoverCluster {
    fn drop(&mut self) {
        for (_, keeper) in self.keepers.lock().unwrap().iter_mut() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", keeper.id())])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = keeper.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One answer the load got.
#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    at: Duration,
    took: Duration,
    status: u16,
    /// The problem's code, for a refusal.
    code: String,
    problem_with_retry_after: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_failing_loses_nothing_a_client_was_told() {
    let cluster = tokio::task::spawn_blocking(AutoFailoverCluster::create)
        .await
        .unwrap();
    let cluster = Arc::new(cluster);
    let receiver = Receiver::start().await;
    let url = cluster.url();
    let settings = || {
        let mut s = settings_for(&url);
        s.allow_private_webhooks = true;
        s.webhook_retry_schedule = vec![Duration::from_millis(500); 7];
        s.webhook_poll_interval = Duration::from_millis(200);
        s.db_pool_timeout = Duration::from_secs(2);
        s.statement_timeout = Duration::from_secs(5);
        s.db_wait = Duration::from_secs(20);
        s
    };
    let first = start(settings()).await;
    let second = start(settings()).await;
    let merchant = first.merchant_with_webhooks(&receiver.url()).await;
    let listener = first.online_listener("wechat").await;

    let started = Instant::now();
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let created = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let payments = Arc::new(Mutex::new(Vec::<String>::new()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let client = solopay::webhooks::sender::http_client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let load: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, app)| {
            let (client, merchant, device) =
                (client.clone(), merchant.clone(), listener.device.clone());
            let (answers, created, payments, running) = (
                answers.clone(),
                created.clone(),
                payments.clone(),
                running.clone(),
            );
            tokio::spawn(async move {
                let record = |what, at: Instant, response: &reqwest::Response| Answer {
                    what,
                    at: at.duration_since(started),
                    took: at.elapsed(),
                    status: response.status().as_u16(),
                    code: String::new(),
                    problem_with_retry_after: response
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
                        && response.headers().contains_key("retry-after"),
                };
                let mut i = 0;
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    // Keep the payee online through the switch (a heartbeat every round).
                    let _ = app.heartbeat(&device).await;
                    let at = Instant::now();
                    let response = client
                        .post(app.url("/orders"))
                        .bearer_auth(&merchant.api_key)
                        .json(&json!({"merchant_order_id": format!("i{n}-{i}"),
                                      "amount": format!("{}.00", 1000 * (n + 1) + i),
                                      "channel": "wechat"}))
                        .send()
                        .await
                        .expect("an answer, never a hang");
                    let mut answer = record("create", at, &response);
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    answer.code = body["code"].as_str().unwrap_or_default().to_string();
                    answers.lock().unwrap().push(answer);
                    if status != StatusCode::CREATED {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    let (id, payable) = (
                        body["id"].as_str().unwrap().to_string(),
                        body["payable_amount"].as_str().unwrap().to_string(),
                    );
                    created.lock().unwrap().push((id, payable.clone()));
                    // Pay it (retrying the same notification until it is answered).
                    let notification = json!({"notification_id": format!("n{n}-{i}"),
                                              "channel": "wechat", "amount": payable});
                    loop {
                        let at = Instant::now();
                        let response = app
                            .signed_post(
                                "/notify",
                                &device,
                                now_unix(),
                                notification.to_string().as_bytes(),
                            )
                            .await;
                        let mut answer = record("notify", at, &response);
                        let ok = response.status().is_success();
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        answer.code = body["code"].as_str().unwrap_or_default().to_string();
                        answers.lock().unwrap().push(answer);
                        if ok {
                            payments
                                .lock()
                                .unwrap()
                                .push(body["payment_id"].as_str().unwrap().to_string());
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            })
        })
        .collect();

    let pause = |secs| tokio::time::sleep(Duration::from_secs(secs));
    pause(3).await;
    let switchover_at = started.elapsed();
    let switcher = cluster.clone();
    tokio::task::spawn_blocking(move || switcher.switchover())
        .await
        .unwrap();
    let switched_at = started.elapsed();
    pause(4).await;
    let kill_at = started.elapsed();
    let killer = cluster.clone();
    let killed = tokio::task::spawn_blocking(move || killer.kill_primary())
        .await
        .unwrap();
    let promoter = cluster.clone();
    tokio::task::spawn_blocking(move || {
        promoter.wait_for(Duration::from_secs(120), "a new primary", || {
            promoter.primary().is_some_and(|p| p != killed)
        })
    })
    .await
    .unwrap();
    let promoted_at = started.elapsed();
    pause(6).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    // Every answer was a success or a 503 problem with Retry-After, in bounded time.
    let answers = answers.lock().unwrap().clone();
    for answer in &answers {
        assert!(
            (200..300).contains(&answer.status)
                || (answer.status == 503 && answer.problem_with_retry_after),
            "{answer:?}"
        );
        assert!(answer.took < Duration::from_secs(15), "{answer:?}");
    }
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    let window = |from: Duration, to: Duration| {
        let inside: Vec<&&Answer> = refused
            .iter()
            .filter(|a| a.at >= from && a.at <= to)
            .collect();
        let span = match (inside.first(), inside.last()) {
            (Some(first), Some(last)) => last.at + last.took - first.at,
            _ => Duration::ZERO,
        };
        (inside.len(), span)
    };
    let (switch_refused, switch_span) = window(switchover_at, kill_at);
    let (kill_refused, kill_span) = window(kill_at, started.elapsed());
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    let refused_creates = refused.iter().filter(|a| a.what == "create").count();
    let mut codes = std::collections::BTreeMap::<&str, usize>::new();
    for answer in &refused {
        *codes.entry(answer.code.as_str()).or_default() += 1;
    }
    println!(
        "{} answers, {} refused (503, {refused_creates} of them creates): switchover {:?}–{:?}: {switch_refused} refused over {switch_span:?}; \
         primary killed at {kill_at:?}, new primary at {promoted_at:?}: {kill_refused} refused over \
         {kill_span:?}; slowest answer {slowest:?}; refusals by code {codes:?}",
        answers.len(),
        refused.len(),
        switchover_at,
        switched_at,
    );

    // The order-change listener of each instance follows the primary too (it can only connect
    // to one that accepts writes).
    for app in [&first, &second] {
        let listening = eventually(Duration::from_secs(20), || async {
            app.metrics()
                .await
                .lines()
                .any(|line| line.starts_with("solopay_order_listener_connected 1"))
        })
        .await;
        assert!(
            listening,
            "an instance's listener did not reconnect to the new primary"
        );
    }

    // What clients were told holds on the new primary.
    let created = created.lock().unwrap().clone();
    let payments = payments.lock().unwrap().clone();
    assert!(
        created.len() >= 10,
        "too little load: {} orders",
        created.len()
    );
    let (client_db, connection) = tokio_postgres::connect(
        &url.replace("/solopay?", "/solopay?application_name=check&"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let count = |sql: String| {
        let client_db = &client_db;
        async move {
            client_db
                .query_one(&sql, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let ids: Vec<String> = created.iter().map(|(id, _)| format!("'{id}'")).collect();
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM orders WHERE id IN ({})",
            ids.join(",")
        ))
        .await,
        created.len() as i64,
        "every order a client got 201 for exists"
    );
    let paid: Vec<String> = payments.iter().map(|id| format!("'{id}'")).collect();
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM payments WHERE id IN ({}) AND result IN ('matched', 'duplicate', 'unmatched')",
            paid.join(",")
        ))
        .await,
        payments.len() as i64,
        "every notification that got 2xx is stored"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM (SELECT payee_id, payable_amount FROM orders WHERE status = 'pending' \
             GROUP BY 1, 2 HAVING count(*) > 1) held_twice"
                .into()
        )
        .await,
        0,
        "no pending amount is held twice"
    );
    // Every order.paid reaches the merchant.
    let events: BTreeSet<String> = client_db
        .query("SELECT id FROM events WHERE type = 'order.paid'", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect();
    assert!(
        events.len() >= payments.len() / 2,
        "{} paid events",
        events.len()
    );
    let delivered = eventually(Duration::from_secs(60), || {
        let events = events.clone();
        let receiver = &receiver;
        async move {
            let received: BTreeSet<String> = receiver
                .received()
                .iter()
                .map(|r| r.header("webhook-id").to_string())
                .collect();
            events.is_subset(&received)
        }
    })
    .await;
    assert!(delivered, "every order.paid is delivered");
}
