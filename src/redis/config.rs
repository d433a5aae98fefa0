//! The configs of the Redis link and of the two fleet-wide limits, with their builders.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::circuit_breaker::CircuitBreakerConfig;
use crate::error::ConfigError;
use crate::rate_limiter::RateLimiterConfig;
use crate::sync::Arc;
use crate::telemetry::{Listener, Telemetry};
use crate::validate;

/// The link's default name (its breaker reports under it, and the health report lists it).
pub const DEFAULT_LINK_NAME: &str = "redis";
/// The name a session limit reports under unless given one.
pub const DEFAULT_SESSIONS_NAME: &str = "redis_sessions";
/// The default prefix of every key the fleet-wide limits write.
pub const DEFAULT_KEY_PREFIX: &str = "palisade";
/// The default time a round trip may take before it counts as failed.
pub const DEFAULT_ROUND_TRIP_TIMEOUT: Duration = Duration::from_millis(100);
/// The default time a connection attempt may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default count of consecutive failed round trips that opens the link's breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// The default time the link's breaker stays open before it lets one round trip probe.
pub const DEFAULT_BREAKER_BREAK: Duration = Duration::from_secs(2);
/// The longest round-trip or connect timeout a config accepts.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The default lifetime of a session lease in Redis; a running call renews it every third
/// of it, so only a crashed process's leases run out.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// The shortest lease lifetime accepted (renewals every third of it must have time to land).
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(300);
/// The longest lease lifetime accepted.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The most leases per key a session limit accepts.
pub const MAX_SESSIONS: u32 = 1 << 20;
/// The most tokens one local reservation may take at once.
pub const MAX_RESERVATION: u32 = 1 << 16;

/// What a fleet-wide limit does with a call when Redis cannot decide it: not reachable,
/// slower than the link's round-trip timeout, answering with an error or with a malformed
/// reply, or cut off by the link's open breaker.
///
/// # Examples
///
/// ```
/// use palisade::redis::FailMode;
///
/// // Keep a tenth of the fleet's limit on each of ten instances while Redis is down.
/// let mode = FailMode::Local { share: 0.1 };
/// assert_ne!(mode, FailMode::Open);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum FailMode {
    /// Admit the call unchecked and report [`EventKind::LinkFailed`]: availability over the
    /// limit. The default, since a limit store is rarely worth an outage of its own.
    ///
    /// [`EventKind::LinkFailed`]: crate::telemetry::EventKind::LinkFailed
    #[default]
    Open,
    /// Refuse the call with [`Rejected::Unavailable`](crate::Rejected::Unavailable), a
    /// reason of its own (the caller is not over any limit).
    Closed,
    /// Decide in this process with an in-process limit at `share` of the fleet's (in (0,
    /// 1]): with `n` instances, a share of `1 / n` keeps the fleet near its limit. A rate
    /// limit keeps the burst's share (at least 1) and the rate's (its period stretched by
    /// `1 / share`); a session limit keeps `max_per_key × share` leases per key, at least 1.
    Local {
        /// The share of the fleet's limit each instance keeps.
        share: f64,
    },
}

impl FailMode {
    pub(crate) fn check(self, field: &'static str) -> Result<Self, ConfigError> {
        if let FailMode::Local { share } = self {
            validate::ratio(field, share)?;
        }
        Ok(self)
    }
}

/// How to reach Redis and how to behave when it fails: the config of a
/// [`RedisLink`](super::RedisLink).
///
/// The URL's password never appears in `Debug` output, events or errors.
///
/// # Examples
///
/// ```
/// use palisade::redis::RedisConfig;
/// use std::time::Duration;
///
/// let config = RedisConfig::builder()
///     .url("redis://:s3cret@127.0.0.1:6379/0")
///     .round_trip_timeout(Duration::from_millis(50))
///     .build()?;
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) client: ::redis::Client,
    pub(crate) url_redacted: Arc<str>,
    // The environment variable a config file read the URL from, written back in its place
    // when the config is serialized (the URL itself is written redacted).
    pub(crate) url_env: Option<Arc<str>>,
    pub(crate) key_prefix: Arc<str>,
    pub(crate) round_trip_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) breaker: CircuitBreakerConfig,
}

impl RedisConfig {
    /// A builder; the URL must be set before `build`.
    pub fn builder() -> RedisConfigBuilder {
        RedisConfigBuilder::default()
    }

    /// The URL with its password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url_redacted
    }

    /// The prefix of every key the limits write (`{prefix}:rl:{policy}:{key}` for a rate
    /// limit, `{prefix}:ss:{policy}:{key}` for a session limit).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The longest a round trip may take before it counts as failed.
    pub fn round_trip_timeout(&self) -> Duration {
        self.round_trip_timeout
    }

    /// The longest a connection attempt may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The config of the link's own breaker.
    pub fn breaker(&self) -> &CircuitBreakerConfig {
        &self.breaker
    }

    /// The link's name.
    pub fn name(&self) -> &'static str {
        self.breaker.name()
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url_redacted)
            .field("url_env", &self.url_env)
            .field("key_prefix", &self.key_prefix)
            .field("round_trip_timeout", &self.round_trip_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// Builds a [`RedisConfig`].
///
/// # Examples
///
/// ```
/// use palisade::redis::RedisConfig;
///
/// let err = RedisConfig::builder().url("http://example.com").build().unwrap_err();
/// assert_eq!(err.field(), "url");
/// ```
#[derive(Clone, Default)]
pub struct RedisConfigBuilder {
    url: Option<String>,
    key_prefix: Option<Cow<'static, str>>,
    round_trip_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    breaker: Option<CircuitBreakerConfig>,
    name: Option<Cow<'static, str>>,
    listener: Option<Arc<dyn Listener>>,
}

impl fmt::Debug for RedisConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfigBuilder")
            .field("url", &self.url.as_deref().map(redact))
            .field("key_prefix", &self.key_prefix)
            .field("round_trip_timeout", &self.round_trip_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RedisConfigBuilder {
    /// The server's URL, `redis://[user][:password@]host[:port][/db]` (`rediss://` needs the
    /// `redis` crate's TLS features, which palisade does not turn on). Required.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisConfig;
    ///
    /// let config = RedisConfig::builder().url("redis://127.0.0.1:6379/").build()?;
    /// assert_eq!(config.url(), "redis://127.0.0.1:6379/");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The prefix of every key written, so several applications can share one server.
    /// Default: [`DEFAULT_KEY_PREFIX`]; must not be empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisConfig;
    ///
    /// let config = RedisConfig::builder().url("redis://127.0.0.1/").key_prefix("shop").build()?;
    /// assert_eq!(config.key_prefix(), "shop");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.key_prefix = Some(prefix.into());
        self
    }

    /// The longest one round trip (a decision, a release, a renewal) may take; a slower one
    /// counts as failed and the call is decided by the fail mode. Keep it below the
    /// deadlines of the callers (their timeouts, their clients' patience): a round trip the
    /// caller abandons first counts as nothing, so the link's breaker only learns that a
    /// server stopped answering from round trips that run to this timeout. Default:
    /// [`DEFAULT_ROUND_TRIP_TIMEOUT`]; valid: above zero, at most [`MAX_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisConfig;
    /// use std::time::Duration;
    ///
    /// let err = RedisConfig::builder()
    ///     .url("redis://127.0.0.1/")
    ///     .round_trip_timeout(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "round_trip_timeout");
    /// ```
    pub fn round_trip_timeout(mut self, d: Duration) -> Self {
        self.round_trip_timeout = Some(d);
        self
    }

    /// The longest a connection attempt may take. Default: [`DEFAULT_CONNECT_TIMEOUT`];
    /// valid: above zero, at most [`MAX_TIMEOUT`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisConfig;
    /// use std::time::Duration;
    ///
    /// let config = RedisConfig::builder()
    ///     .url("redis://127.0.0.1/")
    ///     .connect_timeout(Duration::from_millis(200))
    ///     .build()?;
    /// assert_eq!(config.connect_timeout(), Duration::from_millis(200));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// The link's own circuit breaker, which every round trip goes through: once it opens,
    /// calls are decided by their fail mode without waiting for a timeout each. Default:
    /// open after [`DEFAULT_BREAKER_FAILURES`] consecutive failed round trips, for
    /// [`DEFAULT_BREAKER_BREAK`], named like the link. A breaker config given here keeps its
    /// own name.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreakerConfig;
    /// use palisade::redis::RedisConfig;
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreakerConfig::builder()
    ///     .name("redis-link")
    ///     .consecutive_failures(2)
    ///     .break_duration(Duration::from_secs(1))
    ///     .build()?;
    /// let config = RedisConfig::builder().url("redis://127.0.0.1/").breaker(breaker).build()?;
    /// assert_eq!(config.name(), "redis-link");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.breaker = Some(config);
        self
    }

    /// The link's name, which its default breaker reports under. Default:
    /// [`DEFAULT_LINK_NAME`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisConfig;
    ///
    /// let config = RedisConfig::builder().url("redis://127.0.0.1/").name("limits").build()?;
    /// assert_eq!(config.name(), "limits");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A listener for the default breaker's events (state changes of the link). Default:
    /// none (or the process-wide default listener).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisConfig;
    /// use palisade::telemetry::Event;
    ///
    /// let config = RedisConfig::builder()
    ///     .url("redis://127.0.0.1/")
    ///     .listener(|e: &Event| println!("{e:?}"))
    ///     .build()?;
    /// # let _ = config;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn listener(mut self, listener: impl Listener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: `url` missing or not a Redis URL
    /// (the value in the error has its password replaced by `***`); `key_prefix` empty;
    /// `round_trip_timeout` or `connect_timeout` zero or above [`MAX_TIMEOUT`]; `name`
    /// blank.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisConfig;
    ///
    /// let err = RedisConfig::builder().url("mysql://root:hunter2@db/").build().unwrap_err();
    /// assert_eq!(err.field(), "url");
    /// assert!(!err.to_string().contains("hunter2"));
    /// ```
    pub fn build(self) -> Result<RedisConfig, ConfigError> {
        let url = self
            .url
            .ok_or_else(|| ConfigError::new("url", "is required", format_args!("nothing")))?;
        let url_redacted: Arc<str> = redact(&url).into();
        let client = ::redis::Client::open(url.as_str()).map_err(|e| {
            // The redis crate's message never quotes the URL; the value shown is redacted.
            ConfigError::new(
                "url",
                format!(
                    "must be a redis:// URL ({})",
                    e.detail().unwrap_or("unreadable")
                ),
                &*url_redacted,
            )
        })?;
        let key_prefix = self.key_prefix.unwrap_or(Cow::Borrowed(DEFAULT_KEY_PREFIX));
        if key_prefix.is_empty() {
            return Err(ConfigError::new("key_prefix", "must not be empty", ""));
        }
        let round_trip_timeout = validate::duration_in(
            "round_trip_timeout",
            self.round_trip_timeout
                .unwrap_or(DEFAULT_ROUND_TRIP_TIMEOUT),
            MAX_TIMEOUT,
        )?;
        let connect_timeout = validate::duration_in(
            "connect_timeout",
            self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            MAX_TIMEOUT,
        )?;
        let breaker = match self.breaker {
            Some(breaker) => breaker,
            None => {
                let mut builder = CircuitBreakerConfig::builder()
                    .name(self.name.unwrap_or(Cow::Borrowed(DEFAULT_LINK_NAME)))
                    .consecutive_failures(DEFAULT_BREAKER_FAILURES)
                    .break_duration(DEFAULT_BREAKER_BREAK);
                if let Some(listener) = self.listener {
                    builder =
                        builder.listener(move |e: &crate::telemetry::Event| listener.on_event(e));
                }
                builder.build()?
            }
        };
        Ok(RedisConfig {
            client,
            url_redacted,
            url_env: None,
            key_prefix: Arc::from(&*key_prefix),
            round_trip_timeout,
            connect_timeout,
            breaker,
        })
    }
}

/// `url` with the password of its user info replaced by `***`; a string that does not parse
/// as `scheme://userinfo@rest` is kept up to its scheme only, since anything after it could
/// be a secret.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::from("<not a URL>");
    };
    // User info is everything before the *last* '@': an unencoded password may hold '/',
    // '?', '#' or '@' itself, so the authority cannot be cut at the first of those first.
    // (An '@' in a path or query would only hide more than needed.)
    let (user_info, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    match user_info.map(|info| info.split_once(':')) {
        // A user name cannot hold ':'; whatever follows the first one is the password.
        Some(Some((user, _password))) => {
            out.push_str(user);
            out.push_str(":***@");
        }
        // `redis://secret@host` is a password alone in the redis crate's reading.
        Some(None) => out.push_str("***@"),
        None => {}
    }
    // A query may carry `pass=...` (the `redis+unix` form): keep the path, drop the query.
    match after.find(['?', '#']) {
        Some(q) => {
            out.push_str(&after[..q]);
            out.push_str("?***");
        }
        None => out.push_str(after),
    }
    out
}

/// The config of a [`RedisRateLimiter`](super::RedisRateLimiter): the limit itself (the
/// same [`RateLimiterConfig`] as in-process: rate, burst, `max_wait`, name and listener),
/// the fail mode, and optional local reservation.
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::RateLimiterConfig;
/// use palisade::redis::{FailMode, RedisRateLimiterConfig};
/// use std::time::Duration;
///
/// let limit = RateLimiterConfig::builder().name("per-user").rate(100, Duration::from_secs(1)).build()?;
/// let config = RedisRateLimiterConfig::builder(limit).fail_mode(FailMode::Closed).build()?;
/// assert_eq!(config.fail_mode(), FailMode::Closed);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisRateLimiterConfig {
    pub(crate) limit: RateLimiterConfig,
    pub(crate) fail_mode: FailMode,
    pub(crate) reservation: Option<(u32, Duration)>,
    // The in-process limit of `FailMode::Local`.
    pub(crate) local: Option<RateLimiterConfig>,
    // The limit in Redis's unit, microseconds: one token every `interval_us`.
    pub(crate) interval_us: u64,
}

impl RedisRateLimiterConfig {
    /// A builder around `limit`.
    pub fn builder(limit: RateLimiterConfig) -> RedisRateLimiterConfigBuilder {
        RedisRateLimiterConfigBuilder {
            limit,
            fail_mode: FailMode::default(),
            reservation: None,
        }
    }

    /// The limit the fleet shares.
    pub fn limit(&self) -> &RateLimiterConfig {
        &self.limit
    }

    /// What a call gets when Redis cannot decide it.
    pub fn fail_mode(&self) -> FailMode {
        self.fail_mode
    }

    /// Local reservation: tokens taken from Redis at once, and how long they may be spent
    /// locally. `None` when off (the default).
    pub fn reservation(&self) -> Option<(u32, Duration)> {
        self.reservation
    }
}

/// Builds a [`RedisRateLimiterConfig`].
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::RateLimiterConfig;
/// use palisade::redis::RedisRateLimiterConfig;
/// use std::time::Duration;
///
/// let limit = RateLimiterConfig::builder().rate(10, Duration::from_secs(1)).build()?;
/// let err = RedisRateLimiterConfig::builder(limit)
///     .local_reservation(0, Duration::from_millis(100))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "local_reservation");
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RedisRateLimiterConfigBuilder {
    limit: RateLimiterConfig,
    fail_mode: FailMode,
    reservation: Option<(u32, Duration)>,
}

impl RedisRateLimiterConfigBuilder {
    /// What a call gets when Redis cannot decide it. Default: [`FailMode::Open`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use palisade::redis::{FailMode, RedisRateLimiterConfig};
    /// use std::time::Duration;
    ///
    /// let limit = RateLimiterConfig::builder().rate(10, Duration::from_secs(1)).build()?;
    /// let err = RedisRateLimiterConfig::builder(limit)
    ///     .fail_mode(FailMode::Local { share: 0.0 })
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "fail_mode");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Opt-in local reservation, for a hot key: one round trip takes up to `batch` tokens,
    /// which this process then spends without asking Redis, for at most `hold` after
    /// taking them (unspent ones are then dropped, never returned). It saves up to
    /// `batch - 1` round trips in `batch` calls, and costs precision: a token is spent up to
    /// `hold` after Redis counted it, so over any span `w` the fleet admits at most what the
    /// limit allows over `w + hold` (at most `hold × rate` calls more than the plain limit),
    /// and tokens left unspent are lost to the fleet until the bucket refills. Calls that
    /// wait for their turn (`max_wait`) and weighted calls above what a reservation holds
    /// go to Redis as usual. Valid: `batch` in 2..=[`MAX_RESERVATION`] and at most the
    /// burst, `hold` above zero and at most 60 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use palisade::redis::RedisRateLimiterConfig;
    /// use std::time::Duration;
    ///
    /// let limit = RateLimiterConfig::builder().rate(1_000, Duration::from_secs(1)).build()?;
    /// let config = RedisRateLimiterConfig::builder(limit)
    ///     .local_reservation(20, Duration::from_millis(50))
    ///     .build()?;
    /// assert_eq!(config.reservation(), Some((20, Duration::from_millis(50))));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn local_reservation(mut self, batch: u32, hold: Duration) -> Self {
        self.reservation = Some((batch, hold));
        self
    }

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `fail_mode` (a local share outside (0, 1]),
    /// `local_reservation` (see [`local_reservation`](Self::local_reservation)), `rate`
    /// (faster than one call per microsecond, Redis's clock unit here) or `burst` (a bucket
    /// that takes longer than 2^50 µs, about 35 years, to refill).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use palisade::redis::RedisRateLimiterConfig;
    /// use std::time::Duration;
    ///
    /// let limit = RateLimiterConfig::builder().rate(2_000_000, Duration::from_secs(1)).build()?;
    /// let err = RedisRateLimiterConfig::builder(limit).build().unwrap_err();
    /// assert_eq!(err.field(), "rate");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn build(self) -> Result<RedisRateLimiterConfig, ConfigError> {
        let fail_mode = self.fail_mode.check("fail_mode")?;
        let limit = self.limit;
        let (count, period, burst) = (limit.count(), limit.period(), limit.burst());
        let interval_ns = period.as_nanos().div_ceil(u128::from(count));
        if interval_ns < 1_000 {
            return Err(ConfigError::new(
                "rate",
                "must be at most 1 call per microsecond in Redis (its clock's unit)",
                format_args!("{count} per {period:?}"),
            ));
        }
        // Rounded up, as in-process: never faster than asked.
        let interval_us = interval_ns.div_ceil(1_000) as u64;
        // Lua's numbers are doubles: keep every sum of times exact (below 2^53) with room
        // for a timestamp of microseconds since 1970 (about 2^51 in 2026).
        if u128::from(interval_us) * u128::from(burst) > 1 << 50 {
            return Err(ConfigError::new(
                "burst",
                "must refill within 2^50 µs, about 35 years, in Redis (burst × period / count)",
                burst,
            ));
        }
        if let Some((batch, hold)) = self.reservation {
            if !(2..=MAX_RESERVATION).contains(&batch) || batch > burst {
                return Err(ConfigError::new(
                    "local_reservation",
                    format!(
                        "needs a batch in 2..={MAX_RESERVATION} and at most the burst ({burst})"
                    ),
                    batch,
                ));
            }
            validate::duration_in("local_reservation", hold, MAX_TIMEOUT)?;
        }
        let local = match fail_mode {
            FailMode::Local { share } => Some(local_share(&limit, share)?),
            _ => None,
        };
        Ok(RedisRateLimiterConfig {
            limit,
            fail_mode,
            reservation: self.reservation,
            local,
            interval_us,
        })
    }
}

/// The in-process limit at `share` of `limit`: the burst's share (at least 1), and the
/// rate's by stretching the period (so the count stays whole), or, when that would pass
/// [`MAX_PERIOD`](crate::rate_limiter::MAX_PERIOD), by the count's share (at least 1).
fn local_share(limit: &RateLimiterConfig, share: f64) -> Result<RateLimiterConfig, ConfigError> {
    let burst = ((f64::from(limit.burst()) * share) as u32).max(1);
    // Checked: a tiny share stretches the period past what a `Duration` holds.
    let stretched = Duration::try_from_secs_f64(limit.period().as_secs_f64() / share)
        .ok()
        .filter(|d| *d <= crate::rate_limiter::MAX_PERIOD);
    let (count, period) = match stretched {
        Some(stretched) => (limit.count(), stretched),
        None => (
            ((f64::from(limit.count()) * share) as u32).max(1),
            limit.period(),
        ),
    };
    RateLimiterConfig::builder()
        .name(limit.name())
        .rate(count, period)
        .burst(burst)
        .build()
        .map_err(|e| e.in_section("fail_mode.local"))
}

/// The config of a [`RedisSessionLimiter`](super::RedisSessionLimiter): at most
/// `max_per_key` calls in flight per key across the fleet.
///
/// # Examples
///
/// ```
/// use palisade::redis::{FailMode, RedisSessionLimiterConfig};
///
/// let config = RedisSessionLimiterConfig::builder()
///     .name("sessions")
///     .max_per_key(3)
///     .fail_mode(FailMode::Local { share: 0.5 })
///     .build()?;
/// assert_eq!(config.max_per_key(), 3);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisSessionLimiterConfig {
    pub(crate) max_per_key: u32,
    pub(crate) lease_ttl: Duration,
    pub(crate) fail_mode: FailMode,
    pub(crate) telemetry: Telemetry,
}

impl RedisSessionLimiterConfig {
    /// A builder; `max_per_key` must be set before `build`.
    pub fn builder() -> RedisSessionLimiterConfigBuilder {
        RedisSessionLimiterConfigBuilder::default()
    }

    /// Calls in flight per key across the fleet.
    pub fn max_per_key(&self) -> u32 {
        self.max_per_key
    }

    /// How long a lease lives in Redis without renewal.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// What a call gets when Redis cannot decide it.
    pub fn fail_mode(&self) -> FailMode {
        self.fail_mode
    }

    /// The name the limit reports under.
    pub fn name(&self) -> &'static str {
        self.telemetry.name()
    }
}

impl fmt::Debug for RedisSessionLimiterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionLimiterConfig")
            .field("max_per_key", &self.max_per_key)
            .field("lease_ttl", &self.lease_ttl)
            .field("fail_mode", &self.fail_mode)
            .field("name", &self.name())
            .finish()
    }
}

/// Builds a [`RedisSessionLimiterConfig`].
///
/// # Examples
///
/// ```
/// use palisade::redis::RedisSessionLimiterConfig;
///
/// let err = RedisSessionLimiterConfig::builder().build().unwrap_err();
/// assert_eq!(err.field(), "max_per_key");
/// ```
#[derive(Clone, Default)]
pub struct RedisSessionLimiterConfigBuilder {
    max_per_key: Option<u32>,
    lease_ttl: Option<Duration>,
    fail_mode: FailMode,
    name: Option<Cow<'static, str>>,
    listener: Option<Arc<dyn Listener>>,
}

impl fmt::Debug for RedisSessionLimiterConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionLimiterConfigBuilder")
            .field("max_per_key", &self.max_per_key)
            .field("lease_ttl", &self.lease_ttl)
            .field("fail_mode", &self.fail_mode)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RedisSessionLimiterConfigBuilder {
    /// Calls in flight per key across the fleet. Required; valid: 1 to [`MAX_SESSIONS`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisSessionLimiterConfig;
    ///
    /// let err = RedisSessionLimiterConfig::builder().max_per_key(0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_per_key");
    /// ```
    pub fn max_per_key(mut self, n: u32) -> Self {
        self.max_per_key = Some(n);
        self
    }

    /// How long a lease lives in Redis unless renewed. A call renews its lease every third
    /// of it while it runs, so this only bounds how long a crashed process's leases hold
    /// their places. Default: [`DEFAULT_LEASE_TTL`]; valid: [`MIN_LEASE_TTL`] to
    /// [`MAX_LEASE_TTL`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisSessionLimiterConfig;
    /// use std::time::Duration;
    ///
    /// let config = RedisSessionLimiterConfig::builder()
    ///     .max_per_key(2)
    ///     .lease_ttl(Duration::from_secs(5))
    ///     .build()?;
    /// assert_eq!(config.lease_ttl(), Duration::from_secs(5));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// What a call gets when Redis cannot decide it. Default: [`FailMode::Open`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{FailMode, RedisSessionLimiterConfig};
    ///
    /// let config = RedisSessionLimiterConfig::builder().max_per_key(1).fail_mode(FailMode::Closed).build()?;
    /// assert_eq!(config.fail_mode(), FailMode::Closed);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    crate::telemetry::telemetry_setters!(DEFAULT_SESSIONS_NAME);

    /// Checks every field and returns the config.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: `max_per_key` missing, zero or above
    /// [`MAX_SESSIONS`]; `lease_ttl` outside [`MIN_LEASE_TTL`]..=[`MAX_LEASE_TTL`];
    /// `fail_mode` with a share outside (0, 1]; `name` blank.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::RedisSessionLimiterConfig;
    /// use std::time::Duration;
    ///
    /// let err = RedisSessionLimiterConfig::builder()
    ///     .max_per_key(1)
    ///     .lease_ttl(Duration::from_millis(10))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "lease_ttl");
    /// ```
    #[track_caller]
    pub fn build(self) -> Result<RedisSessionLimiterConfig, ConfigError> {
        let max_per_key = self.max_per_key.ok_or_else(|| {
            ConfigError::new("max_per_key", "is required", format_args!("nothing"))
        })?;
        if !(1..=MAX_SESSIONS).contains(&max_per_key) {
            return Err(ConfigError::new(
                "max_per_key",
                format!("must be in 1..={MAX_SESSIONS}"),
                max_per_key,
            ));
        }
        let lease_ttl = self.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
        if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&lease_ttl) {
            return Err(ConfigError::new(
                "lease_ttl",
                format!("must be in {MIN_LEASE_TTL:?}..={MAX_LEASE_TTL:?}"),
                lease_ttl,
            ));
        }
        let fail_mode = self.fail_mode.check("fail_mode")?;
        Ok(RedisSessionLimiterConfig {
            max_per_key,
            lease_ttl,
            fail_mode,
            telemetry: Telemetry::build(self.name, DEFAULT_SESSIONS_NAME, self.listener)?,
        })
    }
}
