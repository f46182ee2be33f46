//! Settings: read from `SOLOPAY_*` environment variables and `DATABASE_URL`, checked once at start
//! with an error that names the variable at fault.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::money::Amount;

pub mod variables;

/// A secret setting: `Debug` prints `<hidden>`, so that no log of the settings shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// `DATABASE_URL`, used as it is (`Display`, and as a `&str`); `Debug` prints it without its
/// password, so that no log of the settings shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl std::ops::Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&redacted(&self.0), f)
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A database URL without its password, for messages; a connection string that is not a URL
/// is not shown at all.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<not a URL>".to_string(),
    }
}

/// Which way offsets move from the base amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetDirection {
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub bind: SocketAddr,
    /// When set, the only operator token; otherwise tokens stored (hashed) in the database.
    pub admin_token: Option<Secret<String>>,
    /// Where `serve` writes a generated operator token on first start.
    pub admin_token_file: PathBuf,
    /// Seals stored secrets (`SOLOPAY_SECRET_KEY`); when unset, the key in `secret_key_file`,
    /// generated there at first start.
    pub secret_key: Option<Secret<[u8; 32]>>,
    pub secret_key_file: PathBuf,
    pub order_ttl: Duration,
    pub late_payment_grace: Duration,
    /// Reports without a trustworthy id that repeat the same device, channel, amount and text
    /// within this window are one payment.
    pub duplicate_window: Duration,
    pub max_offset_steps: u32,
    pub offset_direction: OffsetDirection,
    pub device_offline_after: Duration,
    pub max_amount: Amount,
    pub allow_private_webhooks: bool,
    /// Whether the operator console is served at `/console`.
    pub console: bool,
    pub db_pool_size: u32,
    pub db_pool_timeout: Duration,
    /// How long a start waits for the database to accept connections.
    pub db_wait: Duration,
    /// How often the background sweep expires overdue orders and recovers stranded notifications.
    pub sweep_interval: Duration,
    /// Server-side timeout of one SQL statement (and lock waits), so no request hangs on the database.
    pub statement_timeout: Duration,
    pub workers: usize,
    pub log_format: LogFormat,
    /// A webhook attempt fails when no answer arrives within this.
    pub webhook_timeout: Duration,
    /// Waits before the retries after a failed attempt (then the delivery is `failed`).
    pub webhook_retry_schedule: Vec<Duration>,
    /// The waits before each retry of an owner alert on a channel, then it is failed.
    pub alert_retry_schedule: Vec<Duration>,
    /// Webhook attempts in flight at once, per instance.
    pub webhook_concurrency: usize,
    /// Webhook attempts in flight at once to one destination (scheme, host and port), across
    /// all instances: one that hangs takes no more slots than this.
    pub webhook_per_destination: usize,
    /// How often the delivery worker looks for due retries when nothing woke it.
    pub webhook_poll_interval: Duration,
    /// The compatibility protocols served; the others answer 404.
    pub compat: Vec<Protocol>,
    /// How far an old client's timestamp (forwarders, the V免签 app) may be from the server clock.
    pub compat_window: Duration,
    /// The merchant V免签's merchant endpoints act for (its md5 key is V免签's `key`).
    pub vmq_merchant: Option<String>,
    /// Where the service is reached from outside (for links to the payment page); by default the
    /// scheme and host of each request.
    pub public_url: Option<String>,
    /// Requests a second per IP address to the public and unauthenticated endpoints (0: none).
    pub rate_limit: u32,
    pub rate_limit_burst: u32,
    /// Take the client's address from `X-Forwarded-For` (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// History older than this is deleted by the sweep (`None`: everything is kept).
    pub retention: Option<Duration>,
}

impl Settings {
    pub fn serves(&self, protocol: Protocol) -> bool {
        self.compat.contains(&protocol)
    }
}

/// The older protocols existing clients speak, served beside the native API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// V免签's listener app and merchant API.
    Vmq,
    /// 易支付's merchant API (V1, MD5 signs).
    Epay,
    /// 易支付 V2's merchant API (RSA signs).
    Epay2,
    /// epusdt's (and BEpusdt's) merchant API.
    Epusdt,
    /// dreamncn VPay's merchant API (card-system's "VPay" gateway).
    Vpay,
    /// Generic notification forwarders (SmsForwarder and the like).
    Forwarder,
}

impl Protocol {
    /// Every protocol, as `SOLOPAY_COMPAT` serves them by default.
    pub const ALL: &'static [Protocol] = &[
        Protocol::Vmq,
        Protocol::Epay,
        Protocol::Epay2,
        Protocol::Epusdt,
        Protocol::Vpay,
        Protocol::Forwarder,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that could not be used, naming the environment variable.
#[derive(Debug, thiserror::Error)]
#[error("setting {variable}={value:?} is invalid: {reason}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

/// The database a fresh installation uses: the local Postgres, database `solopay`.
/// Loopback needs no TLS; a remote server should be given with `sslmode=require` or stricter.
pub const DEFAULT_DATABASE_URL: &str = "postgres://localhost:5432/solopay?sslmode=disable";

impl Settings {
    /// Reads every setting from the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every setting through `lookup` (the environment, or a map in tests).
    #[allow(clippy::too_many_lines)] // one field per setting, in the order of the table
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let secs = |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
            parse_in_range(name, get(name), default, range).map(Duration::from_secs)
        };

        let max_amount = match get("SOLOPAY_MAX_AMOUNT") {
            None => {
                Amount::parse("50000.00", Amount::storage_limit()).map_err(|e| SettingsError {
                    variable: "SOLOPAY_MAX_AMOUNT",
                    value: "50000.00".into(),
                    reason: e.to_string(),
                })?
            }
            Some(value) => {
                Amount::parse(&value, Amount::storage_limit()).map_err(|e| SettingsError {
                    variable: "SOLOPAY_MAX_AMOUNT",
                    value: value.clone(),
                    reason: e.to_string(),
                })?
            }
        };

        let admin_token = get("SOLOPAY_ADMIN_TOKEN").map(Secret::new);
        if let Some(token) = &admin_token
            && token.expose().len() < 16
        {
            return Err(SettingsError {
                variable: "SOLOPAY_ADMIN_TOKEN",
                value: "<hidden>".into(),
                reason: "must be at least 16 characters".into(),
            });
        }

        let max_offset_steps = narrow(
            "SOLOPAY_MAX_OFFSET_STEPS",
            parse_in_range(
                "SOLOPAY_MAX_OFFSET_STEPS",
                get("SOLOPAY_MAX_OFFSET_STEPS"),
                99,
                0..=999,
            )?,
        )?;
        // The largest payable amount (maximum plus the largest offset) must fit the storage.
        let largest_payable = max_amount.as_decimal()
            + rust_decimal::Decimal::from(max_offset_steps) * Amount::CENT.as_decimal();
        if largest_payable > Amount::storage_limit().as_decimal() {
            return Err(SettingsError {
                variable: "SOLOPAY_MAX_AMOUNT",
                value: max_amount.to_string(),
                reason: format!(
                    "with {max_offset_steps} offset steps the payable amount would exceed {}",
                    Amount::storage_limit()
                ),
            });
        }

        Ok(Settings {
            database_url: get("DATABASE_URL")
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
                .into(),
            bind: parse("SOLOPAY_BIND", get("SOLOPAY_BIND"), "127.0.0.1:8080")?,
            admin_token,
            admin_token_file: get("SOLOPAY_ADMIN_TOKEN_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("solopay-admin-token")),
            secret_key: match get("SOLOPAY_SECRET_KEY") {
                None => None,
                Some(text) => Some(parse_key(&text).map(Secret::new).ok_or_else(|| {
                    SettingsError {
                        variable: "SOLOPAY_SECRET_KEY",
                        value: "<hidden>".into(),
                        reason:
                            "must be 32 bytes as base64 (44 characters) or hex (64 characters); \
                             e.g. `openssl rand -base64 32`"
                                .into(),
                    }
                })?),
            },
            secret_key_file: get("SOLOPAY_SECRET_KEY_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("solopay-secret-key")),
            order_ttl: secs("SOLOPAY_ORDER_TTL_SECS", 300, 60..=3600)?,
            late_payment_grace: secs("SOLOPAY_LATE_PAYMENT_GRACE_SECS", 600, 0..=86_400)?,
            duplicate_window: secs("SOLOPAY_DUPLICATE_WINDOW_SECS", 120, 0..=3600)?,
            max_offset_steps,
            offset_direction: match get("SOLOPAY_OFFSET_DIRECTION").as_deref() {
                None | Some("up") => OffsetDirection::Up,
                Some("down") => OffsetDirection::Down,
                Some(other) => {
                    return Err(SettingsError {
                        variable: "SOLOPAY_OFFSET_DIRECTION",
                        value: other.into(),
                        reason: "must be `up` or `down`".into(),
                    });
                }
            },
            device_offline_after: secs("SOLOPAY_DEVICE_OFFLINE_AFTER_SECS", 90, 5..=86_400)?,
            max_amount,
            allow_private_webhooks: parse_bool(
                "SOLOPAY_ALLOW_PRIVATE_WEBHOOKS",
                get("SOLOPAY_ALLOW_PRIVATE_WEBHOOKS"),
            )?,
            console: parse_bool(
                "SOLOPAY_CONSOLE",
                get("SOLOPAY_CONSOLE").or_else(|| Some("true".into())),
            )?,
            db_pool_size: narrow(
                "SOLOPAY_DB_POOL_SIZE",
                parse_in_range(
                    "SOLOPAY_DB_POOL_SIZE",
                    get("SOLOPAY_DB_POOL_SIZE"),
                    16,
                    1..=500,
                )?,
            )?,
            db_pool_timeout: secs("SOLOPAY_DB_POOL_TIMEOUT_SECS", 5, 1..=120)?,
            db_wait: secs("SOLOPAY_DB_WAIT_SECS", 60, 0..=600)?,
            sweep_interval: Duration::from_millis(parse_in_range(
                "SOLOPAY_SWEEP_INTERVAL_MS",
                get("SOLOPAY_SWEEP_INTERVAL_MS"),
                1000,
                50..=60_000,
            )?),
            statement_timeout: secs("SOLOPAY_STATEMENT_TIMEOUT_SECS", 10, 1..=600)?,
            workers: narrow(
                "SOLOPAY_WORKERS",
                parse_in_range(
                    "SOLOPAY_WORKERS",
                    get("SOLOPAY_WORKERS"),
                    std::thread::available_parallelism()
                        .map_or(2, |n| u64::try_from(n.get()).unwrap_or(2)),
                    1..=256,
                )?,
            )?,
            webhook_timeout: secs("SOLOPAY_WEBHOOK_TIMEOUT_SECS", 10, 1..=120)?,
            webhook_retry_schedule: parse_schedule(
                "SOLOPAY_WEBHOOK_RETRY_SCHEDULE",
                get("SOLOPAY_WEBHOOK_RETRY_SCHEDULE"),
            )?,
            alert_retry_schedule: parse_schedule(
                "SOLOPAY_ALERT_RETRY_SCHEDULE",
                get("SOLOPAY_ALERT_RETRY_SCHEDULE").or_else(|| Some("10,60,300,1800,7200".into())),
            )?,
            webhook_concurrency: narrow(
                "SOLOPAY_WEBHOOK_CONCURRENCY",
                parse_in_range(
                    "SOLOPAY_WEBHOOK_CONCURRENCY",
                    get("SOLOPAY_WEBHOOK_CONCURRENCY"),
                    16,
                    1..=1024,
                )?,
            )?,
            webhook_per_destination: narrow(
                "SOLOPAY_WEBHOOK_PER_DESTINATION",
                parse_in_range(
                    "SOLOPAY_WEBHOOK_PER_DESTINATION",
                    get("SOLOPAY_WEBHOOK_PER_DESTINATION"),
                    4,
                    1..=1024,
                )?,
            )?,
            webhook_poll_interval: Duration::from_millis(parse_in_range(
                "SOLOPAY_WEBHOOK_POLL_INTERVAL_MS",
                get("SOLOPAY_WEBHOOK_POLL_INTERVAL_MS"),
                1000,
                20..=60_000,
            )?),
            // Unset means every protocol; set but empty means none.
            compat: parse_compat(lookup("SOLOPAY_COMPAT"))?,
            compat_window: secs("SOLOPAY_COMPAT_WINDOW_SECS", 120, 10..=3600)?,
            vmq_merchant: get("SOLOPAY_VMQ_MERCHANT"),
            public_url: match get("SOLOPAY_PUBLIC_URL") {
                None => None,
                Some(url) => match url::Url::parse(&url) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                        Some(url.trim_end_matches('/').to_string())
                    }
                    _ => {
                        return Err(SettingsError {
                            variable: "SOLOPAY_PUBLIC_URL",
                            value: url,
                            reason: "must be an absolute http(s) URL".into(),
                        });
                    }
                },
            },
            rate_limit: narrow(
                "SOLOPAY_RATE_LIMIT",
                parse_in_range(
                    "SOLOPAY_RATE_LIMIT",
                    get("SOLOPAY_RATE_LIMIT"),
                    50,
                    0..=100_000,
                )?,
            )?,
            rate_limit_burst: narrow(
                "SOLOPAY_RATE_LIMIT_BURST",
                parse_in_range(
                    "SOLOPAY_RATE_LIMIT_BURST",
                    get("SOLOPAY_RATE_LIMIT_BURST"),
                    100,
                    1..=100_000,
                )?,
            )?,
            trust_forwarded_for: parse_bool(
                "SOLOPAY_TRUST_FORWARDED_FOR",
                get("SOLOPAY_TRUST_FORWARDED_FOR"),
            )?,
            retention: match get("SOLOPAY_RETENTION_DAYS") {
                None => None,
                value => Some(Duration::from_secs(
                    parse_in_range("SOLOPAY_RETENTION_DAYS", value, 0, RETENTION_DAYS)?
                        * SECS_PER_DAY,
                )),
            },
            log_format: match get("SOLOPAY_LOG_FORMAT").as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(SettingsError {
                        variable: "SOLOPAY_LOG_FORMAT",
                        value: other.into(),
                        reason: "must be `text` or `json`".into(),
                    });
                }
            },
        })
    }
}

/// The retention an operator may choose, in days: at least a day (longer than every window a
/// rule looks back over), at most ten years.
const RETENTION_DAYS: std::ops::RangeInclusive<u64> = 1..=3650;
const SECS_PER_DAY: u64 = 86_400;

fn parse<T: FromStr>(
    variable: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<T, SettingsError>
where
    T::Err: std::fmt::Display,
{
    let value = value.unwrap_or_else(|| default.to_string());
    value.parse().map_err(|e: T::Err| SettingsError {
        variable,
        value: value.clone(),
        reason: e.to_string(),
    })
}

/// A setting already checked to be in its range, in the type it is used as.
fn narrow<T: TryFrom<u64>>(variable: &'static str, value: u64) -> Result<T, SettingsError> {
    T::try_from(value).map_err(|_| SettingsError {
        variable,
        value: value.to_string(),
        reason: "does not fit this machine".into(),
    })
}

fn parse_in_range(
    variable: &'static str,
    value: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, SettingsError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(SettingsError {
            variable,
            value,
            reason: format!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

/// The default retry schedule: about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_WEBHOOK_RETRY_SCHEDULE: &str = "5,300,1800,7200,18000,36000,36000";

/// A comma-separated list of waits in seconds (decimals allowed, e.g. `0.2,0.5`).
fn parse_schedule(
    variable: &'static str,
    value: Option<String>,
) -> Result<Vec<Duration>, SettingsError> {
    let text = value.unwrap_or_else(|| DEFAULT_WEBHOOK_RETRY_SCHEDULE.to_string());
    let refused = || SettingsError {
        variable,
        value: text.clone(),
        reason: "must be a comma-separated list of 1 to 20 waits in seconds, each from 0.01 \
                 to 604800"
            .into(),
    };
    let waits = text
        .split(',')
        .map(|part| {
            let secs: f64 = part.trim().parse().map_err(|_| refused())?;
            if !(0.01..=604_800.0).contains(&secs) {
                return Err(refused());
            }
            Duration::try_from_secs_f64(secs).map_err(|_| refused())
        })
        .collect::<Result<Vec<_>, _>>()?;
    if waits.is_empty() || waits.len() > 20 {
        return Err(refused());
    }
    Ok(waits)
}

/// A 32-byte key written as base64 or hex.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let text = text.trim();
    let bytes = if text.len() == 64 {
        hex::decode(text).ok()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?
    };
    bytes.try_into().ok()
}

fn parse_compat(value: Option<String>) -> Result<Vec<Protocol>, SettingsError> {
    let Some(value) = value else {
        return Ok(Protocol::ALL.to_vec());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| match name {
            "vmq" => Ok(Protocol::Vmq),
            "epay" => Ok(Protocol::Epay),
            "epay2" => Ok(Protocol::Epay2),
            "epusdt" => Ok(Protocol::Epusdt),
            "vpay" => Ok(Protocol::Vpay),
            "forwarder" => Ok(Protocol::Forwarder),
            other => Err(SettingsError {
                variable: "SOLOPAY_COMPAT",
                value: value.clone(),
                reason: format!(
                    "{other:?} is not one of vmq, epay, epay2, epusdt, vpay, forwarder"
                ),
            }),
        })
        .collect()
}

fn parse_bool(variable: &'static str, value: Option<String>) -> Result<bool, SettingsError> {
    match value.as_deref().map(str::trim) {
        None => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(SettingsError {
            variable,
            value: other.into(),
            reason: "must be `true` or `false`".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn every_variable_read_is_listed_once_and_the_readme_agrees() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        Settings::from_lookup(|name| {
            asked.lock().unwrap().insert(name.to_string());
            None
        })
        .unwrap();
        let mut asked = asked.into_inner().unwrap();
        // Read by the log set-up, before the settings, and by the database connections.
        asked.insert("SOLOPAY_LOG".to_string());
        asked.insert("PGPASSWORD".to_string());
        let listed: std::collections::BTreeSet<String> = variables::VARIABLES
            .iter()
            .map(|v| v.name.to_string())
            .collect();
        assert_eq!(
            listed.len(),
            variables::VARIABLES.len(),
            "a variable listed twice"
        );
        assert_eq!(asked, listed);

        let readme = include_str!("../../README.md");
        let table = readme
            .split("| variable | default | meaning |")
            .nth(1)
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap();
        let rows: Vec<(String, String)> = table
            .lines()
            .skip(2)
            .map(|line| {
                let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
                let cell = |i: usize| cells[i].trim().replace('`', "");
                (cell(0), cell(1))
            })
            .collect();
        let documented: Vec<(String, String)> = variables::VARIABLES
            .iter()
            .map(|v| (v.name.to_string(), v.default.to_string()))
            .collect();
        assert_eq!(
            rows, documented,
            "the README's settings table and VARIABLES differ"
        );
        for variable in variables::VARIABLES {
            assert!(variables::help().contains(variable.name));
        }
    }

    #[test]
    fn secrets_in_the_settings_never_print() {
        let s = settings(&[
            ("SOLOPAY_ADMIN_TOKEN", "operator-token-0123456789"),
            ("SOLOPAY_SECRET_KEY", &"2a".repeat(32)),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("operator-token-0123456789"), "{printed}");
        assert!(!printed.contains("42, 42"), "{printed}");
        assert!(printed.contains("<hidden>"));
    }

    #[test]
    fn the_database_password_never_prints_but_the_url_is_used_as_given() {
        let url = "postgres://solopay:s3cret-pw@db:5432/solopay?sslmode=require";
        let s = settings(&[("DATABASE_URL", url)]).unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("s3cret-pw"), "{printed}");
        assert!(
            printed.contains("postgres://solopay:***@db:5432/solopay?sslmode=require"),
            "{printed}"
        );
        assert_eq!(s.database_url.to_string(), url);
        assert_eq!(s.database_url.as_str(), url);
        let keywords = settings(&[("DATABASE_URL", "host=db password=s3cret-pw")]).unwrap();
        assert!(!format!("{keywords:?}").contains("s3cret-pw"));
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.order_ttl, Duration::from_secs(300));
        assert_eq!(s.late_payment_grace, Duration::from_secs(600));
        assert_eq!(s.max_offset_steps, 99);
        assert_eq!(s.offset_direction, OffsetDirection::Up);
        assert_eq!(s.device_offline_after, Duration::from_secs(90));
        assert_eq!(s.max_amount.to_string(), "50000.00");
        assert!(!s.allow_private_webhooks);
        assert!(s.admin_token.is_none());
        assert_eq!(s.webhook_timeout, Duration::from_secs(10));
        assert_eq!(s.compat, Protocol::ALL);
        assert_eq!(
            s.retention, None,
            "everything is kept unless the operator says otherwise"
        );
        let schedule: Vec<u64> = s
            .webhook_retry_schedule
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(schedule, [5, 300, 1800, 7200, 18000, 36000, 36000]);
    }

    #[test]
    fn compatibility_protocols_can_be_chosen_or_all_switched_off() {
        let s = settings(&[("SOLOPAY_COMPAT", "epay")]).unwrap();
        assert_eq!(s.compat, [Protocol::Epay]);
        assert!(!s.serves(Protocol::Forwarder));
        let s = settings(&[("SOLOPAY_COMPAT", "")]).unwrap();
        assert!(s.compat.is_empty());
        assert!(settings(&[("SOLOPAY_COMPAT", "vmq,paypal")]).is_err());
    }

    #[test]
    fn a_retry_schedule_can_be_shortened_for_tests() {
        let s = settings(&[("SOLOPAY_WEBHOOK_RETRY_SCHEDULE", "0.2, 0.5,1")]).unwrap();
        let millis: Vec<u128> = s
            .webhook_retry_schedule
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(millis, [200, 500, 1000]);
    }

    #[test]
    fn retention_is_read_in_whole_days() {
        let s = settings(&[("SOLOPAY_RETENTION_DAYS", "30")]).unwrap();
        assert_eq!(s.retention, Some(Duration::from_secs(30 * 86_400)));
        let s = settings(&[("SOLOPAY_RETENTION_DAYS", " ")]).unwrap();
        assert_eq!(s.retention, None);
        let error = settings(&[("SOLOPAY_RETENTION_DAYS", "0")]).unwrap_err();
        assert!(error.to_string().contains("from 1 to 3650"), "{error}");
    }

    #[test]
    fn a_bad_setting_names_its_variable() {
        for (var, value) in [
            ("SOLOPAY_ORDER_TTL_SECS", "10"),
            ("SOLOPAY_MAX_OFFSET_STEPS", "many"),
            ("SOLOPAY_OFFSET_DIRECTION", "sideways"),
            ("SOLOPAY_MAX_AMOUNT", "1.234"),
            ("SOLOPAY_MAX_AMOUNT", "9999999999.99"),
            ("SOLOPAY_BIND", "nowhere"),
            ("SOLOPAY_ALLOW_PRIVATE_WEBHOOKS", "perhaps"),
            ("SOLOPAY_ADMIN_TOKEN", "short"),
            ("SOLOPAY_WEBHOOK_RETRY_SCHEDULE", "5,,10"),
            ("SOLOPAY_WEBHOOK_RETRY_SCHEDULE", "-1"),
            ("SOLOPAY_WEBHOOK_TIMEOUT_SECS", "0"),
            ("SOLOPAY_SECRET_KEY", "too short"),
            ("SOLOPAY_RETENTION_DAYS", "0"),
            ("SOLOPAY_RETENTION_DAYS", "-7"),
            ("SOLOPAY_RETENTION_DAYS", "30d"),
            ("SOLOPAY_RETENTION_DAYS", "1.5"),
            ("SOLOPAY_RETENTION_DAYS", "3651"),
        ] {
            let error = settings(&[(var, value)]).unwrap_err();
            assert_eq!(error.variable, var);
            assert!(error.to_string().contains(var));
        }
    }
}
