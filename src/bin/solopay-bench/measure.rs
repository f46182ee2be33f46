//! Measuring: the closed loop that drives a run (printing how far it is), latency percentiles,
//! and where the CPU and the database sessions went during a run (so that a noisy machine shows
//! in the figures).

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long a closed-loop run goes on: `requests` at most, and no longer than `within`.
#[derive(Debug, Clone, Copy)]
pub struct RunLimit {
    pub requests: usize,
    pub within: Option<Duration>,
}

impl RunLimit {
    pub fn requests(requests: usize) -> RunLimit {
        RunLimit {
            requests,
            within: None,
        }
    }
}

/// What a closed-loop run came to: each answer with its latency, in the order they came.
pub struct ClosedLoop<T> {
    pub answers: Vec<(T, Duration)>,
    pub elapsed: Duration,
}

/// Sends `request(i)` for i = 0, 1, … from `concurrency` clients, each sending its next request
/// when the previous one is answered, until `limit`; prints how far it is every 2 s, under
/// `label`.
pub async fn closed_loop<T, F, Fut>(
    label: &str,
    limit: RunLimit,
    concurrency: usize,
    request: F,
) -> Result<ClosedLoop<T>, tokio::task::JoinError>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start(label, limit);
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = limit.within.map(|within| started + within);
    let clients: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, progress, request) = (next.clone(), progress.clone(), request.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= limit.requests || deadline.is_some_and(|d| Instant::now() >= d) {
                        return answers;
                    }
                    let sent = Instant::now();
                    let answer = request(i).await;
                    answers.push((answer, sent.elapsed()));
                    progress.done_one();
                }
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(limit.requests.min(100_000));
    for client in clients {
        answers.extend(client.await?);
    }
    let elapsed = started.elapsed();
    progress.stop();
    Ok(ClosedLoop { answers, elapsed })
}

/// Prints how far a run is every 2 s ("  <label>: 812/2000 requests, 2 s"), so that a long
/// run shows it is alive; the run counts its answers with `done_one`.
#[derive(Clone)]
pub struct Progress {
    done: Arc<AtomicUsize>,
    printer: Arc<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(label: &str, limit: RunLimit) -> Progress {
        let done = Arc::new(AtomicUsize::new(0));
        let (label, counted) = (label.to_string(), done.clone());
        let printer = tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = tokio::time::interval(Duration::from_secs(2));
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let done = counted.load(Ordering::Relaxed);
                let seconds = started.elapsed().as_secs();
                let text = match limit.within {
                    Some(within) => format!("{done} requests, {seconds} of {} s", within.as_secs()),
                    None => format!("{done}/{} requests, {seconds} s", limit.requests),
                };
                println!("  {label}: {text}");
            }
        });
        Progress {
            done,
            printer: Arc::new(printer),
        }
    }

    pub fn done_one(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stop(&self) {
        self.printer.abort();
    }
}

/// Latency percentiles in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let rank = |p: f64| {
            let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            ms(samples[index.clamp(1, samples.len()) - 1])
        };
        Latency {
            samples: samples.len(),
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
            max_ms: ms(samples[samples.len() - 1]),
            mean_ms: samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64,
        }
    }
}

/// Where the time went during a run: CPU by process group (in cores: 2.0 is both cores of this
/// machine busy), and what the service's database sessions were doing (sampled from
/// `pg_stat_activity` every 50 ms).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ResourceUse {
    pub service_cpu_cores: f64,
    /// Every `postgres` process: the service's sessions, and the writer, WAL writer, etc.
    pub postgres_cpu_cores: f64,
    /// This load generator.
    pub load_generator_cpu_cores: f64,
    /// Everything else on the machine (another build, say): noise in the figures.
    pub other_cpu_cores: f64,
    /// Busy fraction of all the machine's cores.
    pub machine_cpu_busy: f64,
    /// Mean number of the service's database sessions running a statement.
    pub db_sessions_active: f64,
    /// Of those, mean number waiting for a lock (the payee row lock, mostly).
    pub db_sessions_waiting_for_lock: f64,
    /// Mean number in a transaction between statements (waiting for the service).
    pub db_sessions_idle_in_transaction: f64,
    /// Mean number idle (free in the pool; includes the LISTEN connection).
    pub db_sessions_idle: f64,
}

/// What autovacuum would have done between two runs: fresh statistics, and the dead row versions
/// of the last run (every allocation updates its payee row) cleared. Besides, `ANALYZE`
/// invalidates the plans the service's pooled sessions cached while the tables were nearly
/// empty; without it those generic plans stay for the sessions' lives.
pub async fn vacuum_analyze(db: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    db.batch_execute("VACUUM ANALYZE").await
}

/// Measures a run's `ResourceUse` from its start to `finish`.
pub struct Probe {
    service_pid: u32,
    started: Instant,
    cpu: CpuTicks,
    stop: Arc<AtomicBool>,
    sampler: tokio::task::JoinHandle<[f64; 4]>,
}

impl Probe {
    pub fn start(service_pid: u32, db: &Arc<tokio_postgres::Client>, database: &str) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (db, database, stop) = (db.clone(), database.to_string(), stop.clone());
            tokio::spawn(async move {
                let mut sums = [0.0; 4];
                let mut samples = 0.0;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(row) = db
                        .query_one(
                            "SELECT count(*) FILTER (WHERE state = 'active')::float8, \
                                    count(*) FILTER (WHERE state = 'active' \
                                                      AND wait_event_type = 'Lock')::float8, \
                                    count(*) FILTER (WHERE state LIKE 'idle in transaction%')::float8, \
                                    count(*) FILTER (WHERE state = 'idle')::float8 \
                               FROM pg_stat_activity \
                              WHERE datname = $1 AND backend_type = 'client backend' \
                                AND pid <> pg_backend_pid()",
                            &[&database],
                        )
                        .await
                    {
                        for (i, sum) in sums.iter_mut().enumerate() {
                            *sum += row.get::<_, f64>(i);
                        }
                        samples += 1.0;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                sums.map(|s| if samples > 0.0 { s / samples } else { 0.0 })
            })
        };
        Probe {
            service_pid,
            started: Instant::now(),
            cpu: CpuTicks::now(service_pid),
            stop,
            sampler,
        }
    }

    pub async fn finish(self) -> ResourceUse {
        let seconds = self.started.elapsed().as_secs_f64();
        let cpu = CpuTicks::now(self.service_pid).since(&self.cpu);
        self.stop.store(true, Ordering::Relaxed);
        let [active, waiting, in_transaction, idle] = self.sampler.await.unwrap_or_default();
        let cores = |ticks: u64| ticks as f64 / clock_ticks_per_second() / seconds;
        let known = cpu.service + cpu.postgres + cpu.load_generator;
        ResourceUse {
            service_cpu_cores: cores(cpu.service),
            postgres_cpu_cores: cores(cpu.postgres),
            load_generator_cpu_cores: cores(cpu.load_generator),
            other_cpu_cores: cores(cpu.machine_busy.saturating_sub(known)),
            machine_cpu_busy: if cpu.machine_total == 0 {
                0.0
            } else {
                cpu.machine_busy as f64 / cpu.machine_total as f64
            },
            db_sessions_active: active,
            db_sessions_waiting_for_lock: waiting,
            db_sessions_idle_in_transaction: in_transaction,
            db_sessions_idle: idle,
        }
    }
}

/// CPU clock ticks (user + system) so far, by process group, from `/proc`.
#[derive(Debug, Default)]
struct CpuTicks {
    pub service: u64,
    /// By pid, so that a session that ends during a run does not count negative.
    pub postgres_by_pid: HashMap<u32, u64>,
    pub postgres: u64,
    pub load_generator: u64,
    pub machine_busy: u64,
    pub machine_total: u64,
}

impl CpuTicks {
    pub fn now(service_pid: u32) -> CpuTicks {
        let mut postgres_by_pid = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(("postgres", ticks)) = process_cpu_ticks(pid)
                .as_ref()
                .map(|(c, t)| (c.as_str(), *t))
            {
                postgres_by_pid.insert(pid, ticks);
            }
        }
        let (machine_busy, machine_total) = machine_cpu_ticks();
        CpuTicks {
            service: process_cpu_ticks(service_pid).map_or(0, |(_, t)| t),
            postgres: postgres_by_pid.values().sum(),
            postgres_by_pid,
            load_generator: process_cpu_ticks(std::process::id()).map_or(0, |(_, t)| t),
            machine_busy,
            machine_total,
        }
    }

    /// The ticks spent between `earlier` and this.
    fn since(&self, earlier: &CpuTicks) -> CpuTicks {
        let postgres = self
            .postgres_by_pid
            .iter()
            .map(|(pid, ticks)| {
                ticks.saturating_sub(earlier.postgres_by_pid.get(pid).copied().unwrap_or(0))
            })
            .sum();
        CpuTicks {
            service: self.service.saturating_sub(earlier.service),
            postgres_by_pid: HashMap::new(),
            postgres,
            load_generator: self.load_generator.saturating_sub(earlier.load_generator),
            machine_busy: self.machine_busy.saturating_sub(earlier.machine_busy),
            machine_total: self.machine_total.saturating_sub(earlier.machine_total),
        }
    }
}

/// A process's command name and utime + stime in clock ticks, from `/proc/<pid>/stat`.
fn process_cpu_ticks(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; the fields after it do not.
    let (head, rest) = stat.rsplit_once(')')?;
    let command = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((command, field(11) + field(12)))
}

/// (busy, total) ticks of all cores, from `/proc/stat`.
fn machine_cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
