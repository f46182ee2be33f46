//! Assembles and runs one instance of the service: database (created and migrated at start), the
//! operator token, the HTTP server, the order-change listener and the background sweep; and
//! stops them gracefully.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use utoipa_actix_web::AppExt;

use crate::config::Settings;
use crate::core::error::RuleError;
use crate::core::operators::{TokenSource, ensure_token};
use crate::core::orders::OrderRules;
use crate::db::startup::{self, StartupError};
use crate::db::{self, Db};
use crate::error::ApiError;
use crate::http::{self, AppState, middleware};
use crate::metrics::Metrics;
use crate::routes;
use crate::watch::OrderWatch;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Database(#[from] StartupError),
    #[error("operator token: {0}")]
    OperatorToken(RuleError),
    #[error("cannot listen on {address} (SOLOPAY_BIND): {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("start-up task failed: {0}")]
    Task(String),
    #[error("webhook delivery: {0}")]
    Webhooks(String),
    #[error("secret key: {0}")]
    SecretKey(String),
}

/// A built instance, listening but not yet serving.
pub struct Application {
    address: SocketAddr,
    server: Server,
    shutdown: Arc<watch::Sender<bool>>,
    background: Vec<JoinHandle<()>>,
    stop: StopSignals,
    /// The pool's connection attempts, closed and waited for before `run_until_stopped` returns.
    connecting: db::pool::Connecting,
}

/// The sealing key opens what the database stores; secrets still stored in plain are sealed.
async fn check_secrets(db: &Db, settings: &Settings) -> Result<(), AppError> {
    let key = match &settings.secret_key {
        Some(key) => *key.expose(),
        None => load_or_create_key(&settings.secret_key_file)?,
    };
    db::sealed::install_key(key).map_err(AppError::SecretKey)?;
    db.run(|conn| -> Result<_, ApiError> { Ok(db::sealed::check_key_opens_stored(conn)) })
        .await
        .map_err(|e| AppError::SecretKey(e.to_string()))?
        .map_err(AppError::SecretKey)?;
    let sealed = db
        .run(|conn| -> Result<_, ApiError> { Ok(db::sealed::seal_stored_plaintext(conn)?) })
        .await
        .map_err(|e| AppError::SecretKey(e.to_string()))?;
    if sealed > 0 {
        tracing::info!(rows = sealed, "sealed secrets that were stored in plain");
    }
    Ok(())
}

/// Warns about server settings that degrade solopay.
async fn check_server(db: &Db) {
    if let Ok(Err(language)) = db
        .run(|conn| Ok::<_, db::StorageError>(startup::messages_are_english(conn)?))
        .await
    {
        tracing::warn!(
            lc_messages = %language,
            "the database answers in another language and this role may not change it: \
             deadlocks will not be retried and timeouts will answer 500; as a superuser run \
             ALTER ROLE <solopay's role> SET lc_messages = 'C'"
        );
    }
    if let Ok(false) = db
        .run(|conn| Ok::<_, db::StorageError>(startup::autovacuum_is_on(conn)?))
        .await
    {
        tracing::warn!(
            "autovacuum is off on the database server: the orders table's statistics go \
             stale and its dead rows pile up, and allocation slows down with them; turn it \
             on, or run VACUUM ANALYZE regularly"
        );
    }
}

/// Makes sure there is an operator token, and says where it comes from.
async fn operator_token(db: &Db, settings: &Arc<Settings>) -> Result<(), AppError> {
    let token_settings = settings.clone();
    let source = db
        .run(move |conn| -> Result<_, RuleError> {
            ensure_token(
                conn,
                token_settings
                    .admin_token
                    .as_ref()
                    .map(|t| t.expose().as_str()),
                &token_settings.admin_token_file,
            )
        })
        .await
        .map_err(AppError::OperatorToken)?;
    let token_file = std::path::absolute(&settings.admin_token_file)
        .unwrap_or_else(|_| settings.admin_token_file.clone());
    match source {
        TokenSource::Setting => tracing::info!("operator token: SOLOPAY_ADMIN_TOKEN"),
        TokenSource::Generated => tracing::info!(
            file = %token_file.display(),
            "generated the operator token and wrote it to this file (mode 0600)"
        ),
        TokenSource::Stored => tracing::info!(
            file = %token_file.display(),
            "operator token: the one generated at first start, written then to this file \
             (`solopay admin-token` replaces it)"
        ),
    }
    Ok(())
}

/// Creates the database if missing and applies pending migrations; waits up to `wait` for the
/// database to accept connections (a database server that is still starting).
pub async fn prepare_database(database_url: &str, wait: Duration) -> Result<Vec<String>, AppError> {
    let url = database_url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut conn = startup::connect_waiting(&url, wait)?;
        Ok(startup::run_migrations(&mut conn)?)
    })
    .await
    .map_err(|e| AppError::Task(e.to_string()))?
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, AppError> {
        let settings = Arc::new(settings);
        let applied = prepare_database(&settings.database_url, settings.db_wait).await?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied database migrations");
        }
        let pool_settings = settings.clone();
        let connecting = db::pool::Connecting::default();
        let pool_connecting = connecting.clone();
        let pool = tokio::task::spawn_blocking(move || {
            db::pool::build_pool(
                &pool_settings.database_url,
                pool_settings.db_pool_size,
                pool_settings.db_pool_timeout,
                pool_settings.statement_timeout,
                pool_connecting,
            )
        })
        .await
        .map_err(|e| AppError::Task(e.to_string()))??;
        let db = Db::new(pool);
        check_secrets(&db, &settings).await?;
        check_server(&db).await;
        operator_token(&db, &settings).await?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let order_watch = OrderWatch::new();
        // The listener's connection sends the wake-ups of the work run from here on.
        let (courier, mailbag) = db::wakeups::Courier::new();
        let pool_without_courier = db.clone();
        let db = db.with_courier(courier.clone());
        let metrics = Arc::new(Metrics::new());
        let background = vec![
            order_watch.spawn_listener(
                settings.database_url.to_string(),
                pool_without_courier,
                courier,
                mailbag,
                shutdown_rx.clone(),
            ),
            crate::sweeper::spawn(
                db.clone(),
                OrderRules::from(settings.as_ref()),
                settings.sweep_interval,
                settings.retention,
                shutdown_rx.clone(),
            ),
            crate::webhooks::spawn(
                db.clone(),
                &settings,
                order_watch.deliveries_due(),
                metrics.clone(),
                shutdown_rx.clone(),
            )
            .map_err(AppError::Webhooks)?,
            crate::alerts::spawn(
                db.clone(),
                &settings,
                order_watch.alerts_due(),
                shutdown_rx.clone(),
            )
            .map_err(AppError::Webhooks)?,
        ];

        let listener = TcpListener::bind(settings.bind).map_err(|source| AppError::Bind {
            address: settings.bind,
            source,
        })?;
        let address = listener.local_addr().map_err(|source| AppError::Bind {
            address: settings.bind,
            source,
        })?;
        let state = web::Data::new(AppState {
            db,
            rules: OrderRules::from(settings.as_ref()),
            settings: settings.clone(),
            watch: order_watch,
            metrics,
            limiter: crate::http::limits::RateLimiter::new(
                settings.rate_limit,
                settings.rate_limit_burst,
            ),
            shutdown: shutdown_rx,
        });
        let document = actix_web::web::Bytes::from(
            serde_json::to_vec(&routes::openapi()).map_err(|e| AppError::Task(e.to_string()))?,
        );
        // Listened for before the server accepts a connection: a SIGTERM in between would
        // otherwise end the process at once, with no graceful stop.
        let stop = StopSignals::listen();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(http::query_config())
                .app_data(http::path_config())
                .wrap(from_fn(middleware::join_epay_slashes))
                .wrap(from_fn(middleware::limit_body))
                .wrap(from_fn(middleware::log_request))
                .into_utoipa_app()
                .configure(|cfg| routes::configure_served(cfg, document.clone()))
                .into_app()
                .default_service(web::to(not_found))
        })
        .workers(settings.workers)
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)
        .map_err(|source| AppError::Bind { address, source })?
        .run();

        tracing::info!(%address, "solopay listening");
        Ok(Application {
            address,
            server,
            shutdown: Arc::new(shutdown_tx),
            background,
            stop,
            connecting,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully: waiting long-polls answer at once,
    /// in-flight requests finish (up to 10 s), background tasks stop.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let shutdown = self.shutdown.clone();
        let stop = self.stop;
        tokio::spawn(async move {
            stop.wait().await;
            tracing::info!("shutting down");
            let _ = shutdown.send(true);
            handle.stop(true).await;
        });
        let served = self.server.await;
        let _ = self.shutdown.send(true);
        for task in self.background {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // No pool thread may still be inside libpq when the process exits (`Connecting`).
        if !self.connecting.close(Duration::from_secs(5)).await {
            tracing::warn!("a database connection was still being opened at exit");
        }
        tracing::info!("stopped");
        served
    }
}

/// The sealing key from its file, or a new one written there (mode 0600) at first start.
fn load_or_create_key(file: &std::path::Path) -> Result<[u8; 32], AppError> {
    use base64::Engine;
    let shown = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    match std::fs::read_to_string(file) {
        Ok(text) => crate::config::parse_key(&text).ok_or_else(|| {
            AppError::SecretKey(format!("{} does not hold a 32-byte key", shown.display()))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::fill(&mut key[..]);
            let cannot_write = |e: std::io::Error| {
                AppError::SecretKey(format!(
                    "cannot write {}: {e} (set SOLOPAY_SECRET_KEY or SOLOPAY_SECRET_KEY_FILE)",
                    shown.display()
                ))
            };
            // Written whole to a new file of its own (a random name: instances in containers
            // may share a pid), then linked into place: the key file appears complete or not at
            // all, and of two instances starting at once, one key wins and the other reads it.
            let mut draft = file.as_os_str().to_owned();
            draft.push(format!(".{:016x}.new", rand::random::<u64>()));
            let draft = std::path::PathBuf::from(draft);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let written = options.open(&draft).and_then(|mut out| {
                use std::io::Write;
                writeln!(
                    out,
                    "{}",
                    base64::engine::general_purpose::STANDARD.encode(key)
                )?;
                out.sync_all()
            });
            let linked = written.and_then(|()| std::fs::hard_link(&draft, file));
            let _ = std::fs::remove_file(&draft);
            match linked {
                Ok(()) => {
                    tracing::warn!(
                        file = %shown.display(),
                        "generated the key that seals stored secrets and wrote it to this file: \
                         back it up, and give every instance the same (SOLOPAY_SECRET_KEY)"
                    );
                    Ok(key)
                }
                // Another instance created it at the same moment: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(file),
                Err(e) => Err(cannot_write(e)),
            }
        }
        Err(error) => Err(AppError::SecretKey(format!("{}: {error}", shown.display()))),
    }
}

/// SIGINT and SIGTERM, each listened for from the moment this is made.
struct StopSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Until either arrives (or arrived since [`StopSignals::listen`]).
    async fn wait(self) {
        #[cfg(unix)]
        {
            let (Some(mut terminate), Some(mut interrupt)) = (self.terminate, self.interrupt)
            else {
                let _ = tokio::signal::ctrl_c().await;
                return;
            };
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}
