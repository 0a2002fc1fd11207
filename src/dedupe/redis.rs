//! [`RedisStore`]: de-duplication shared by several receiver replicas through
//! one Redis.
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
//! layer's [`StoreErrorPolicy`](crate::StoreErrorPolicy) decides what happens
//! to the delivery. Reconnection is left to redis-rs's connection manager.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use ::redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError, Script};

use super::{Claim, ClaimToken, DedupeStore, StoreError, StoreFuture};

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
/// use kendo_webhooks::{dedupe::RedisStore, KendoWebhookLayer};
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
    /// `redis://user:password@host:port/db` with credentials).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            namespace: Self::DEFAULT_NAMESPACE.to_owned(),
            lease: Self::DEFAULT_LEASE,
            done_ttl: Self::DEFAULT_DONE_TTL,
            timeout: Self::DEFAULT_TIMEOUT,
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
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .field("done_ttl", &self.done_ttl)
            .field("timeout", &self.timeout)
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
    /// [`in_flight_wait`](crate::KendoWebhookLayerBuilder::in_flight_wait)
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

    /// Connects to Redis and checks that it answers.
    ///
    /// Once built, connection loss is handled by reconnecting in the
    /// background; operations fail fast (within the timeout) meanwhile.
    /// Call it inside a tokio runtime with time enabled (as the layer needs
    /// anyway): the connection manager runs on it.
    ///
    /// # Errors
    ///
    /// When the URL is not a Redis URL, a TTL or the timeout is zero, or
    /// Redis cannot be reached, refuses the credentials or does not answer
    /// `PING` within the timeout.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        let lease_ms = positive_millis("lease", self.lease)?;
        let done_ttl_ms = positive_millis("done_ttl", self.done_ttl)?;
        if self.timeout.is_zero() {
            return Err(StoreError::new(
                "the Redis store's timeout must be above zero (default 500 ms)",
            ));
        }
        let scheme = self.url.split_once("://").map_or("", |(scheme, _)| scheme);
        if scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys") {
            return Err(StoreError::new(format!(
                "`{}` asks for TLS, which the `redis` feature does not include; connect with \
                 redis:// over a private network or through a local TLS tunnel",
                redact_url(&self.url)
            )));
        }
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .and_then(|info| Client::open(info.set_tcp_settings(tcp_settings())))
            .map_err(|error| {
                StoreError::with_source(
                    format!(
                        "`{}` is not a valid Redis URL; expected \
                         redis://[user:password@]host:port/[db]",
                        redact_url(&self.url)
                    ),
                    error,
                )
            });
        let client = info?;
        let info = client.get_connection_info();
        let address = format!("{}/{}", info.addr(), info.redis_settings().db());

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
            Ok(Err(error)) => return Err(connect_error(&address, error)),
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
        .map_err(|error| connect_error(&address, error))?;

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

fn connect_error(address: &str, error: RedisError) -> StoreError {
    StoreError::with_source(
        format!(
            "could not connect to Redis at {address}; check that it runs there and that the \
             URL's credentials and database are right"
        ),
        error,
    )
}

fn connect_timeout(address: &str, timeout: Duration) -> StoreError {
    StoreError::new(format!(
        "Redis at {address} did not answer within {} ms; check that it runs there, or raise \
         the store's timeout",
        timeout.as_millis()
    ))
}

/// `url` with any password replaced, for messages and `Debug`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: it may be anything, so show nothing of it.
        return "<unparsable URL>".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            // `user:password`, or a lone word that may well be a password.
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}{path}"),
                None => format!("{scheme}://<redacted>@{host}{path}"),
            }
        }
        None => url.to_owned(),
    }
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
            "rediss://app:<redacted>@cache.internal/0?x=1"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redact_url("redis://s3cret@h/"), "redis://<redacted>@h/");
        assert_eq!(redact_url("s3cret garbage"), "<unparsable URL>");
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
