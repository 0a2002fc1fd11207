//! Configuration from the environment, checked before anything starts.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `KENDO_WEBHOOK_SECRET` | the endpoint's webhook secret | required |
//! | `KENDO_WEBHOOK_SECRET_PREVIOUS` | the previous secret, during a rotation | unset |
//! | `CRM_ADDR` | address to listen on | `127.0.0.1:3000` |
//! | `CRM_DATABASE_URL` | `postgres://…`: inbox, projections and log in Postgres, shared by replicas | unset (SQLite) |
//! | `CRM_DATABASE_CA_FILE` | PEM file of the CA(s) that sign the Postgres server's certificate (the URL's `sslrootcert`); with `sslmode=verify-full` (or `verify-ca`) in `CRM_DATABASE_URL` | unset |
//! | `CRM_DB` | SQLite file (when `CRM_DATABASE_URL` is unset) | `crm.sqlite3` |
//! | `CRM_ADMIN_TOKEN` | token for `/`, `/api/*`, `/metrics` | random, printed at start |
//! | `KENDO_DEDUPE_REDIS_URL` | Redis de-duplication fast path (feature `redis`) | unset |
//! | `CRM_HEADER_READ_TIMEOUT_SECS` | close a connection whose request head is not complete in time; also the keep-alive idle timeout | `5` |
//! | `CRM_REQUEST_TIMEOUT_SECS` | answer 408 to a request not answered in time | `10` |
//! | `CRM_BODY_START_TIMEOUT_SECS` | answer 408 (and close) when a declared body sends no byte in time; until its first byte a request holds no in-flight slot and no body budget | `2` |
//! | `CRM_MIN_BODY_RATE` | bytes a second a webhook body must average once started (each that many bytes buy one more second; 0: no minimum) | `1024` |
//! | `CRM_MAX_REQUESTS_PER_CONNECTION` | requests answered on one connection before it is closed (`Connection: close`), which bounds what a peer that pipelines and never reads can make the server write | `1000` |
//! | `CRM_WRITE_TIMEOUT_SECS` | close a connection whose answers make no progress (a peer that does not read) | `10` |
//! | `CRM_MAX_CONNECTIONS` | open connections; more wait in the kernel's backlog | `1024` |
//! | `CRM_MAX_IN_FLIGHT` | requests handled at once; more get 503 at once | `512` |
//! | `CRM_MAX_BUF_BYTES` | read buffer per connection (bounds unfinished heads) | `16384` |
//! | `CRM_LOG_KEEP` | newest verified delivery-log entries kept | `10000` |
//! | `CRM_REJECTIONS_KEEP_MINUTES` | minutes of aggregated rejections kept | `10080` (7 days) |
//! | `CRM_WORKER_LEASE_SECS` | the inbox worker's lease on a row (a dead replica's rows wait this long) | `30` |
//! | `CRM_PUBLIC_URL` | the app's public URL; admin requests that change state must come from its origin (else from the request's `Host`) | unset |
//! | `CRM_TIME_ZONE` | IANA time zone of the console: "today" starts at its midnight, times show in it with their offset, dates in `from`/`to` are its days | `UTC` |
//! | `CRM_INBOX_RETENTION_DAYS` | done inbox rows (raw bodies) are purged this many days after they were done; calls and trainings are kept | `7` |
//! | `CRM_CONFIG` | TOML file of destinations and alerts (`docs/destinations.md`); checked at start | unset (none) |
//! | `RUST_LOG` | log filter (`Targets` directives) | `info`, with the library's per-request lines (`kendo_webhooks`) at `error`: the app logs failures rate-limited instead |

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kendo_webhooks::DedupeStore;

pub use crate::database::Database;

/// The current webhook secret (required).
pub const SECRET_VAR: &str = "KENDO_WEBHOOK_SECRET";
/// The previous webhook secret, accepted during a rotation (optional).
pub const PREVIOUS_SECRET_VAR: &str = "KENDO_WEBHOOK_SECRET_PREVIOUS";
/// Address to listen on.
pub const ADDR_VAR: &str = "CRM_ADDR";
/// SQLite database file.
pub const DB_VAR: &str = "CRM_DB";
/// Postgres URL; selects Postgres over SQLite.
pub const DATABASE_URL_VAR: &str = "CRM_DATABASE_URL";
/// PEM file of the CA(s) of the Postgres server's certificate.
pub const DATABASE_CA_FILE_VAR: &str = "CRM_DATABASE_CA_FILE";
/// The admin token.
pub const ADMIN_TOKEN_VAR: &str = "CRM_ADMIN_TOKEN";
/// Redis URL of a de-duplication fast path shared by replicas (optional).
pub const REDIS_VAR: &str = "KENDO_DEDUPE_REDIS_URL";

/// The console's time zone, an IANA name.
pub const TIME_ZONE_VAR: &str = "CRM_TIME_ZONE";

/// Default of `CRM_ADDR`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";
/// Default of `CRM_DB`.
pub const DEFAULT_DB: &str = "crm.sqlite3";

/// The HTTP server's limits; every one is a setting (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to receive a complete request head; also how long an idle
    /// keep-alive connection stays open (hyper's header-read timer runs
    /// whenever the connection waits for a request head).
    pub header_read_timeout: Duration,
    /// Time to answer a request (408 after it).
    pub request_timeout: Duration,
    /// Time for the first byte of a declared body (408 and close after
    /// it); a request counts as in flight only once its body started.
    pub body_start_timeout: Duration,
    /// Bytes a second a webhook body must average once started (0: none).
    pub min_body_rate: usize,
    /// Time a write may make no progress before the connection is closed.
    pub write_timeout: Duration,
    /// Requests answered on one connection before it is closed.
    pub max_requests_per_connection: usize,
    /// Open connections at once.
    pub max_connections: usize,
    /// Requests handled at once; more are refused with 503.
    pub max_in_flight: usize,
    /// hyper's read buffer per connection, in bytes (at least 8192).
    pub max_buf_size: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            body_start_timeout: kendo_webhooks::DEFAULT_BODY_START_TIMEOUT,
            min_body_rate: kendo_webhooks::DEFAULT_MIN_BODY_RATE,
            write_timeout: Duration::from_secs(10),
            max_requests_per_connection: 1000,
            max_connections: 1024,
            max_in_flight: 512,
            max_buf_size: 16 * 1024,
        }
    }
}

/// Everything the app needs to start.
pub struct AppConfig {
    /// Where to listen (`CRM_ADDR`); port 0 picks a free port.
    pub addr: SocketAddr,
    /// The database.
    pub database: Database,
    /// The current webhook secret.
    pub secret: String,
    /// The previous secret, still accepted during a rotation.
    pub previous_secret: Option<String>,
    /// The admin token; `None` generates one at start.
    pub admin_token: Option<String>,
    /// Server limits.
    pub limits: ServerLimits,
    /// Newest verified delivery-log entries kept.
    pub log_keep: usize,
    /// Minutes of aggregated rejections kept.
    pub rejections_keep_minutes: i64,
    /// Whether the inbox worker runs (tests turn it off to leave rows in
    /// the inbox).
    pub run_worker: bool,
    /// The worker's lease on a claimed row.
    pub worker_lease: Duration,
    /// Done inbox rows are purged this long after they were done.
    pub inbox_retention: Duration,
    /// A shared de-duplication store; `None` uses the layer's in-memory LRU.
    pub dedupe_store: Option<Box<dyn DedupeStore>>,
    /// How the de-duplication store is described at start.
    pub dedupe_description: String,
    /// The app's public origin (`CRM_PUBLIC_URL`), for the admin pages'
    /// cross-site check; `None`: the request's `Host`.
    pub public_origin: Option<String>,
    /// Destinations and alerts (`CRM_CONFIG`); empty without it.
    pub destinations: crate::destinations::settings::Settings,
    /// The console's time zone (`CRM_TIME_ZONE`, an IANA name; UTC by
    /// default).
    pub time_zone: jiff::tz::TimeZone,
}

impl AppConfig {
    /// A configuration with every default but the secret and SQLite file.
    pub fn new(secret: impl Into<String>, db_path: impl Into<PathBuf>) -> Self {
        Self {
            addr: DEFAULT_ADDR.parse().expect("a valid default address"),
            database: Database::Sqlite(db_path.into()),
            secret: secret.into(),
            previous_secret: None,
            admin_token: None,
            limits: ServerLimits::default(),
            log_keep: 10_000,
            rejections_keep_minutes: 7 * 24 * 60,
            run_worker: true,
            worker_lease: Duration::from_secs(30),
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
            dedupe_store: None,
            dedupe_description: "in-memory LRU (this process), then the database's unique event id"
                .to_owned(),
            public_origin: None,
            destinations: crate::destinations::settings::Settings::default(),
            time_zone: jiff::tz::TimeZone::UTC,
        }
    }

    /// Reads the configuration through `lookup` (`std::env::var` in `main`).
    ///
    /// Unset and empty variables are treated alike. The Redis store is not
    /// built here (it needs a connection); see `main`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let secret = get(SECRET_VAR).ok_or(ConfigError::MissingSecret)?;
        let db_path = get(DB_VAR).unwrap_or_else(|| DEFAULT_DB.to_owned());
        let mut config = Self::new(secret, db_path);
        if let Some(url) = get(DATABASE_URL_VAR) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::Bad {
                    name: DATABASE_URL_VAR,
                    value: "(not shown)".to_owned(),
                    expected: "a postgres:// or postgresql:// URL",
                });
            }
            config.database = Database::Postgres(with_ca_file(url, get(DATABASE_CA_FILE_VAR)));
        } else if get(DATABASE_CA_FILE_VAR).is_some() {
            return Err(ConfigError::Bad {
                name: DATABASE_CA_FILE_VAR,
                value: "(set)".to_owned(),
                expected: "to be set only with a postgres:// CRM_DATABASE_URL",
            });
        }
        config.previous_secret = get(PREVIOUS_SECRET_VAR);
        if config.previous_secret.as_deref() == Some(config.secret.as_str()) {
            return Err(ConfigError::SameSecrets);
        }
        config.admin_token = get(ADMIN_TOKEN_VAR);
        if config.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Bad {
                name: ADMIN_TOKEN_VAR,
                value: "(not shown)".to_owned(),
                expected: "at least 16 characters (or unset it to get a random one)",
            });
        }
        if let Some(addr) = get(ADDR_VAR) {
            config.addr = addr.parse().map_err(|_| ConfigError::Bad {
                name: ADDR_VAR,
                value: addr,
                expected: "IP:PORT, for example 127.0.0.1:3000",
            })?;
        }
        let secs = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            number(&get, name, default.as_secs(), 1).map(Duration::from_secs)
        };
        let limits = &mut config.limits;
        limits.header_read_timeout =
            secs("CRM_HEADER_READ_TIMEOUT_SECS", limits.header_read_timeout)?;
        limits.request_timeout = secs("CRM_REQUEST_TIMEOUT_SECS", limits.request_timeout)?;
        limits.body_start_timeout = secs("CRM_BODY_START_TIMEOUT_SECS", limits.body_start_timeout)?;
        limits.min_body_rate = usize_of(number(
            &get,
            "CRM_MIN_BODY_RATE",
            limits.min_body_rate as u64,
            0,
        )?);
        limits.write_timeout = secs("CRM_WRITE_TIMEOUT_SECS", limits.write_timeout)?;
        limits.max_requests_per_connection = usize_of(number(
            &get,
            "CRM_MAX_REQUESTS_PER_CONNECTION",
            limits.max_requests_per_connection as u64,
            1,
        )?);
        limits.max_connections = usize_of(number(
            &get,
            "CRM_MAX_CONNECTIONS",
            limits.max_connections as u64,
            1,
        )?);
        limits.max_in_flight = usize_of(number(
            &get,
            "CRM_MAX_IN_FLIGHT",
            limits.max_in_flight as u64,
            1,
        )?);
        limits.max_buf_size = usize_of(number(
            &get,
            "CRM_MAX_BUF_BYTES",
            limits.max_buf_size as u64,
            8192,
        )?);
        config.log_keep = usize_of(number(&get, "CRM_LOG_KEEP", config.log_keep as u64, 1)?);
        config.rejections_keep_minutes = i64::try_from(number(
            &get,
            "CRM_REJECTIONS_KEEP_MINUTES",
            config.rejections_keep_minutes as u64,
            1,
        )?)
        .unwrap_or(i64::MAX);
        config.worker_lease = secs("CRM_WORKER_LEASE_SECS", config.worker_lease)?;
        if let Some(url) = get("CRM_PUBLIC_URL").filter(|v| !v.trim().is_empty()) {
            config.public_origin =
                Some(crate::same_origin::origin_of(url.trim()).ok_or(ConfigError::Bad {
                    name: "CRM_PUBLIC_URL",
                    value: url.clone(),
                    expected: "the app's public URL, http:// or https:// and a host                                (e.g. https://crm.example.com)",
                })?);
        }
        if let Some(path) = get(crate::destinations::settings::CONFIG_VAR) {
            config.destinations =
                crate::destinations::settings::Settings::load(std::path::Path::new(&path), get)
                    .map_err(|error| ConfigError::Destinations { path, error })?;
        }
        if let Some(name) = get(TIME_ZONE_VAR).map(|v| v.trim().to_owned()) {
            config.time_zone = jiff::tz::TimeZone::get(&name).map_err(|_| ConfigError::Bad {
                name: TIME_ZONE_VAR,
                value: name.clone(),
                expected: "an IANA time zone name such as Europe/Paris, America/New_York or UTC",
            })?;
        }
        let days = number(&get, "CRM_INBOX_RETENTION_DAYS", 7, 1)?;
        config.inbox_retention = Duration::from_secs(days.saturating_mul(24 * 3600));
        Ok(config)
    }

    /// Names the secrets that start or end with whitespace (often a pasted
    /// newline, which makes every signature fail).
    pub fn padded_secrets(&self) -> Vec<&'static str> {
        let padded = |s: &str| s.trim() != s;
        let mut names = Vec::new();
        if padded(&self.secret) {
            names.push(SECRET_VAR);
        }
        if self.previous_secret.as_deref().is_some_and(padded) {
            names.push(PREVIOUS_SECRET_VAR);
        }
        names
    }

    /// One line per setting, for the start-up log. Never shows a secret,
    /// the token or a database URL.
    pub fn describe(&self) -> Vec<String> {
        let secrets = match &self.previous_secret {
            Some(_) => {
                format!("\"current\" ({SECRET_VAR}) and \"previous\" ({PREVIOUS_SECRET_VAR})")
            }
            None => format!("\"current\" ({SECRET_VAR})"),
        };
        let database = match &self.database {
            Database::Sqlite(path) => format!("SQLite {} ({DB_VAR})", path.display()),
            Database::Postgres(_) => format!("Postgres ({DATABASE_URL_VAR}), shared by replicas"),
        };
        let l = &self.limits;
        vec![
            format!("address       {}", self.addr),
            format!("database      {database}"),
            format!("secrets       {secrets}"),
            format!("dedupe        {}", self.dedupe_description),
            format!(
                "server        header read/idle {:?}, request {:?}, {} connections, {} in flight, {} B buffer",
                l.header_read_timeout, l.request_timeout, l.max_connections, l.max_in_flight, l.max_buf_size
            ),
            format!(
                "bodies        first byte within {:?}, then at least {} B/s; writes stalled {:?} close; {} requests per connection",
                l.body_start_timeout, l.min_body_rate, l.write_timeout, l.max_requests_per_connection
            ),
            format!(
                "delivery log  newest {} verified entries; rejections per minute for {} minutes",
                self.log_keep, self.rejections_keep_minutes
            ),
            format!(
                "worker        {}",
                if self.run_worker { "on" } else { "off" }
            ),
            format!(
                "destinations  {} destinations, {} alerts (CRM_CONFIG)",
                self.destinations.destinations.len(),
                self.destinations.alerts.len()
            ),
            format!(
                "time zone     {} ({TIME_ZONE_VAR})",
                self.time_zone.iana_name().unwrap_or("UTC")
            ),
        ]
    }
}

/// The URL with `sslrootcert=<ca_file>` added (Postgres's own name for the
/// setting, which the inbox and the CRM's tables both read).
fn with_ca_file(url: String, ca_file: Option<String>) -> String {
    let Some(ca_file) = ca_file else {
        return url;
    };
    let encoded: String = ca_file
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslrootcert={encoded}")
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = get(name) else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(ConfigError::Bad {
            name,
            value,
            expected: "a whole number, at least the documented minimum",
        }),
    }
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("addr", &self.addr)
            .field("database", &self.database)
            .field("secret", &"REDACTED")
            .field(
                "previous_secret",
                &self.previous_secret.as_ref().map(|_| "REDACTED"),
            )
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "REDACTED"),
            )
            .field("limits", &self.limits)
            .field("log_keep", &self.log_keep)
            .field("run_worker", &self.run_worker)
            .field("dedupe", &self.dedupe_description)
            .finish_non_exhaustive()
    }
}

/// The environment does not describe a runnable app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `KENDO_WEBHOOK_SECRET` is unset or empty.
    MissingSecret,
    /// The previous secret equals the current one.
    SameSecrets,
    /// A variable does not parse.
    Bad {
        /// The variable.
        name: &'static str,
        /// The value given (or a placeholder when it may be secret).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The `CRM_CONFIG` file is unreadable or has a bad key.
    Destinations {
        /// The file.
        path: String,
        /// Which key and why.
        error: crate::destinations::settings::SettingsError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSecret => write!(
                f,
                "{SECRET_VAR} is not set. Set it to the endpoint's webhook secret from Kendo \
                 (Integrations > Webhooks), for example: \
                 {SECRET_VAR}=... cargo run --release -p crm-ingest"
            ),
            Self::SameSecrets => write!(
                f,
                "{PREVIOUS_SECRET_VAR} equals {SECRET_VAR}. During a rotation set \
                 {SECRET_VAR} to the new secret and {PREVIOUS_SECRET_VAR} to the old one; \
                 otherwise leave {PREVIOUS_SECRET_VAR} unset"
            ),
            Self::Bad {
                name,
                value,
                expected,
            } => write!(f, "{name}={value:?} is not valid: expected {expected}"),
            Self::Destinations { path, error } => {
                write!(
                    f,
                    "{}={path}: {error}",
                    crate::destinations::settings::CONFIG_VAR
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}
