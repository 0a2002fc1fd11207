//! Configuration from the environment, checked before anything starts.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use kendo_webhooks::DedupeStore;

/// The current webhook secret (required).
pub(crate) const SECRET_VAR: &str = "KENDO_WEBHOOK_SECRET";
/// The previous webhook secret, accepted during a rotation (optional).
pub(crate) const PREVIOUS_SECRET_VAR: &str = "KENDO_WEBHOOK_SECRET_PREVIOUS";
/// Address to listen on.
pub(crate) const ADDR_VAR: &str = "CRM_ADDR";
/// SQLite database file.
pub(crate) const DB_VAR: &str = "CRM_DB";
/// Redis URL of a de-duplication store shared by several replicas (optional).
pub(crate) const REDIS_VAR: &str = "KENDO_DEDUPE_REDIS_URL";

/// Default of `CRM_ADDR` (the same as [`AppConfig::new`] uses).
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:3000";
/// Default of `CRM_DB`.
pub(crate) const DEFAULT_DB: &str = "crm.sqlite3";
/// How many delivery-log entries are kept (the newest ones).
pub(crate) const DEFAULT_DELIVERY_LOG_KEEP: usize = 10_000;

/// Everything the app needs to start.
pub(crate) struct AppConfig {
    /// Where to listen (`CRM_ADDR`); port 0 picks a free port.
    pub(crate) addr: SocketAddr,
    /// The SQLite file (`CRM_DB`), created and migrated on start.
    pub(crate) db_path: PathBuf,
    /// The current webhook secret.
    pub(crate) secret: String,
    /// The previous secret, still accepted during a rotation.
    pub(crate) previous_secret: Option<String>,
    /// Newest delivery-log entries kept; older ones are pruned.
    pub(crate) delivery_log_keep: usize,
    /// Whether the background projector runs (tests turn it off to leave
    /// rows in the inbox).
    pub(crate) run_worker: bool,
    /// A shared de-duplication store; `None` uses the layer's in-memory LRU.
    pub(crate) dedupe_store: Option<Box<dyn DedupeStore>>,
    /// How the de-duplication store is described at start.
    pub(crate) dedupe_description: String,
}

impl AppConfig {
    /// A configuration with every default but the secret and database file.
    pub(crate) fn new(secret: impl Into<String>, db_path: impl Into<PathBuf>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            db_path: db_path.into(),
            secret: secret.into(),
            previous_secret: None,
            delivery_log_keep: DEFAULT_DELIVERY_LOG_KEEP,
            run_worker: true,
            dedupe_store: None,
            dedupe_description: "in-memory LRU (this process only), keyed by event id".to_owned(),
        }
    }

    /// Reads the configuration through `lookup` (`std::env::var` in `main`).
    ///
    /// Unset and empty variables are treated alike. The Redis store is not
    /// built here (it needs a connection); see `main`.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let secret = get(SECRET_VAR).ok_or(ConfigError::MissingSecret)?;
        let db_path = get(DB_VAR).unwrap_or_else(|| DEFAULT_DB.to_owned());
        let mut config = Self::new(secret, db_path);
        config.previous_secret = get(PREVIOUS_SECRET_VAR);
        if config.previous_secret.as_deref() == Some(config.secret.as_str()) {
            return Err(ConfigError::SameSecrets);
        }
        if let Some(addr) = get(ADDR_VAR) {
            config.addr =
                addr.parse()
                    .map_err(|error: std::net::AddrParseError| ConfigError::BadAddr {
                        value: addr,
                        error: error.to_string(),
                    })?;
        }
        Ok(config)
    }

    /// Names the secrets that start or end with whitespace (often a pasted
    /// newline, which makes every signature fail).
    pub(crate) fn padded_secrets(&self) -> Vec<&'static str> {
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

    /// One line per setting, for the start-up log. Never shows a secret.
    pub(crate) fn describe(&self) -> Vec<String> {
        let secrets = match &self.previous_secret {
            Some(_) => {
                format!("\"current\" ({SECRET_VAR}) and \"previous\" ({PREVIOUS_SECRET_VAR})")
            }
            None => format!("\"current\" ({SECRET_VAR})"),
        };
        vec![
            format!("address       {}", self.addr),
            format!("database      {}", self.db_path.display()),
            format!("secrets       {secrets}"),
            format!("dedupe        {}", self.dedupe_description),
            format!(
                "delivery log  newest {} entries kept",
                self.delivery_log_keep
            ),
            format!(
                "worker        {}",
                if self.run_worker { "on" } else { "off" }
            ),
        ]
    }
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("addr", &self.addr)
            .field("db_path", &self.db_path)
            .field("secret", &"REDACTED")
            .field(
                "previous_secret",
                &self.previous_secret.as_ref().map(|_| "REDACTED"),
            )
            .field("delivery_log_keep", &self.delivery_log_keep)
            .field("run_worker", &self.run_worker)
            .field("dedupe", &self.dedupe_description)
            .finish()
    }
}

/// The environment does not describe a runnable app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// `KENDO_WEBHOOK_SECRET` is unset or empty.
    MissingSecret,
    /// The previous secret equals the current one.
    SameSecrets,
    /// `CRM_ADDR` is not `IP:PORT`.
    BadAddr {
        /// The value given.
        value: String,
        /// Why it does not parse.
        error: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSecret => write!(
                f,
                "{SECRET_VAR} is not set. Set it to the endpoint's webhook secret from Kendo \
                 (Integrations > Webhooks), for example: \
                 {SECRET_VAR}=... cargo run --release --example crm_ingest"
            ),
            Self::SameSecrets => write!(
                f,
                "{PREVIOUS_SECRET_VAR} equals {SECRET_VAR}. During a rotation set \
                 {SECRET_VAR} to the new secret and {PREVIOUS_SECRET_VAR} to the old one; \
                 otherwise leave {PREVIOUS_SECRET_VAR} unset"
            ),
            Self::BadAddr { value, error } => write!(
                f,
                "{ADDR_VAR}={value:?} is not an address to listen on ({error}); \
                 use IP:PORT, for example {ADDR_VAR}={DEFAULT_ADDR}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
