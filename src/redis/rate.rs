//! The fleet-wide rate limiter: GCRA evaluated inside Redis, one script per decision.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::RedisLink;
use super::config::RedisRateLimiterConfig;
use super::future::{Admit, RunFuture};
use super::key::{KeySpace, RedisKey};
use super::link::{FailCounts, Failed, Link};
use super::scripts::{read_flag, read_take};
use crate::error::{LimitCause, RateLimited, Rejected, Unavailable};
use crate::keyed::{Keyed, KeyedConfig};
use crate::rate_limiter::RateLimiter;
use crate::telemetry::{FailDecision, Telemetry};

/// The most keys a local reservation keeps tokens for at once; past it, a batch's spare
/// tokens are dropped rather than kept (the memory stays bounded whatever the keys).
const STASH_KEYS: usize = 10_000;

/// A rate limit shared by every instance of a service, kept in Redis: `count` calls per
/// `period` per key across the fleet, in bursts of up to `burst`, with the same semantics,
/// the same [`Rejected::RateLimited`] and the same `retry_after` as the in-process
/// [`RateLimiter`]. Cheap to clone; clones share the link, the counters and the local
/// state (reservations, fallback).
///
/// See the [module docs](super) for the decision, the fail modes and cancellation.
///
/// # Examples
///
/// ```no_run
/// use palisade::rate_limiter::RateLimiterConfig;
/// use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1:6379/").build()?);
/// let limit = RateLimiterConfig::builder().name("per-user").rate(100, Duration::from_secs(60)).build()?;
/// let per_user = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
/// let answer = per_user.run("ada", || async { Ok::<_, palisade::Rejected>("hello") }).await?;
/// # let _ = answer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisRateLimiter {
    shared: Arc<RateShared>,
}

pub(crate) struct RateShared {
    link: Link,
    config: RedisRateLimiterConfig,
    telemetry: Telemetry,
    // Its keys in Redis and its telemetry.
    keys: KeySpace,
    local: Option<Keyed<String, RateLimiter>>,
    stash: Option<Mutex<Stashes>>,
    admitted: AtomicU64,
    limited: AtomicU64,
    reserved: AtomicU64,
    fails: FailCounts,
}

/// The reservations of every key, and when the expired ones were last dropped.
struct Stashes {
    held: HashMap<String, Stash>,
    // A full map is purged at most once per hold time: new keys that find it full of fresh
    // reservations would otherwise each walk all of it under the lock.
    purged_at: Instant,
}

/// Tokens a local reservation took and has not spent yet, spendable until `until`.
struct Stash {
    tokens: u32,
    until: Instant,
}

/// The counters of a [`RedisRateLimiter`], for this process.
///
/// # Examples
///
/// ```
/// use palisade::redis::RedisRateLimiterMetrics;
///
/// let m = RedisRateLimiterMetrics::default();
/// assert_eq!(m.admitted + m.limited, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisRateLimiterMetrics {
    /// Calls admitted (by Redis, by a reservation, or by the fail mode).
    pub admitted: u64,
    /// Calls refused over the limit (by Redis or by the local fallback).
    pub limited: u64,
    /// Calls admitted from a local reservation, with no round trip.
    pub reserved: u64,
    /// Calls admitted unchecked because Redis could not decide ([`FailMode::Open`](crate::redis::FailMode::Open)).
    pub failed_open: u64,
    /// Calls refused because Redis could not decide ([`FailMode::Closed`](crate::redis::FailMode::Closed)).
    pub failed_closed: u64,
    /// Calls decided by the local fallback ([`FailMode::Local`](crate::redis::FailMode::Local)).
    pub decided_locally: u64,
}

impl RedisRateLimiter {
    /// A fleet-wide limiter on `link` (no I/O here: the link connects on first use).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// use std::time::Duration;
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1:6379/").build()?);
    /// let limit = RateLimiterConfig::builder().name("search").rate(10, Duration::from_secs(1)).build()?;
    /// let limiter = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// assert_eq!(limiter.name(), "search");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(link: &RedisLink, config: RedisRateLimiterConfig) -> Self {
        let telemetry = config.limit.telemetry.clone();
        let keys = KeySpace::new(&link.shared.config.key_prefix, "rl", telemetry.clone());
        let local = config
            .local
            .clone()
            .map(|local| Keyed::new(KeyedConfig::default(), RateLimiter::new(local)));
        let stash = config.reservation.map(|_| {
            Mutex::new(Stashes {
                held: HashMap::new(),
                purged_at: Instant::now(),
            })
        });
        telemetry.created(crate::telemetry::PolicyKind::RateLimiter);
        RedisRateLimiter {
            shared: Arc::new(RateShared {
                link: link.shared.clone(),
                config,
                telemetry,
                keys,
                local,
                stash,
                admitted: AtomicU64::new(0),
                limited: AtomicU64::new(0),
                reserved: AtomicU64::new(0),
                fails: FailCounts::default(),
            }),
        }
    }

    /// The name the limiter reports under (its limit's).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// use std::time::Duration;
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let limit = RateLimiterConfig::builder().name("api").rate(1, Duration::from_secs(1)).build()?;
    /// assert_eq!(RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?).name(), "api");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.telemetry.name()
    }

    /// The limiter's config.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// use std::time::Duration;
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let limit = RateLimiterConfig::builder().rate(5, Duration::from_secs(1)).build()?;
    /// let limiter = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// assert_eq!(limiter.config().limit().count(), 5);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn config(&self) -> &RedisRateLimiterConfig {
        &self.shared.config
    }

    /// Takes one token for `key` now, or refuses: never waits, whatever the `max_wait`.
    ///
    /// # Errors
    ///
    /// [`Rejected::RateLimited`] with the time until the key has a token;
    /// [`Rejected::Unavailable`] when Redis cannot decide and the fail mode is
    /// [`FailMode::Closed`](crate::redis::FailMode::Closed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::rate_limiter::RateLimiterConfig;
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let limit = RateLimiterConfig::builder().rate(1, Duration::from_secs(60)).build()?;
    /// let limiter = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// limiter.try_acquire("10.0.0.7").await?;
    /// let refused = limiter.try_acquire("10.0.0.7").await.unwrap_err();
    /// assert!(refused.retry_after().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_acquire<K: RedisKey + ?Sized>(&self, key: &K) -> Admit<()> {
        self.try_acquire_n(key, 1)
    }

    /// Takes `cost` tokens for `key` now, or refuses. A cost of zero is always admitted
    /// (with no round trip).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire); a cost above the burst is refused with
    /// [`LimitCause::CostAboveBurst`] without a round trip.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::rate_limiter::RateLimiterConfig;
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let limit = RateLimiterConfig::builder().rate(1_000, Duration::from_secs(60)).build()?;
    /// let tokens = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// // A prompt of 300 tokens against a tokens-per-minute quota.
    /// tokens.try_acquire_n("tenant-7", 300).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_acquire_n<K: RedisKey + ?Sized>(&self, key: &K, cost: u32) -> Admit<()> {
        let key = self.shared.redis_key(key);
        Admit::new(self.shared.clone().take(key, cost, Duration::ZERO))
    }

    /// Takes one token for `key`, waiting for its turn up to the limit's `max_wait`; a turn
    /// further away is refused at once. A wait dropped before its turn gives the turn back
    /// (see the [module docs](super#cancellation)).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::rate_limiter::RateLimiterConfig;
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let limit = RateLimiterConfig::builder()
    ///     .rate(10, Duration::from_secs(1))
    ///     .max_wait(Duration::from_millis(500))
    ///     .build()?;
    /// let limiter = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// limiter.acquire("crawler").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn acquire<K: RedisKey + ?Sized>(&self, key: &K) -> Admit<()> {
        self.acquire_n(key, 1)
    }

    /// Takes `cost` tokens for `key`, waiting for its turn up to the limit's `max_wait`.
    ///
    /// # Errors
    ///
    /// As [`try_acquire_n`](Self::try_acquire_n).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::rate_limiter::RateLimiterConfig;
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let limit = RateLimiterConfig::builder().rate(10, Duration::from_secs(1)).max_wait(Duration::from_secs(1)).build()?;
    /// let limiter = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// limiter.acquire_n("batch-job", 5).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn acquire_n<K: RedisKey + ?Sized>(&self, key: &K, cost: u32) -> Admit<()> {
        self.admit(self.shared.redis_key(key), cost)
    }

    /// Runs the future `make` returns once `key` has a token (waiting up to `max_wait`).
    ///
    /// # Errors
    ///
    /// The call's own error, or a refusal (see [`acquire`](Self::acquire)) converted with
    /// `E: From<Rejected>`, without calling `make`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::rate_limiter::RateLimiterConfig;
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let limit = RateLimiterConfig::builder().rate(10, Duration::from_secs(1)).build()?;
    /// let per_user = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// let user = String::from("ada");
    /// let reply = per_user.run(&user, || async { Ok::<_, palisade::Rejected>(42) }).await?;
    /// assert_eq!(reply, 42);
    /// # Ok(())
    /// # }
    /// ```
    pub fn run<K, M, F, R, E>(&self, key: &K, make: M) -> RunFuture<M, F, ()>
    where
        K: RedisKey + ?Sized,
        M: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        RunFuture::new(self.acquire(key), make)
    }

    /// Runs `fut` once `key` has a token (waiting up to `max_wait`); a refused `fut` is
    /// dropped without being polled.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::rate_limiter::RateLimiterConfig;
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let limit = RateLimiterConfig::builder().rate(10, Duration::from_secs(1)).build()?;
    /// let per_user = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// let reply = per_user.run_once("ada", async { Ok::<_, palisade::Rejected>(42) }).await?;
    /// assert_eq!(reply, 42);
    /// # Ok(())
    /// # }
    /// ```
    pub fn run_once<K, F, R, E>(&self, key: &K, fut: F) -> RunFuture<impl FnOnce() -> F, F, ()>
    where
        K: RedisKey + ?Sized,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        RunFuture::new(self.acquire(key), move || fut)
    }

    /// This process's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiterConfig;
    /// use palisade::redis::{RedisConfig, RedisLink, RedisRateLimiter, RedisRateLimiterConfig};
    /// use std::time::Duration;
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let limit = RateLimiterConfig::builder().rate(5, Duration::from_secs(1)).build()?;
    /// let limiter = RedisRateLimiter::new(&link, RedisRateLimiterConfig::builder(limit).build()?);
    /// assert_eq!(limiter.metrics().admitted, 0);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn metrics(&self) -> RedisRateLimiterMetrics {
        let s = &self.shared;
        let (failed_open, failed_closed, decided_locally) = s.fails.read();
        // Relaxed: statistics, each read on its own.
        RedisRateLimiterMetrics {
            admitted: s.admitted.load(Ordering::Relaxed),
            limited: s.limited.load(Ordering::Relaxed),
            reserved: s.reserved.load(Ordering::Relaxed),
            failed_open,
            failed_closed,
            decided_locally,
        }
    }

    /// Admission of a call of `cost` for the full Redis key `key`, waiting up to the limit's
    /// `max_wait` (the tower layer's, with a cost of 1).
    pub(crate) fn admit(&self, key: String, cost: u32) -> Admit<()> {
        let max_wait = self.shared.config.limit.max_wait();
        Admit::new(self.shared.clone().take(key, cost, max_wait))
    }

    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn redis_key<K: RedisKey + ?Sized>(&self, key: &K) -> String {
        self.shared.redis_key(key)
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("config", &self.shared.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// A turn taken in Redis that the caller is still waiting for: dropped armed (the wait was
/// cancelled), it gives the turn back in a task of its own, without blocking the dropping
/// thread.
struct Turn {
    shared: Arc<RateShared>,
    key: String,
    tat: u64,
    amount_us: u64,
    armed: bool,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Without a runtime (dropped during its shutdown) the turn stays taken: the bucket
        // refills on its own, and nothing is over-admitted.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        let key = std::mem::take(&mut self.key);
        let (tat, amount) = (self.tat, self.amount_us);
        runtime.spawn(async move {
            let link = shared.link.clone();
            // A failure leaves the turn taken, the safe side.
            let _ = link
                .round_trip(
                    |mut conn| {
                        let (key, scripts) = (&key, &shared.link.scripts);
                        async move {
                            scripts
                                .give_back
                                .key(key)
                                .arg(tat)
                                .arg(amount)
                                .invoke_async(&mut conn)
                                .await
                        }
                    },
                    read_flag,
                )
                .await;
        });
    }
}

impl RateShared {
    fn redis_key<K: RedisKey + ?Sized>(&self, key: &K) -> String {
        self.keys.redis_key(key)
    }

    fn user_key<'a>(&self, redis_key: &'a str) -> &'a str {
        self.keys.user_key(redis_key)
    }

    fn telemetry_for(&self, redis_key: &str) -> Telemetry {
        self.keys.telemetry_for(redis_key)
    }

    /// Counts and reports a refusal (see `KeySpace::refuse`).
    fn refuse(&self, redis_key: &str, rejected: Rejected) -> Rejected {
        self.keys.refuse(redis_key, &self.limited, rejected)
    }

    fn admitted(&self) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Spends `cost` tokens of the key's reservation, if it holds them and they are fresh.
    fn spend_reserved(&self, redis_key: &str, cost: u32) -> bool {
        let Some(stash) = &self.stash else {
            return false;
        };
        let mut stash = stash.lock().unwrap_or_else(|p| p.into_inner());
        let Some(held) = stash.held.get_mut(redis_key) else {
            return false;
        };
        if held.until <= Instant::now() {
            stash.held.remove(redis_key);
            return false;
        }
        if held.tokens < cost {
            return false;
        }
        held.tokens -= cost;
        if held.tokens == 0 {
            stash.held.remove(redis_key);
        }
        true
    }

    /// Keeps the spare tokens of a batch for `hold`. Tokens already kept keep their own,
    /// earlier, deadline for the lot: no token is ever spent later than `hold` after Redis
    /// counted it.
    fn keep_reserved(&self, redis_key: &str, spare: u32, hold: Duration) {
        let Some(stash) = &self.stash else {
            return;
        };
        let now = Instant::now();
        let until = now + hold;
        let mut stash = stash.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = stash.held.get_mut(redis_key) {
            if held.until > now {
                held.tokens = held.tokens.saturating_add(spare);
                return;
            }
            held.tokens = spare;
            held.until = until;
            return;
        }
        if stash.held.len() >= STASH_KEYS {
            if now < stash.purged_at + hold {
                // Purged less than a hold ago: these spare tokens are dropped instead.
                return;
            }
            stash.purged_at = now;
            stash.held.retain(|_, held| held.until > now);
            if stash.held.len() >= STASH_KEYS {
                return;
            }
        }
        stash.held.insert(
            redis_key.to_string(),
            Stash {
                tokens: spare,
                until,
            },
        );
    }

    async fn take(
        self: Arc<Self>,
        key: String,
        cost: u32,
        max_wait: Duration,
    ) -> Result<(), Rejected> {
        if cost == 0 {
            self.admitted();
            return Ok(());
        }
        let name = self.telemetry.name();
        let burst = self.config.limit.burst();
        if cost > burst {
            return Err(self.refuse(
                &key,
                RateLimited::new(name, LimitCause::CostAboveBurst, None).into(),
            ));
        }
        if self.spend_reserved(&key, cost) {
            self.reserved.fetch_add(1, Ordering::Relaxed);
            self.admitted();
            return Ok(());
        }
        // A waiting call takes exactly its cost: a reservation is for calls that go at once.
        let batch = match self.config.reservation {
            Some((batch, _)) if max_wait.is_zero() => batch.max(cost),
            _ => cost,
        };
        let max_wait_us = u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX);
        let interval = self.config.interval_us;
        let link = self.link.clone();
        let reply = link
            .round_trip(
                |mut conn| {
                    let key = &key;
                    let scripts = &self.link.scripts;
                    async move {
                        scripts
                            .take
                            .key(key)
                            .arg(interval)
                            .arg(burst)
                            .arg(cost)
                            .arg(max_wait_us)
                            .arg(batch)
                            .invoke_async(&mut conn)
                            .await
                    }
                },
                |reply| read_take(reply, cost, batch, max_wait_us),
            )
            .await;
        let take = match reply {
            Ok(take) => take,
            Err(failed) => return self.fail(&key, cost, failed),
        };
        if !take.admitted {
            let after = Duration::from_micros(take.wait_us);
            return Err(self.refuse(
                &key,
                RateLimited::new(name, LimitCause::OverRate, Some(after)).into(),
            ));
        }
        if take.wait_us > 0 {
            let mut turn = Turn {
                shared: self.clone(),
                key,
                tat: take.tat,
                amount_us: u64::from(take.taken) * interval,
                armed: true,
            };
            tokio::time::sleep(Duration::from_micros(take.wait_us)).await;
            turn.armed = false;
        } else if take.taken > cost {
            if let Some((_, hold)) = self.config.reservation {
                self.keep_reserved(&key, take.taken - cost, hold);
            }
        }
        self.admitted();
        Ok(())
    }

    /// Decides a call Redis could not decide, by the fail mode.
    fn fail(&self, key: &str, cost: u32, failed: Failed) -> Result<(), Rejected> {
        let telemetry = self.telemetry_for(key);
        match failed.decide(self.config.fail_mode, &self.fails, &telemetry) {
            FailDecision::Refused => Err(self.refuse(
                key,
                Unavailable::new(self.telemetry.name(), failed.cause, failed.retry_after).into(),
            )),
            FailDecision::Local => {
                let local = self
                    .local
                    .as_ref()
                    .expect("a local fail mode builds its limiter");
                // A cost the fleet admits but above the local share's burst takes the whole
                // local bucket: refusing it as "never admitted" would be wrong once Redis
                // is back.
                let cost = self
                    .config
                    .local
                    .as_ref()
                    .map_or(cost, |l| cost.min(l.burst()));
                match local.try_acquire_n(self.user_key(key), cost) {
                    Ok(()) => {
                        self.admitted();
                        Ok(())
                    }
                    // The local limiter names the same policy; its refusal is this one's.
                    Err(rejected) => Err(self.refuse(key, rejected)),
                }
            }
            _ => {
                self.admitted();
                Ok(())
            }
        }
    }
}
