//! Every setting solopay reads, with its default and meaning: one table, printed by
//! `solopay serve --help` and checked against what [`super::Settings::from_lookup`] reads and
//! what the README's settings table says.

/// One environment variable solopay reads.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    /// As the README writes it.
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "DATABASE_URL",
        default: "postgres://localhost:5432/solopay?sslmode=disable",
        meaning: "where everything is stored; the database is created if missing and migrated at start. For a server on another machine add sslmode=require (or verify-full); the change listener (LISTEN) connects without TLS and, where TLS is required, long-polls fall back to re-reading every second",
    },
    Variable {
        name: "PGPASSWORD",
        default: "none",
        meaning: "the database password, when DATABASE_URL has none (libpq's own variable, read by every connection): keeps the password out of the URL",
    },
    Variable {
        name: "SOLOPAY_BIND",
        default: "127.0.0.1:8080",
        meaning: "listen address",
    },
    Variable {
        name: "SOLOPAY_ADMIN_TOKEN",
        default: "generated at first start",
        meaning: "operator token (16+ characters); when unset, the first start generates one, stores only its SHA-256 and writes it to SOLOPAY_ADMIN_TOKEN_FILE",
    },
    Variable {
        name: "SOLOPAY_ADMIN_TOKEN_FILE",
        default: "solopay-admin-token",
        meaning: "where the generated token is written (mode 0600)",
    },
    Variable {
        name: "SOLOPAY_SECRET_KEY",
        default: "none",
        meaning: "the key that seals stored secrets: 32 bytes as base64 (44 characters) or hex (64 characters), e.g. openssl rand -base64 32; when unset, the key in SOLOPAY_SECRET_KEY_FILE",
    },
    Variable {
        name: "SOLOPAY_SECRET_KEY_FILE",
        default: "solopay-secret-key",
        meaning: "where the key is read from when SOLOPAY_SECRET_KEY is unset; if the file is missing, the first start generates a key and writes it there (mode 0600)",
    },
    Variable {
        name: "SOLOPAY_ORDER_TTL_SECS",
        default: "300",
        meaning: "default expires_in of an order (60–3600)",
    },
    Variable {
        name: "SOLOPAY_LATE_PAYMENT_GRACE_SECS",
        default: "600",
        meaning: "how long an expired, closed or paid order keeps its amount (a paid one at least SOLOPAY_DUPLICATE_WINDOW_SECS), and an expired one can still be paid",
    },
    Variable {
        name: "SOLOPAY_DUPLICATE_WINDOW_SECS",
        default: "120",
        meaning: "reports without a trustworthy id (forwarders, V免签) that repeat the same device, channel, amount and text within this are one payment, and a payment no order owed holds its amount from new orders this long (0–3600; 0 switches both off)",
    },
    Variable {
        name: "SOLOPAY_MAX_OFFSET_STEPS",
        default: "99",
        meaning: "largest k in the amount offset (0–999)",
    },
    Variable {
        name: "SOLOPAY_OFFSET_DIRECTION",
        default: "up",
        meaning: "up or down",
    },
    Variable {
        name: "SOLOPAY_DEVICE_OFFLINE_AFTER_SECS",
        default: "90",
        meaning: "a device is offline after this long without a heartbeat or notification",
    },
    Variable {
        name: "SOLOPAY_MAX_AMOUNT",
        default: "50000.00",
        meaning: "largest order amount",
    },
    Variable {
        name: "SOLOPAY_CONSOLE",
        default: "true",
        meaning: "serve the operator console at `/console` (`false`: it answers 404)",
    },
    Variable {
        name: "SOLOPAY_ALLOW_PRIVATE_WEBHOOKS",
        default: "false",
        meaning: "allow webhooks to loopback, private and other reserved addresses (local set-ups)",
    },
    Variable {
        name: "SOLOPAY_WEBHOOK_TIMEOUT_SECS",
        default: "10",
        meaning: "an attempt without an answer within this fails",
    },
    Variable {
        name: "SOLOPAY_WEBHOOK_RETRY_SCHEDULE",
        default: "5,300,1800,7200,18000,36000,36000",
        meaning: "waits before each retry, in seconds (decimals allowed)",
    },
    Variable {
        name: "SOLOPAY_ALERT_RETRY_SCHEDULE",
        default: "10,60,300,1800,7200",
        meaning: "waits before each retry of an owner alert on a channel, in seconds; then it is failed",
    },
    Variable {
        name: "SOLOPAY_WEBHOOK_CONCURRENCY",
        default: "16",
        meaning: "webhook attempts in flight per instance",
    },
    Variable {
        name: "SOLOPAY_WEBHOOK_PER_DESTINATION",
        default: "4",
        meaning: "webhook attempts in flight to one destination (scheme, host, port), all instances together",
    },
    Variable {
        name: "SOLOPAY_WEBHOOK_POLL_INTERVAL_MS",
        default: "1000",
        meaning: "how often due retries are looked for when nothing woke the worker",
    },
    Variable {
        name: "SOLOPAY_DB_POOL_SIZE",
        default: "16",
        meaning: "database connections per instance",
    },
    Variable {
        name: "SOLOPAY_DB_POOL_TIMEOUT_SECS",
        default: "5",
        meaning: "how long a request waits for a connection before 503",
    },
    Variable {
        name: "SOLOPAY_DB_WAIT_SECS",
        default: "60",
        meaning: "how long a start waits for the database to accept connections (retrying every second, logged) before it gives up (0–600)",
    },
    Variable {
        name: "SOLOPAY_STATEMENT_TIMEOUT_SECS",
        default: "10",
        meaning: "server-side limit of one SQL statement or lock wait",
    },
    Variable {
        name: "SOLOPAY_SWEEP_INTERVAL_MS",
        default: "1000",
        meaning: "how often overdue orders are expired in the background",
    },
    Variable {
        name: "SOLOPAY_RETENTION_DAYS",
        default: "none",
        meaning: "delete history older than this many days (1–3650) in the background sweep: raw notifications no payment references, webhook events whose every delivery succeeded (with their deliveries and attempts) and alerts sent on every channel; a payment's own raw notification is kept without its body. Never an order, a payment or the audit log (Retention); unset keeps everything",
    },
    Variable {
        name: "SOLOPAY_WORKERS",
        default: "CPU count",
        meaning: "HTTP worker threads",
    },
    Variable {
        name: "SOLOPAY_COMPAT",
        default: "vmq,epay,epay2,epusdt,vpay,forwarder",
        meaning: "the older protocols served (vmq V免签, epay 易支付, epay2 易支付 V2, epusdt epusdt/BEpusdt, vpay dreamncn VPay, forwarder SmsForwarder-style posts); empty serves none (their paths answer 404)",
    },
    Variable {
        name: "SOLOPAY_VMQ_MERCHANT",
        default: "none",
        meaning: "the merchant V免签's merchant endpoints act for",
    },
    Variable {
        name: "SOLOPAY_PUBLIC_URL",
        default: "the request's scheme and host",
        meaning: "where payers reach the service (links to the payment page)",
    },
    Variable {
        name: "SOLOPAY_COMPAT_WINDOW_SECS",
        default: "120",
        meaning: "how far an old client's timestamp (forwarders, the V免签 app) may be from the server clock",
    },
    Variable {
        name: "SOLOPAY_RATE_LIMIT",
        default: "50",
        meaning: "requests a second per client address to the limited endpoints (0–100000); 0 switches the limit off",
    },
    Variable {
        name: "SOLOPAY_RATE_LIMIT_BURST",
        default: "100",
        meaning: "requests a client address may send at once before the rate applies (1–100000)",
    },
    Variable {
        name: "SOLOPAY_TRUST_FORWARDED_FOR",
        default: "false",
        meaning: "take the client address from the last X-Forwarded-For entry instead of the connection (the standard Forwarded header is not read); only behind a proxy that sets it (Limits)",
    },
    Variable {
        name: "SOLOPAY_LOG",
        default: "info",
        meaning: "log filter (tracing syntax, e.g. info,solopay=debug)",
    },
    Variable {
        name: "SOLOPAY_LOG_FORMAT",
        default: "text",
        meaning: "text or json",
    },
];

/// The settings as `solopay serve --help` lists them.
pub fn help() -> String {
    let mut text = String::from(
        "Settings (environment variables; durations in seconds unless the name says _MS):\n",
    );
    for variable in VARIABLES {
        text.push_str(&format!(
            "\n  {}\n      default: {}\n      {}\n",
            variable.name, variable.default, variable.meaning
        ));
    }
    text
}
