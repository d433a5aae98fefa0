//! Fleet-wide limits kept in Redis: one rate limit and one session (concurrency) limit
//! shared by every instance of a service.
//!
//! A service on ten machines with an in-process limit of 100 calls a second admits 1000.
//! [`RedisRateLimiter`] and [`RedisSessionLimiter`] keep the count in Redis instead, per key
//! (a user, an IP, a tenant), with the in-process limits' semantics and rejections, so a
//! caller switches from [`Keyed`](crate::keyed::Keyed) to them without touching call sites:
//! both have `run(&key, || ..)`, and a tower layer from a key function
//! ([`RedisRateLimiter::layer`], like [`Keyed::layer`](crate::keyed::Keyed::layer)).
//!
//! ```no_run
//! use palisade::rate_limiter::RateLimiterConfig;
//! use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1:6379/").build()?);
//! let limit = RateLimiterConfig::builder().name("per-user").rate(100, Duration::from_secs(1)).build()?;
//! let per_user = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
//! per_user.run("ada", || async { Ok::<_, palisade::Rejected>(()) }).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # The decisions
//!
//! - **Rate**: GCRA, as in-process, evaluated inside Redis by one Lua script per decision
//!   (`EVALSHA`; on `NOSCRIPT`, after a restart or a flush, the script is loaded and sent
//!   again). The key holds the bucket's theoretical arrival time in microseconds of the
//!   **server's** clock (`TIME`), so instances whose clocks disagree still agree. The key's
//!   TTL is the time until its bucket is full again: an idle key vanishes by itself, and a
//!   vanished key is a full bucket. A refusal is [`Rejected::RateLimited`](crate::Rejected::RateLimited) with
//!   `retry_after`, as in-process; weighted calls take several tokens; a cost above the
//!   burst is refused without a round trip. Rates are in whole microseconds per token, so
//!   at most a million calls a second per key.
//! - **Sessions**: a sorted set per key whose members are leases scored by their expiry
//!   (server time again). One script takes a lease if the key holds fewer than the limit,
//!   after dropping expired ones; one command (`ZREM`) releases it. A lease is renewed every
//!   third of its TTL while its call runs, so only a crashed process's leases run out, after
//!   their TTL. The key expires with its last lease.
//! - **Keys**: `{prefix}:rl:{policy}:{key}` and `{prefix}:ss:{policy}:{key}`, from the
//!   link's [`key_prefix`](RedisConfigBuilder::key_prefix), the policy's name and the
//!   caller's [`RedisKey`] (a string, an IP, an integer, or `Option` of one). Give limits
//!   names without `:`, so that no name and key of one limit spell another's.
//!
//! Redis 5.0 or later (scripts replicated by their effects, so a script may read `TIME`
//! before it writes); a single server or a primary with replicas, not Redis Cluster.
//!
//! # When Redis fails
//!
//! Every round trip goes through the [`RedisLink`]: a per-round-trip timeout, and a circuit
//! breaker of its own that opens after consecutive failures, so an outage costs each call a
//! fast local decision rather than a timeout. A call Redis cannot decide (refused
//! connection, no reply within the timeout, a server or script error, a malformed reply,
//! the breaker open) is decided by its limit's [`FailMode`]:
//!
//! | Mode | The call | Reported |
//! |---|---|---|
//! | [`Open`](FailMode::Open) (default) | admitted unchecked | [`EventKind::LinkFailed`](crate::telemetry::EventKind::LinkFailed), decided `Admitted` |
//! | [`Closed`](FailMode::Closed) | refused with [`Rejected::Unavailable`](crate::Rejected::Unavailable) (503 through [`ShedLayer`](crate::http::ShedLayer)), not "over the limit" | `LinkFailed`, decided `Refused` |
//! | [`Local { share }`](FailMode::Local) | decided by an in-process limit at `share` of the fleet's | `LinkFailed`, decided `Local` |
//!
//! The local fallback counts only this process's calls, and only while Redis is down: leases
//! it granted are not in Redis, so for as long as those calls run after Redis is back, the
//! fleet may hold up to `max_per_key` plus them. Leases Redis lost in an outage (a restart
//! without persistence, a failover) are added back by their next renewal when their key
//! has room. [`HealthRegistry::redis`](crate::health::HealthRegistry::redis) shows the
//! link's state.
//! The link connects on first use and reconnects by itself (the redis crate's connection
//! manager, one multiplexed connection shared by every call).
//!
//! # Local reservation
//!
//! A hot key costs a round trip per call. With
//! [`local_reservation(batch, hold)`](RedisRateLimiterConfigBuilder::local_reservation), a
//! round trip takes up to `batch` tokens at once and this process spends the spare ones
//! without asking, for at most `hold`. The overshoot is bounded: every token was within the
//! limit when Redis counted it and is spent at most `hold` later (plus the reply's one-way
//! trip), so over any span `w` the fleet admits at most what the limit allows over
//! `w + hold`. Unspent tokens are dropped after `hold` (never handed back), which can only
//! under-admit. A process keeps reservations for at most 10 000 keys at once; past that,
//! a batch's spare tokens are dropped.
//!
//! # Cancellation
//!
//! Dropping an admission future never counts against the link's breaker, and never leaves
//! a place taken for long:
//! - a call waiting for its turn (`max_wait`) gives the turn back, provided no later call
//!   took a turn behind it (as in-process);
//! - a session lease that Redis granted after the caller left is removed;
//! - a rate decision Redis had already made when the caller left stays made: the token is
//!   spent (the safe side; the reply that would have said which instant it took never
//!   arrived, so there is nothing exact to give back).
//!
//! Releases and give-backs run in tasks of their own, never blocking the dropping thread;
//! without a tokio runtime (during its shutdown) they are left to the TTLs.

//! # Secrets
//!
//! The URL's password appears in no `Debug` output, event, error or health reason: configs
//! show it as `***`, and the link's failure texts are redacted. A config file may name an
//! environment variable that holds the URL instead (`url_env`), and a serialized config
//! writes the URL redacted (see `palisade::config`, feature `serde`).
//!
//! # Clone semantics
//!
//! Every handle is a cheap clone sharing its state: clones of a [`RedisLink`] share the
//! connection and the breaker; clones of a limit share its counters and local state.

mod config;
pub mod future;
mod key;
#[cfg(feature = "tower")]
mod layer;
mod link;
mod rate;
mod scripts;
#[cfg(feature = "tower")]
pub mod service;
mod session;
#[cfg(test)]
mod tests;

#[cfg(feature = "serde")]
pub(crate) use config::redact;
pub use config::{
    DEFAULT_BREAKER_BREAK, DEFAULT_BREAKER_FAILURES, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX,
    DEFAULT_LEASE_TTL, DEFAULT_LINK_NAME, DEFAULT_ROUND_TRIP_TIMEOUT, DEFAULT_SESSIONS_NAME,
    FailMode, MAX_LEASE_TTL, MAX_RESERVATION, MAX_SESSIONS, MAX_TIMEOUT, MIN_LEASE_TTL,
    RedisConfig, RedisConfigBuilder, RedisRateLimiterConfig, RedisRateLimiterConfigBuilder,
    RedisSessionLimiterConfig, RedisSessionLimiterConfigBuilder,
};
pub use key::RedisKey;
#[cfg(feature = "tower")]
pub use layer::{FleetLimit, RedisLimitLayer};
pub use rate::{RedisRateLimiter, RedisRateLimiterMetrics};
#[cfg(feature = "tower")]
pub use service::RedisLimitService;
pub use session::{RedisSessionLimiter, RedisSessionLimiterMetrics, SessionLease};

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::error::LinkFailure;

use self::link::LinkShared;

/// The connection to Redis that fleet-wide limits share: the redis crate's connection
/// manager (one multiplexed connection, reconnecting by itself), a round-trip timeout and a
/// circuit breaker of its own. Cheap to clone; clones share all of it.
///
/// Building it does no I/O and needs no runtime: it connects on the first round trip.
///
/// # Examples
///
/// ```
/// use palisade::redis::{RedisConfig, RedisLink};
///
/// let link = RedisLink::new(RedisConfig::builder().url("redis://:pw@127.0.0.1:6379/").build()?);
/// assert_eq!(link.metrics().round_trips, 0);
/// assert!(!format!("{link:?}").contains("pw@"));
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisLink {
    pub(crate) shared: Arc<LinkShared>,
}

/// A snapshot of a [`RedisLink`].
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::CircuitState;
/// use palisade::redis::{RedisConfig, RedisLink};
///
/// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
/// assert_eq!(link.metrics().state, CircuitState::Closed);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLinkMetrics {
    /// The link's breaker: closed while round trips succeed, open after consecutive
    /// failures (no round trip is tried until it half-opens).
    pub state: CircuitState,
    /// Round trips sent (decisions, releases, renewals, pings).
    pub round_trips: u64,
    /// Round trips that failed (timeouts, connection and server errors, malformed replies).
    pub failures: u64,
    /// The last failure and its text (with any URL's password redacted), if any.
    pub last_failure: Option<(LinkFailure, String)>,
}

impl RedisLink {
    /// A link from `config` (no I/O: it connects on first use).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLink};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1:6379/").build()?);
    /// assert_eq!(link.name(), "redis");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(config: RedisConfig) -> Self {
        RedisLink {
            shared: Arc::new(LinkShared::new(config)),
        }
    }

    /// The link's name (its breaker's).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLink};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").name("limits").build()?);
    /// assert_eq!(link.name(), "limits");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.breaker.name()
    }

    /// The link's config.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLink};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// assert_eq!(link.config().key_prefix(), "palisade");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// The link's own breaker (for a health report, or to [`isolate`](CircuitBreaker::isolate)
    /// Redis by hand: every limit then decides by its fail mode).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitState;
    /// use palisade::redis::{RedisConfig, RedisLink};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// link.breaker().isolate();
    /// assert_eq!(link.metrics().state, CircuitState::Isolated);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.shared.breaker
    }

    /// A snapshot of the link's state and counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLink};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// assert_eq!(link.metrics().last_failure, None);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn metrics(&self) -> RedisLinkMetrics {
        RedisLinkMetrics {
            state: self.shared.state(),
            round_trips: self.shared.round_trips(),
            failures: self.shared.failures(),
            last_failure: self.shared.last_failure(),
        }
    }

    /// Sends `PING` through the link (its breaker and timeout) and returns how long the
    /// round trip took: a readiness probe, or a baseline for a decision's latency.
    ///
    /// # Errors
    ///
    /// Why the round trip failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::redis::{RedisConfig, RedisLink};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let took = link.ping().await?;
    /// println!("redis answered in {took:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn ping(&self) -> Result<Duration, LinkFailure> {
        let started = Instant::now();
        self.shared
            .round_trip(
                |mut conn| async move { ::redis::cmd("PING").query_async(&mut conn).await },
                |reply| match reply {
                    ::redis::Value::SimpleString(s) if s == "PONG" => Ok(()),
                    ::redis::Value::BulkString(s) if s == b"PONG" => Ok(()),
                    _ => Err(LinkFailure::MalformedReply),
                },
            )
            .await
            .map_err(|failed| failed.cause)?;
        Ok(started.elapsed())
    }
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shared, f)
    }
}
