//! [`RedisStore`]: de-duplication shared by several receiver replicas through
//! one Redis, for [`kendo_webhooks::KendoWebhookLayer`].
//!
//! One store, one file (about 800 lines of code and 200 of unit tests): its
//! four Lua scripts, the builder (URL, TLS, timeouts) and the store share
//! the connection and the key format, and read best side by side.
//!
//! Every key lives at `<namespace>:<key>` and holds either
//! `inflight:<token>` (a claim: a lease of a few seconds, renewed by the
//! layer while the service runs, so that a crashed replica's claim lapses
//! before Kendo's next attempt) or `done` (which expires after the done
//! TTL). Each operation is one Lua script, so it is atomic and costs one
//! round-trip:
//!
//! - **claim**: `SET key inflight:<token> NX PX <lease>`; if the key
//!   exists, its value tells [`Claim::Done`] from [`Claim::InFlight`].
//! - **renew**: `PEXPIRE key <lease>` if the key still holds our claim.
//! - **complete**: if the key still holds our claim (or holds nothing: our
//!   claim expired while the service ran, and the effect did happen), it
//!   becomes `done` with the done TTL. A newer claim of another replica is
//!   left alone.
//! - **release**: deletes the key only if it still holds our claim, so a slow
//!   replica cannot release a claim taken by another one since.
//!
//! Every operation is bounded by the store's timeout (default 500 ms); a
//! Redis that is down, slow or frozen yields a [`StoreError`], and the
//! layer's [`StoreErrorPolicy`](kendo_webhooks::StoreErrorPolicy) decides what happens
//! to the delivery. Reconnection is left to redis-rs's connection manager.
//!
//! `rediss://` URLs connect over TLS (rustls), trusting the operating
//! system's roots or the CA given to
//! [`RedisStoreBuilder::tls_ca_certificate`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use ::redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError,
    Script, TlsCertificates,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use url::Url;

use kendo_webhooks::dedupe::{Claim, ClaimToken, DedupeStore, StoreError, StoreFuture};

/// Claims `KEYS[1]` with `ARGV[1]` (the in-flight value) for `ARGV[2]` ms.
/// Returns 0 when acquired, 1 when done, 2 when in flight elsewhere.
const CLAIM_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
if redis.call('GET', KEYS[1]) == 'done' then
  return 1
end
return 2
";

/// Marks `KEYS[1]` done for `ARGV[2]` ms if it holds `ARGV[1]` (our claim)
/// or nothing. Returns 1 when marked, 0 when another claim holds the key or
/// it is already done.
const COMPLETE_SCRIPT: &str = r"
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] or value == false then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
  return 1
end
return 0
";

/// Extends `KEYS[1]` to `ARGV[2]` ms if it holds `ARGV[1]` (our claim).
/// Returns 1 when extended, 0 when the claim is no longer ours.
const RENEW_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes `KEYS[1]` if it holds `ARGV[1]` (our claim). Returns the number
/// of keys deleted.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// How long the kernel may go without an answer from Redis's host (idle
/// keepalive probes, or unacknowledged data) before the connection counts as
/// dead and is replaced; without it, a host that vanished without closing
/// its connections would time out every operation until the OS gave up,
/// which takes minutes to hours.
const DEAD_PEER_AFTER: Duration = Duration::from_secs(10);

/// A [`DedupeStore`] in Redis, shared by every replica that uses the same
/// Redis and namespace.
///
/// Use it when the same webhook endpoint is served by several processes
/// behind a load balancer: Kendo's retry of a delivery may land on any of
/// them, and only a shared store sees both copies.
///
/// ```no_run
/// use std::time::Duration;
/// use kendo_webhooks::KendoWebhookLayer;
/// use kendo_webhooks_redis::RedisStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .namespace("crm-webhooks")
///     .done_ttl(Duration::from_secs(24 * 60 * 60))
///     .build()
///     .await?;
/// let layer = KendoWebhookLayer::builder()
///     .secret(std::env::var("KENDO_WEBHOOK_SECRET")?)
///     .dedupe_store(store)
///     .build()?;
/// # drop(layer); Ok(()) }
/// ```
///
/// Cloning is cheap: clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
    connection: ConnectionManager,
}

struct Inner {
    /// `host:port/db`, without credentials, for `Debug` and error messages.
    address: String,
    namespace: String,
    lease: Duration,
    lease_ms: u64,
    done_ttl_ms: u64,
    timeout: Duration,
    claim: Script,
    renew: Script,
    complete: Script,
    release: Script,
}

impl RedisStore {
    /// Default key prefix: keys are `kendo-webhooks:<key>`.
    pub const DEFAULT_NAMESPACE: &'static str = "kendo-webhooks";
    /// Default lease of an in-flight claim: 3 s, renewed every second while
    /// the service runs. A replica killed mid-request stops renewing, so its
    /// claim lapses at most 3 s after its death. Kendo retries about 1 s
    /// after a reset connection; with the layer's default wait for in-flight
    /// claims (4 s), that retry waits out the lapse on another replica and
    /// is processed there, well inside Kendo's 10 s timeout (and the attempt
    /// after it, ~2 s later, finds the key free). Short enough for that,
    /// long enough that two missed renewals (Redis timeouts of 500 ms each)
    /// do not lose the lease.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
    /// Default lifetime of a done mark: 24 h, far beyond Kendo's retries.
    pub const DEFAULT_DONE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
    /// Default bound on every Redis operation: 500 ms.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

    /// Starts a builder for the Redis at `url` (e.g. `"redis://127.0.0.1:6379/"`;
    /// `redis://user:password@host:port/db` with credentials;
    /// `rediss://...` for TLS). Characters such as `/ ? # @` in the password
    /// must be percent-encoded (`%2F %3F %23 %40`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            namespace: Self::DEFAULT_NAMESPACE.to_owned(),
            lease: Self::DEFAULT_LEASE,
            done_ttl: Self::DEFAULT_DONE_TTL,
            timeout: Self::DEFAULT_TIMEOUT,
            tls_ca_certificate: None,
        }
    }

    /// The Redis key that holds `key`'s state: `<namespace>:<key>`.
    #[must_use]
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}:{key}", self.inner.namespace)
    }

    async fn run<T: ::redis::FromRedisValue>(
        &self,
        operation: &'static str,
        script: &Script,
        key: &str,
        value: &str,
        ttl_ms: Option<u64>,
    ) -> Result<T, StoreError> {
        let mut invocation = script.key(self.redis_key(key));
        invocation.arg(value);
        if let Some(ttl_ms) = ttl_ms {
            invocation.arg(ttl_ms);
        }
        let mut connection = self.connection.clone();
        let call = invocation.invoke_async::<T>(&mut connection);
        // The connection's own response timeout equals ours; whichever
        // fires first, report a timeout.
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if error.is_timeout() => Err(self.timed_out(operation)),
            Ok(Err(error)) => Err(StoreError::with_source(
                format!(
                    "Redis {operation} failed at {}; check that Redis is up and reachable",
                    self.inner.address
                ),
                error,
            )),
            Err(_elapsed) => Err(self.timed_out(operation)),
        }
    }

    fn timed_out(&self, operation: &str) -> StoreError {
        StoreError::new(format!(
            "Redis {operation} timed out after {} ms at {}; Redis is down, overloaded or \
             unreachable (raise the store's timeout only if it is merely slow)",
            self.inner.timeout.as_millis(),
            self.inner.address
        ))
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.inner.address)
            .field("namespace", &self.inner.namespace)
            .field("lease", &self.inner.lease)
            .field("done_ttl_ms", &self.inner.done_ttl_ms)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl DedupeStore for RedisStore {
    fn claim<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            // If this fails or is cancelled after the SET landed, the layer's
            // guard releases the key with the same token.
            let value = in_flight_value(token);
            let ttl = Some(self.inner.lease_ms);
            let script = &self.inner.claim;
            match self.run::<i64>("claim", script, key, &value, ttl).await? {
                0 => Ok(Claim::Acquired),
                1 => Ok(Claim::Done),
                2 => Ok(Claim::InFlight),
                other => Err(StoreError::new(format!(
                    "Redis claim script answered {other}, expected 0, 1 or 2; is another \
                     program writing to the namespace `{}`?",
                    self.inner.namespace
                ))),
            }
        })
    }

    fn complete<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let value = in_flight_value(token);
            let ttl = Some(self.inner.done_ttl_ms);
            let script = &self.inner.complete;
            self.run::<i64>("complete", script, key, &value, ttl)
                .await?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let value = in_flight_value(token);
            let script = &self.inner.release;
            self.run::<i64>("release", script, key, &value, None)
                .await?;
            Ok(())
        })
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.inner.lease)
    }

    fn renew<'a>(&'a self, key: &'a str, token: ClaimToken) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let value = in_flight_value(token);
            let ttl = Some(self.inner.lease_ms);
            let script = &self.inner.renew;
            let renewed = self.run::<i64>("renew", script, key, &value, ttl).await?;
            Ok(renewed == 1)
        })
    }
}

fn in_flight_value(token: ClaimToken) -> String {
    format!("inflight:{:016x}", token.value())
}

/// Builder of a [`RedisStore`]; see each method for its default.
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    namespace: String,
    lease: Duration,
    done_ttl: Duration,
    timeout: Duration,
    tls_ca_certificate: Option<Vec<u8>>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .field("done_ttl", &self.done_ttl)
            .field("timeout", &self.timeout)
            .field("tls_ca_certificate", &self.tls_ca_certificate.is_some())
            .finish()
    }
}

impl RedisStoreBuilder {
    /// Key prefix (default `"kendo-webhooks"`): keys are `<ns>:<key>`. Give
    /// each endpoint its own namespace when several share one Redis; replicas
    /// of one endpoint must use the same.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }

    /// Lease of an in-flight claim (default 3 s, see
    /// [`RedisStore::DEFAULT_LEASE`]). The layer renews it every third of
    /// the lease while your service runs, so it need not cover your slowest
    /// request: it bounds how long a dead replica's claim blocks the key.
    /// Keep it a few times the store's timeout, or a Redis hiccup makes
    /// leases lapse (and a second copy run) while their holder is alive;
    /// and keep it below the layer's
    /// [`in_flight_wait`](kendo_webhooks::KendoWebhookLayerBuilder::in_flight_wait)
    /// plus about 1 s, or Kendo's retry after a crash is answered 409.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a processed delivery is remembered (default 24 h). Copies
    /// arriving later are processed again: beyond this window, only an
    /// idempotent sink prevents a duplicate effect.
    pub fn done_ttl(mut self, ttl: Duration) -> Self {
        self.done_ttl = ttl;
        self
    }

    /// Bound on every Redis operation, and on connecting (default 500 ms).
    /// A request never waits longer than this on Redis; past it the store
    /// reports an error and the layer's store-error policy applies.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Trusts only the CA certificate(s) in `pem` for a `rediss://` URL,
    /// instead of the operating system's roots: for a Redis whose
    /// certificate is signed by a private CA (self-hosted Redis, some
    /// managed services). `pem` is the CA file's content, one or more
    /// `-----BEGIN CERTIFICATE-----` blocks.
    ///
    /// The server's certificate must still name the URL's host. Without
    /// this option, `rediss://` trusts the roots installed in the operating
    /// system (e.g. Debian's `ca-certificates`), which is what public CAs
    /// need.
    ///
    /// ```no_run
    /// use kendo_webhooks_redis::RedisStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder("rediss://:password@redis.internal:6380/0")
    ///     .tls_ca_certificate(std::fs::read("/etc/redis/ca.crt")?)
    ///     .build()
    ///     .await?;
    /// # drop(store); Ok(()) }
    /// ```
    pub fn tls_ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_certificate = Some(pem.into());
        self
    }

    /// Connects to Redis and checks that it answers.
    ///
    /// Once built, connection loss is handled by reconnecting in the
    /// background; operations fail fast (within the timeout) meanwhile.
    /// Call it inside a tokio runtime with time enabled (as the layer needs
    /// anyway): the connection manager runs on it.
    ///
    /// For a `rediss://` URL, if the process has no default rustls
    /// `CryptoProvider` yet, this installs *ring*'s; an application that
    /// wants another one installs it before calling `build`.
    ///
    /// # Errors
    ///
    /// When the URL is not a Redis URL (or asks to skip certificate
    /// verification with `#insecure`), a TTL or the timeout is zero, the
    /// CA certificate is not PEM or is given with a `redis://` URL, or Redis
    /// cannot be reached, fails the TLS handshake, refuses the credentials or
    /// does not answer `PING` within the timeout. The errors never show the
    /// URL's password.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        let lease_ms = positive_millis("lease", self.lease)?;
        let done_ttl_ms = positive_millis("done_ttl", self.done_ttl)?;
        if self.timeout.is_zero() {
            return Err(StoreError::new(
                "the Redis store's timeout must be above zero (default 500 ms)",
            ));
        }
        let url = RedisUrl::parse(&self.url).ok_or_else(|| invalid_url(&self.url, None))?;
        let info = url
            .url
            .clone()
            .into_connection_info()
            .map_err(|error| invalid_url(&self.url, Some(url.sanitize(&error))))?
            .set_tcp_settings(tcp_settings());
        if let ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
            return Err(StoreError::new(format!(
                "`{}` asks to skip TLS certificate verification (#insecure), which the store \
                 does not do; trust a private CA with RedisStoreBuilder::tls_ca_certificate",
                redact_url(&self.url)
            )));
        }
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let client = match (&self.tls_ca_certificate, tls) {
            (None, false) => Client::open(info),
            (None, true) => {
                ensure_crypto_provider();
                Client::open(info)
            }
            (Some(_), false) => {
                return Err(StoreError::new(format!(
                    "a TLS CA certificate is set, but `{}` does not use TLS; connect with \
                     rediss:// or drop the certificate",
                    redact_url(&self.url)
                )))
            }
            (Some(pem), true) => {
                check_ca_pem(pem)?;
                ensure_crypto_provider();
                let certificates = TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                Client::build_with_tls(info, certificates)
            }
        }
        .map_err(|error| invalid_url(&self.url, Some(url.sanitize(&error))))?;
        let address = address(client.get_connection_info());
        let connect_error = |error: RedisError| connect_error(&address, &url, tls, &error);

        // One direct attempt first, so an unreachable Redis or bad
        // credentials are reported as such rather than as a timeout.
        let probe = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let checked = tokio::time::timeout(self.timeout * 2, async {
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&probe)
                .await?;
            ::redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        })
        .await;
        match checked {
            Ok(Ok(_pong)) => {}
            Ok(Err(error)) => return Err(connect_error(error)),
            Err(_elapsed) => return Err(connect_timeout(&address, self.timeout)),
        }

        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_max_delay(Duration::from_secs(1));
        let connection = tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_elapsed| connect_timeout(&address, self.timeout))?
        .map_err(connect_error)?;

        Ok(RedisStore {
            inner: Arc::new(Inner {
                address,
                namespace: self.namespace,
                lease: self.lease,
                lease_ms,
                done_ttl_ms,
                timeout: self.timeout,
                claim: Script::new(CLAIM_SCRIPT),
                renew: Script::new(RENEW_SCRIPT),
                complete: Script::new(COMPLETE_SCRIPT),
                release: Script::new(RELEASE_SCRIPT),
            }),
            connection,
        })
    }
}

/// `host:port/db` (`[v6]:port/db`, or the socket's path), without
/// credentials.
fn address(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }
            if host.contains(':') =>
        {
            format!("[{host}]:{port}/{db}")
        }
        other => format!("{other}/{db}"),
    }
}

/// redis-rs builds rustls configurations with the process's default
/// `CryptoProvider`; without one (and with more than one provider compiled
/// in), connecting would panic. Install ours, *ring*, unless the application
/// already chose.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one meanwhile: fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// redis-rs accepts a PEM without any certificate (and then trusts
/// nothing); refuse it here, where the mistake is.
fn check_ca_pem(pem: &[u8]) -> Result<(), StoreError> {
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        if certificate.is_err() {
            return Err(StoreError::new(
                "the Redis TLS CA certificate is not valid PEM; give the CA file's content \
                 (-----BEGIN CERTIFICATE----- ...)",
            ));
        }
        count += 1;
    }
    if count == 0 {
        return Err(StoreError::new(
            "the Redis TLS CA certificate holds no certificate; give the CA file's content \
             (-----BEGIN CERTIFICATE----- ...)",
        ));
    }
    Ok(())
}

/// No Nagle delay (every operation is one small request that waits for its
/// answer), and dead peers detected within [`DEAD_PEER_AFTER`].
fn tcp_settings() -> TcpSettings {
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(TcpKeepalive::new().with_time(DEAD_PEER_AFTER));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(DEAD_PEER_AFTER);
    settings
}

fn positive_millis(name: &str, ttl: Duration) -> Result<u64, StoreError> {
    let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    // Redis refuses PX values beyond about 2^63 ms; nobody needs more than
    // a few days, so cap far below that.
    const MAX_MILLIS: u64 = 1 << 52;
    if millis == 0 {
        return Err(StoreError::new(format!(
            "the Redis store's {name} must be at least 1 ms"
        )));
    }
    Ok(millis.min(MAX_MILLIS))
}

fn connect_error(address: &str, url: &RedisUrl, tls: bool, error: &RedisError) -> StoreError {
    if tls {
        if let Some(failure) = tls_failure(error) {
            let hint = match failure {
                TlsFailure::Certificate => {
                    "its certificate is not trusted for this host; if a private CA signed it, \
                     give that CA to RedisStoreBuilder::tls_ca_certificate"
                }
                TlsFailure::Other => {
                    "check that this port serves TLS (rediss://) and not plain Redis (redis://)"
                }
            };
            return StoreError::with_source(
                format!("the TLS handshake with Redis at {address} failed: {hint}"),
                url.sanitize(error),
            );
        }
    }
    let hint = if tls {
        "; if this port serves plain Redis, connect with redis://"
    } else {
        ""
    };
    StoreError::with_source(
        format!(
            "could not connect to Redis at {address}; check that it runs there and that the \
             URL's credentials and database are right{hint}"
        ),
        url.sanitize(error),
    )
}

/// Why a TLS handshake failed, as far as the error tells.
enum TlsFailure {
    /// The server's certificate was refused (unknown CA, wrong host, expired).
    Certificate,
    /// Anything else rustls refused (e.g. a plain Redis port).
    Other,
}

/// The rustls error inside `error`, if any. redis-rs keeps it in an
/// `Arc<dyn Error>` around an `io::Error`, neither of which passes it on
/// through `source()`; the text is the fallback should that layout change.
fn tls_failure(error: &RedisError) -> Option<TlsFailure> {
    use std::error::Error;
    let mut next: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(current) = next {
        let shared = current
            .downcast_ref::<Arc<dyn Error + Send + Sync>>()
            .map(|shared| &**shared as &(dyn Error + 'static));
        let io = shared
            .unwrap_or(current)
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if let Some(tls) = io.and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Some(match tls {
                rustls::Error::InvalidCertificate(_) => TlsFailure::Certificate,
                _ => TlsFailure::Other,
            });
        }
        next = current.source();
    }
    let text = error.to_string();
    if text.contains("invalid peer certificate") {
        Some(TlsFailure::Certificate)
    } else {
        None
    }
}

fn connect_timeout(address: &str, timeout: Duration) -> StoreError {
    StoreError::new(format!(
        "Redis at {address} did not answer within {} ms; check that it runs there, or raise \
         the store's timeout",
        timeout.as_millis()
    ))
}

fn invalid_url(url: &str, cause: Option<SanitizedError>) -> StoreError {
    let message = format!(
        "`{}` is not a valid Redis URL; expected redis[s]://[[user]:password@]host[:port][/db], \
         with characters such as / ? # @ in the password percent-encoded (%2F %3F %23 %40)",
        redact_url(url)
    );
    match cause {
        Some(cause) => StoreError::with_source(message, cause),
        None => StoreError::new(message),
    }
}

/// The URL schemes redis-rs connects to.
const SCHEMES: [&str; 7] = [
    "redis",
    "rediss",
    "valkey",
    "valkeys",
    "redis+unix",
    "valkey+unix",
    "unix",
];

/// A Redis URL that parsed cleanly: every part is where its writer meant
/// it, so the password is in [`Url::password`] (or a unix URL's `pass`
/// query) and nowhere else.
struct RedisUrl {
    url: Url,
    /// Every form in which a secret of the URL may be printed.
    secrets: Vec<String>,
}

impl RedisUrl {
    /// `None` unless `text` is a Redis URL that parses without doubt.
    ///
    /// A password holding an unencoded `/`, `?` or `#` ends the authority
    /// early, and its rest (up to the `@`) lands in the path, query or
    /// fragment, or makes the port invalid. So an `@` after the authority
    /// marks a URL whose parts cannot be trusted.
    fn parse(text: &str) -> Option<Self> {
        let url = Url::parse(text).ok()?;
        if !SCHEMES.contains(&url.scheme()) {
            return None;
        }
        let after_scheme = text.split_once("://")?.1;
        let authority_end = after_scheme
            .find(['/', '?', '#', '\\'])
            .unwrap_or(after_scheme.len());
        if after_scheme[authority_end..].contains('@') {
            return None;
        }
        let parts = [Some(url.path()), url.query(), url.fragment()];
        if parts.iter().flatten().any(|part| part.contains('@')) {
            return None;
        }
        let unix = url.scheme().ends_with("unix");
        if !unix && url.host_str().is_none_or(str::is_empty) {
            return None;
        }
        let mut secrets = Vec::new();
        let mut add = |secret: &str| {
            let decoded = percent_decode(secret);
            secrets.extend([secret.to_owned(), decoded]);
        };
        match url.password() {
            Some(password) => add(password),
            // A lone word before the `@` may well be a password.
            None => add(url.username()),
        }
        for (key, value) in url.query_pairs() {
            if key == "pass" || key == "password" {
                secrets.push(value.into_owned());
            }
        }
        secrets.retain(|secret| !secret.is_empty());
        // Longest first, so a secret holding another is cut out whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        Some(Self { url, secrets })
    }

    /// `error`'s text, with this URL's secrets cut out. redis-rs's errors
    /// are not ours to vouch for, so they are only ever passed on this way.
    fn sanitize(&self, error: &RedisError) -> SanitizedError {
        let mut text = error.to_string();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        SanitizedError(text)
    }
}

/// The text of a redis-rs error, with the URL's secrets cut out.
#[derive(Debug)]
struct SanitizedError(String);

impl fmt::Display for SanitizedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SanitizedError {}

/// `%XX` decoded (as redis-rs decodes the password), leaving anything else
/// as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// `url` without its secrets, for messages and `Debug`.
///
/// A URL that parses cleanly ([`RedisUrl::parse`]) shows its scheme, user
/// name, host, port and database, with the password, query and any unknown
/// fragment replaced by `<redacted>`. Any other text shows at most its
/// scheme, if it is a Redis scheme.
fn redact_url(text: &str) -> String {
    let Some(RedisUrl { url, .. }) = RedisUrl::parse(text) else {
        let scheme = text.split_once("://").and_then(|(scheme, _)| {
            SCHEMES
                .iter()
                .find(|known| known.eq_ignore_ascii_case(scheme))
        });
        return match scheme {
            Some(scheme) => format!("{scheme}://<unparsable>"),
            None => "<unparsable URL>".to_owned(),
        };
    };
    let mut shown = format!("{}://", url.scheme());
    match (url.username(), url.password()) {
        ("", None) => {}
        (user, Some(_)) => shown.push_str(&format!("{user}:<redacted>@")),
        (_, None) => shown.push_str("<redacted>@"),
    }
    shown.push_str(url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    let path = url.path();
    let database = path.strip_prefix('/').unwrap_or(path);
    if url.scheme().ends_with("unix") || database.bytes().all(|b| b.is_ascii_digit()) {
        shown.push_str(path);
    } else {
        shown.push_str("/<redacted>");
    }
    if url.query().is_some() {
        shown.push_str("?<redacted>");
    }
    match url.fragment() {
        None => {}
        Some("insecure") => shown.push_str("#insecure"),
        Some(_) => shown.push_str("#<redacted>"),
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_passwords_and_keeps_the_rest() {
        assert_eq!(
            redact_url("redis://:s3cret@10.0.0.1:6380/2"),
            "redis://:<redacted>@10.0.0.1:6380/2"
        );
        assert_eq!(
            redact_url("rediss://app:p%40ss@cache.internal/0?x=1"),
            "rediss://app:<redacted>@cache.internal/0?<redacted>"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redact_url("redis://s3cret@h/"), "redis://<redacted>@h/");
        assert_eq!(redact_url("s3cret garbage"), "<unparsable URL>");
        assert_eq!(
            redact_url("rediss://h:6380/0#insecure"),
            "rediss://h:6380/0#insecure"
        );
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?pass=s3cret"),
            "redis+unix:///run/redis.sock?<redacted>"
        );
    }

    /// `url` with `password` in it (as written, not encoded) must not show
    /// any of the password's characters runs, and the redacted form of an
    /// unparsable URL shows at most a known scheme.
    fn assert_hidden(url: &str, password: &str) {
        let shown = redact_url(url);
        for part in password
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|part| part.len() >= 2)
            .chain([password])
        {
            assert!(!shown.contains(part), "{url} -> {shown} shows {part:?}");
        }
        if RedisUrl::parse(url).is_none() {
            assert!(
                shown.ends_with("://<unparsable>") || shown == "<unparsable URL>",
                "{url} -> {shown}"
            );
        }
    }

    #[test]
    fn a_password_with_a_slash_is_never_shown() {
        assert_hidden("redis://:Kx7q/Wm3z@cache:6379/0", "Kx7q/Wm3z");
        assert_hidden("redis://user:Kx7q/Wm3z@cache:6379/0", "Kx7q/Wm3z");
        assert_hidden("redis://user:6379/Wm3z@cache:6379/0", "6379/Wm3z");
        assert_eq!(
            redact_url("redis://:Kx7q/Wm3z@cache:6379/0"),
            "redis://<unparsable>"
        );
    }

    #[test]
    fn a_password_with_a_question_mark_is_never_shown() {
        assert_hidden("redis://:Kx7q?Wm3z@cache:6379/0", "Kx7q?Wm3z");
        // The part before `?` is a valid port: the URL parses, wrongly.
        assert_hidden("redis://user:6380?Wm3z@cache:6379/0", "6380?Wm3z");
    }

    #[test]
    fn a_password_with_a_hash_is_never_shown() {
        assert_hidden("redis://:Kx7q#Wm3z@cache:6379/0", "Kx7q#Wm3z");
        assert_hidden("redis://user:6380#Wm3z@cache:6379/0", "6380#Wm3z");
    }

    #[test]
    fn a_password_with_an_at_sign_is_never_shown() {
        assert_hidden("redis://:Kx7q@Wm3z@cache:6379/0", "Kx7q@Wm3z");
        assert_eq!(
            redact_url("redis://user:Kx7q@Wm3z@cache:6379/0"),
            "redis://user:<redacted>@cache:6379/0"
        );
    }

    #[test]
    fn a_password_with_a_colon_is_never_shown() {
        assert_hidden("redis://user:Kx7q:Wm3z@cache:6379/0", "Kx7q:Wm3z");
        assert_hidden("redis://:Kx7q:Wm3z@cache:6379/0", "Kx7q:Wm3z");
    }

    #[test]
    fn a_base64_password_is_never_shown() {
        let password = "Zm9v/YmFy+YmF6==";
        assert_hidden(&format!("redis://:{password}@cache:6379/0"), password);
        assert_hidden(&format!("rediss://app:{password}@cache/0"), password);
        let encoded = "Zm9v%2FYmFy%2BYmF6%3D%3D";
        let url = format!("redis://:{encoded}@cache:6379/0");
        assert_eq!(redact_url(&url), "redis://:<redacted>@cache:6379/0");
        assert_hidden(&url, password);
        assert_hidden(&url, encoded);
    }

    #[test]
    fn a_percent_encoded_password_is_never_shown() {
        let url = "redis://app:p%40ss%2Fw%3Ford%23@cache:6379/0";
        assert_eq!(redact_url(url), "redis://app:<redacted>@cache:6379/0");
        assert_hidden(url, "p%40ss%2Fw%3Ford%23");
        assert_hidden(url, "p@ss/w?ord#");
    }

    #[test]
    fn an_empty_user_shows_only_that_a_password_is_set() {
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://:<redacted>@cache:6379/0"
        );
    }

    #[test]
    fn a_url_without_a_scheme_shows_nothing() {
        for url in [
            ":s3cret@cache:6379/0",
            "app:s3cret@cache:6379/0",
            "//:s3cret@cache:6379",
            "cache:6379",
            "s3cret",
            "",
        ] {
            assert_eq!(redact_url(url), "<unparsable URL>", "{url}");
        }
        assert_hidden("app:s3cret@cache:6379/0", "s3cret");
    }

    #[test]
    fn an_ipv6_host_is_shown_in_brackets() {
        assert_eq!(
            redact_url("redis://:s3cret@[::1]:6379/0"),
            "redis://:<redacted>@[::1]:6379/0"
        );
        assert_hidden("redis://:s3/cret@[::1]:6379/0", "s3/cret");
    }

    #[test]
    fn an_unknown_scheme_is_not_shown() {
        // `s3cret` could be a user name taken for a scheme.
        assert_eq!(redact_url("s3cret://h"), "<unparsable URL>");
        assert_eq!(redact_url("http://:pw@h/"), "<unparsable URL>");
        assert_eq!(redact_url("REDISS://:p/w@h/"), "rediss://<unparsable>");
    }

    #[test]
    fn sanitized_errors_cut_out_every_form_of_the_password() {
        let url = RedisUrl::parse("redis://app:p%40ss%2Fword@cache/0").unwrap();
        let error = RedisError::from((
            ::redis::ErrorKind::InvalidClientConfig,
            "echo",
            "p@ss/word and p%40ss%2Fword".to_owned(),
        ));
        let text = url.sanitize(&error).to_string();
        assert!(!text.contains("p@ss") && !text.contains("p%40ss"), "{text}");
        assert!(text.contains("<redacted> and <redacted>"), "{text}");
    }

    #[test]
    fn percent_decoding_matches_redis_rs() {
        assert_eq!(percent_decode("p%40ss%2fw"), "p@ss/w");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%+5%zz"), "%+5%zz");
        assert_eq!(percent_decode("a+b"), "a+b");
    }

    #[test]
    fn zero_ttls_are_refused_with_their_name() {
        let error = positive_millis("lease", Duration::ZERO).unwrap_err();
        assert!(error.to_string().contains("lease"), "{error}");
        assert_eq!(
            positive_millis("done_ttl", Duration::from_secs(2)).unwrap(),
            2000
        );
        assert_eq!(positive_millis("x", Duration::MAX).unwrap(), 1 << 52);
    }
}
