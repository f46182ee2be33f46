//! The service under test: a `solopay serve` process on a database of its own, its memory as
//! the kernel reports it, and dropping the database afterwards.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::NoTls;

use crate::client::http_client;
use crate::{Args, MAX_OFFSET_STEPS, Result};

/// A `solopay serve` process on its own database and port; killed if dropped while running.
pub struct Service {
    pub child: Option<Child>,
    pub pid: u32,
    pub base_url: String,
    pub admin_token: String,
    pub database: String,
    pub database_url: String,
    pub log: PathBuf,
}

/// The key every service this bench starts seals its secrets with, installed in the bench's own
/// process too, so that the bench can call the service's code on rows holding sealed secrets
/// (the history phase's timing of the sweep's device check): hex, as `SOLOPAY_SECRET_KEY` takes it.
fn sealing_key() -> Result<&'static str> {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hex = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::fill(&mut key[..]);
        hex::encode(key)
    });
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex, &mut key).map_err(|e| e.to_string())?;
    solopay::db::sealed::install_key(key)?;
    Ok(hex)
}

impl Service {
    /// Starts the service on `database` (created and migrated if missing), with `settings` added
    /// to its environment.
    pub fn start(args: &Args, database: &str, settings: &[(&str, &str)]) -> Result<Service> {
        let binary = match &args.solopay {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("solopay"),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(database);
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("service.log");
        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        let database_url = format!("{}/{database}", args.database_server.trim_end_matches('/'));
        let child = Command::new(&binary)
            .arg("serve")
            .current_dir(&dir)
            .env("DATABASE_URL", &database_url)
            .env("SOLOPAY_BIND", format!("127.0.0.1:{port}"))
            .env("SOLOPAY_ADMIN_TOKEN", &admin_token)
            .env("SOLOPAY_SECRET_KEY", sealing_key()?)
            .env("SOLOPAY_ALLOW_PRIVATE_WEBHOOKS", "true")
            .env("SOLOPAY_MAX_OFFSET_STEPS", MAX_OFFSET_STEPS.to_string())
            .env("SOLOPAY_LOG", "warn")
            // All the load comes from one address.
            .env("SOLOPAY_RATE_LIMIT", "0")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(Service {
            pid: child.id(),
            child: Some(child),
            base_url: format!("http://127.0.0.1:{port}"),
            admin_token,
            database: database.to_string(),
            database_url,
            log,
        })
    }

    pub async fn wait_until_ready(&mut self) -> Result<()> {
        let http = http_client()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(format!(
                    "the service exited at start ({status}); see {}",
                    self.log.display()
                )
                .into());
            }
            let ready = http
                .get(format!("{}/readyz", self.base_url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the service did not become ready within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many threads of each name the process has (`/proc/<pid>/task/*/comm`).
    pub fn threads_by_name(&self) -> BTreeMap<String, u32> {
        let mut names = BTreeMap::new();
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid));
        for task in tasks.into_iter().flatten().flatten() {
            if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
                *names.entry(name.trim().to_string()).or_default() += 1;
            }
        }
        names
    }

    pub fn memory(&self) -> Memory {
        Memory::of(self.pid)
    }

    /// SIGTERM, as an operator would stop it; SIGKILL if it has not exited after 20 s.
    /// An error naming how it ended if the service exited by itself (a crash shows as a
    /// signal; the kernel log has the details).
    pub async fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(status) = child.try_wait()? {
            return Err(format!(
                "the service (pid {}) exited by itself during the run: {status}; see {} and the \
                 kernel log (dmesg)",
                self.pid,
                self.log.display()
            )
            .into());
        }
        Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                return Err("the service did not stop within 20 s of SIGTERM".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `work` on a fresh database of its own (`solopay_bench_…`), dropped afterwards unless
/// `--keep-database`.
pub async fn on_fresh_database<T>(
    args: &Args,
    work: impl AsyncFnOnce(&str) -> Result<T>,
) -> Result<T> {
    let database = format!(
        "solopay_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let outcome = work(&database).await;
    if args.keep_database {
        // Its secrets are sealed with this run's key: a service started on it later needs it.
        eprintln!(
            "kept database {database} (SOLOPAY_SECRET_KEY={})",
            sealing_key()?
        );
    } else {
        drop_database(&args.database_server, &database).await?;
    }
    outcome
}

/// Runs `work` on a service started on `database` with `settings` (see [`Service::start`]),
/// then stops it.
pub async fn with_service<T>(
    args: &Args,
    database: &str,
    settings: &[(&str, &str)],
    work: impl AsyncFnOnce(&Service) -> Result<T>,
) -> Result<T> {
    let mut service = Service::start(args, database, settings)?;
    let outcome = match service.wait_until_ready().await {
        Ok(()) => work(&service).await,
        Err(error) => Err(error),
    };
    // A crashed service explains the failed requests better than they do.
    service.stop().await?;
    outcome
}

pub async fn drop_database(server: &str, database: &str) -> Result<()> {
    let (client, connection) =
        tokio_postgres::connect(&format!("{}/postgres", server.trim_end_matches('/')), NoTls)
            .await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await?;
    Ok(())
}

/// A process's memory and thread count, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    pub rss_mb: f64,
    /// Of the RSS: the process's own memory (heap, stacks), and the pages of files it maps (its
    /// binary and shared libraries, which the page cache holds whatever the load).
    pub anon_mb: f64,
    pub file_mb: f64,
    /// The peak RSS of the process's whole life so far.
    pub peak_rss_mb: f64,
    pub threads: u32,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Memory {
            rss_mb: field("VmRSS:") / 1024.0,
            anon_mb: field("RssAnon:") / 1024.0,
            file_mb: field("RssFile:") / 1024.0,
            peak_rss_mb: field("VmHWM:") / 1024.0,
            threads: field("Threads:") as u32,
        }
    }
}
