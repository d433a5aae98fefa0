//! The fleet-wide session (concurrency) limit: at most N leases per key, held in Redis.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::RedisLink;
use super::config::{FailMode, RedisSessionLimiterConfig};
use super::future::{Admit, RunFuture};
use super::key::{KeySpace, RedisKey};
use super::link::{FailCounts, Link};
use super::scripts::{RenewReply, read_acquired, read_flag, read_renewed};
use crate::error::{BulkheadFull, FullCause, Rejected, Unavailable};
use crate::telemetry::{FailDecision, Telemetry};

/// At most `max_per_key` calls in flight per key across every instance of a service (the
/// seeds' per-user session limit), kept in Redis. Cheap to clone; clones share the link,
/// the counters and the local fallback.
///
/// A call holds a [`SessionLease`] while it runs: a member of the key's sorted set in
/// Redis with an expiry, renewed every third of the lease TTL while the call runs, removed
/// when it ends. A refusal is [`Rejected::BulkheadFull`] marked
/// [`per_key`](crate::error::BulkheadFull::per_key) (the in-process session limit's, which
/// [`ShedLayer`](crate::http::ShedLayer) answers with 429), without a `retry_after`: when a
/// place frees up depends on other calls. A refused call is not queued: the fleet has no
/// shared queue; retry with a delay if the caller should wait.
///
/// See the [module docs](super) for the fail modes and what happens when a process
/// crashes.
///
/// # Examples
///
/// ```no_run
/// use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1:6379/").build()?);
/// let sessions = RedisSessionLimiter::new(
///     &link,
///     RedisSessionLimiterConfig::builder().name("sessions").max_per_key(2).build()?,
/// );
/// let report = sessions.run("ada", || async { Ok::<_, palisade::Rejected>("long report") }).await?;
/// # let _ = report;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSessionLimiter {
    shared: Arc<SessionShared>,
}

pub(crate) struct SessionShared {
    link: Link,
    config: RedisSessionLimiterConfig,
    telemetry: Telemetry,
    // Its keys in Redis and its telemetry.
    keys: KeySpace,
    // Leases this process holds per key while Redis is down (`FailMode::Local`); an entry
    // is removed when its count drops to zero, so the map holds only keys in use.
    local: Mutex<HashMap<String, u32>>,
    local_max: u32,
    // Lease ids are this process's random prefix and a counter: unique across the fleet
    // without coordination.
    id_prefix: u64,
    next_id: AtomicU64,
    admitted: AtomicU64,
    refused: AtomicU64,
    renewed: AtomicU64,
    lost: AtomicU64,
    fails: FailCounts,
}

/// The counters of a [`RedisSessionLimiter`], for this process.
///
/// # Examples
///
/// ```
/// use palisade::redis::RedisSessionLimiterMetrics;
///
/// assert_eq!(RedisSessionLimiterMetrics::default().admitted, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSessionLimiterMetrics {
    /// Calls that got a lease (from Redis, the local fallback or failing open).
    pub admitted: u64,
    /// Calls refused because their key held every place.
    pub refused: u64,
    /// Lease renewals that landed.
    pub renewed: u64,
    /// Leases found gone at renewal with no room to add them back (expired while Redis was
    /// unreachable, or lost by a restarted server while the key filled up): the call goes
    /// on uncounted by the fleet until a renewal finds room again.
    pub lost: u64,
    /// Calls admitted unchecked because Redis could not decide ([`FailMode::Open`]).
    pub failed_open: u64,
    /// Calls refused because Redis could not decide ([`FailMode::Closed`]).
    pub failed_closed: u64,
    /// Calls decided by the local fallback ([`FailMode::Local`]).
    pub decided_locally: u64,
}

/// A place in a fleet-wide session limit, held until dropped.
///
/// Dropping it releases the place: the removal from Redis runs in a task of its own, so the
/// dropping thread never blocks (without a tokio runtime, as during its shutdown, the lease
/// is left to expire after its TTL). [`release`](Self::release) does the same and waits
/// for it. While held, a task renews the lease every third of its TTL.
///
/// # Examples
///
/// ```no_run
/// # use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
/// # let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(1).build()?);
/// let lease = sessions.acquire("ada").await?;
/// // ... stream the user's download ...
/// lease.release().await;
/// # Ok(())
/// # }
/// ```
#[must_use = "the place is released when the lease is dropped"]
pub struct SessionLease {
    held: Held,
}

enum Held {
    /// A lease in Redis, renewed by `renewal` until released.
    Redis {
        shared: Arc<SessionShared>,
        key: String,
        id: String,
        renewal: tokio::task::JoinHandle<()>,
    },
    /// A place in the local fallback's count.
    Local {
        shared: Arc<SessionShared>,
        key: String,
    },
    /// Admitted unchecked (fail open): nothing to release.
    Unchecked,
    /// Released already.
    Gone,
}

impl SessionLease {
    /// Releases the place and waits until Redis has removed the lease (or the round trip
    /// failed, in which case the lease expires after its TTL). Returns whether a lease was
    /// removed from Redis.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(1).build()?);
    /// let lease = sessions.acquire("ada").await?;
    /// assert!(lease.release().await);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn release(mut self) -> bool {
        match std::mem::replace(&mut self.held, Held::Gone) {
            Held::Redis {
                shared,
                key,
                id,
                renewal,
            } => {
                renewal.abort();
                // Awaited before the removal: a renewal caught mid-poll on another worker
                // could otherwise queue its command behind the removal's and add the lease
                // back until its TTL. Once the task is gone, whatever it sent is ahead.
                let _ = renewal.await;
                shared.remove(key, id).await
            }
            other => {
                self.held = other;
                false
            }
        }
    }

    /// Whether the lease is kept in Redis (not a fail mode's decision).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(1).build()?);
    /// let lease = sessions.acquire("ada").await?;
    /// println!("checked by the fleet: {}", lease.is_fleet_wide());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_fleet_wide(&self) -> bool {
        matches!(self.held, Held::Redis { .. })
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Held::Gone) {
            Held::Redis {
                shared,
                key,
                id,
                renewal,
            } => {
                renewal.abort();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        // As in `release`: the renewal is gone before the removal is sent.
                        let _ = renewal.await;
                        shared.remove(key, id).await;
                    });
                }
            }
            Held::Local { shared, key } => shared.release_local(&key),
            Held::Unchecked | Held::Gone => {}
        }
    }
}

impl fmt::Debug for SessionLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, key) = match &self.held {
            Held::Redis { key, .. } => ("redis", Some(key.as_str())),
            Held::Local { key, .. } => ("local", Some(key.as_str())),
            Held::Unchecked => ("unchecked", None),
            Held::Gone => ("released", None),
        };
        f.debug_struct("SessionLease")
            .field("kind", &kind)
            .field("key", &key)
            .finish()
    }
}

impl RedisSessionLimiter {
    /// A fleet-wide session limit on `link` (no I/O here).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let sessions = RedisSessionLimiter::new(
    ///     &link,
    ///     RedisSessionLimiterConfig::builder().name("sessions").max_per_key(3).build()?,
    /// );
    /// assert_eq!(sessions.name(), "sessions");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(link: &RedisLink, config: RedisSessionLimiterConfig) -> Self {
        let telemetry = config.telemetry.clone();
        let keys = KeySpace::new(&link.shared.config.key_prefix, "ss", telemetry.clone());
        let local_max = match config.fail_mode {
            FailMode::Local { share } => ((f64::from(config.max_per_key) * share) as u32).max(1),
            _ => config.max_per_key,
        };
        telemetry.created(crate::telemetry::PolicyKind::Bulkhead);
        RedisSessionLimiter {
            shared: Arc::new(SessionShared {
                link: link.shared.clone(),
                config,
                telemetry,
                keys,
                local: Mutex::new(HashMap::new()),
                local_max,
                id_prefix: crate::rng::Rng::next_u64(&mut crate::rng::SeededRng::from_entropy()),
                next_id: AtomicU64::new(0),
                admitted: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                renewed: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                fails: FailCounts::default(),
            }),
        }
    }

    /// The name the limit reports under.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let config = RedisSessionLimiterConfig::builder().name("uploads").max_per_key(1).build()?;
    /// assert_eq!(RedisSessionLimiter::new(&link, config).name(), "uploads");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.telemetry.name()
    }

    /// The limit's config.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let config = RedisSessionLimiterConfig::builder().max_per_key(4).build()?;
    /// assert_eq!(RedisSessionLimiter::new(&link, config).config().max_per_key(), 4);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn config(&self) -> &RedisSessionLimiterConfig {
        &self.shared.config
    }

    /// Takes a place for `key`, or refuses at once.
    ///
    /// # Errors
    ///
    /// [`Rejected::BulkheadFull`] (per key) when the key holds every place across the
    /// fleet; [`Rejected::Unavailable`] when Redis cannot decide and the fail mode is
    /// [`FailMode::Closed`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(1).build()?);
    /// let first = sessions.acquire("ada").await?;
    /// assert!(sessions.acquire("ada").await.is_err(), "one session per user");
    /// drop(first);
    /// # Ok(())
    /// # }
    /// ```
    pub fn acquire<K: RedisKey + ?Sized>(&self, key: &K) -> Admit<SessionLease> {
        let key = self.shared.redis_key(key);
        Admit::new(self.shared.clone().acquire(key))
    }

    /// Runs the future `make` returns while holding a place for `key`.
    ///
    /// # Errors
    ///
    /// The call's own error, or a refusal (see [`acquire`](Self::acquire)) converted with
    /// `E: From<Rejected>`, without calling `make`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(2).build()?);
    /// let out = sessions.run("ada", || async { Ok::<_, palisade::Rejected>(7) }).await?;
    /// assert_eq!(out, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn run<K, M, F, R, E>(&self, key: &K, make: M) -> RunFuture<M, F, SessionLease>
    where
        K: RedisKey + ?Sized,
        M: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        RunFuture::new(self.acquire(key), make)
    }

    /// Runs `fut` while holding a place for `key`; a refused `fut` is dropped without being
    /// polled.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// # let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(2).build()?);
    /// let out = sessions.run_once("ada", async { Ok::<_, palisade::Rejected>(7) }).await?;
    /// assert_eq!(out, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn run_once<K, F, R, E>(
        &self,
        key: &K,
        fut: F,
    ) -> RunFuture<impl FnOnce() -> F, F, SessionLease>
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
    /// use palisade::redis::{RedisConfig, RedisLink, RedisSessionLimiter, RedisSessionLimiterConfig};
    ///
    /// let link = RedisLink::new(RedisConfig::builder().url("redis://127.0.0.1/").build()?);
    /// let sessions = RedisSessionLimiter::new(&link, RedisSessionLimiterConfig::builder().max_per_key(1).build()?);
    /// assert_eq!(sessions.metrics().refused, 0);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn metrics(&self) -> RedisSessionLimiterMetrics {
        let s = &self.shared;
        let (failed_open, failed_closed, decided_locally) = s.fails.read();
        // Relaxed: statistics, each read on its own.
        RedisSessionLimiterMetrics {
            admitted: s.admitted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            renewed: s.renewed.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            failed_open,
            failed_closed,
            decided_locally,
        }
    }

    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn admit(&self, key: String) -> Admit<SessionLease> {
        Admit::new(self.shared.clone().acquire(key))
    }

    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn redis_key<K: RedisKey + ?Sized>(&self, key: &K) -> String {
        self.shared.redis_key(key)
    }
}

impl fmt::Debug for RedisSessionLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionLimiter")
            .field("config", &self.shared.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// A lease taken in Redis whose acquisition future has not handed it over yet: dropped
/// armed (the caller went away mid-round-trip, after Redis admitted), it releases it.
struct Pending {
    shared: Arc<SessionShared>,
    key: String,
    id: String,
    armed: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let (key, id) = (std::mem::take(&mut self.key), std::mem::take(&mut self.id));
            runtime.spawn(async move {
                shared.remove(key, id).await;
            });
        }
    }
}

impl SessionShared {
    fn redis_key<K: RedisKey + ?Sized>(&self, key: &K) -> String {
        self.keys.redis_key(key)
    }

    fn telemetry_for(&self, redis_key: &str) -> Telemetry {
        self.keys.telemetry_for(redis_key)
    }

    /// Counts and reports a refusal (see `KeySpace::refuse`).
    fn refuse(&self, redis_key: &str, rejected: Rejected) -> Rejected {
        self.keys.refuse(redis_key, &self.refused, rejected)
    }

    fn full(&self, max: u32) -> Rejected {
        BulkheadFull::new(self.telemetry.name(), max, FullCause::QueueFull)
            .for_key()
            .into()
    }

    async fn acquire(self: Arc<Self>, key: String) -> Result<SessionLease, Rejected> {
        // Relaxed: only uniqueness matters.
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016x}-{n:x}", self.id_prefix);
        let max = self.config.max_per_key;
        let ttl_ms = u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        // Armed before the round trip: a caller that goes away after Redis admitted, before
        // the reply came back, still has its lease removed.
        let mut pending = Pending {
            shared: self.clone(),
            key: key.clone(),
            id: id.clone(),
            armed: true,
        };
        let link = self.link.clone();
        let reply = link
            .round_trip(
                |mut conn| {
                    let (key, id, scripts) = (&key, &id, &self.link.scripts);
                    async move {
                        scripts
                            .acquire
                            .key(key)
                            .arg(max)
                            .arg(ttl_ms)
                            .arg(id)
                            .invoke_async(&mut conn)
                            .await
                    }
                },
                read_acquired,
            )
            .await;
        match reply {
            Ok(acquired) if acquired.admitted => {
                // Spawned while `pending` still owns the lease: a spawn that panics (polled
                // outside a runtime) leaves it to be removed.
                let renewal = tokio::spawn(self.clone().renew(key.clone(), id.clone()));
                pending.armed = false;
                self.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(SessionLease {
                    held: Held::Redis {
                        shared: self,
                        key,
                        id,
                        renewal,
                    },
                })
            }
            Ok(_) => {
                pending.armed = false;
                Err(self.refuse(&key, self.full(max)))
            }
            // A round trip that failed may still have added the lease (a reply lost on the
            // way back: a timeout, a malformed reply, a connection that died after the
            // script was written): `pending` removes it, best effort. When nothing can have
            // been added (no attempt reached Redis, or the script failed, its writes coming
            // after its last check), no removal is sent, which would only fail again and
            // count twice against the link.
            Err(failed) => {
                if !failed.may_have_run {
                    pending.armed = false;
                }
                let telemetry = self.telemetry_for(&key);
                match failed.decide(self.config.fail_mode, &self.fails, &telemetry) {
                    FailDecision::Refused => {
                        let down = Unavailable::new(
                            self.telemetry.name(),
                            failed.cause,
                            failed.retry_after,
                        );
                        Err(self.refuse(&key, down.into()))
                    }
                    FailDecision::Local => {
                        if self.take_local(&key) {
                            self.admitted.fetch_add(1, Ordering::Relaxed);
                            Ok(SessionLease {
                                held: Held::Local {
                                    shared: self.clone(),
                                    key,
                                },
                            })
                        } else {
                            Err(self.refuse(&key, self.full(self.local_max)))
                        }
                    }
                    _ => {
                        self.admitted.fetch_add(1, Ordering::Relaxed);
                        Ok(SessionLease {
                            held: Held::Unchecked,
                        })
                    }
                }
            }
        }
    }

    fn take_local(&self, key: &str) -> bool {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let held = local.entry(key.to_string()).or_insert(0);
        if *held >= self.local_max {
            if *held == 0 {
                local.remove(key);
            }
            return false;
        }
        *held += 1;
        true
    }

    fn release_local(&self, key: &str) {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = local.get_mut(key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                local.remove(key);
            }
        }
    }

    /// Renews the lease every third of its TTL until aborted (by the lease's release). A
    /// failed renewal is tried again at the next tick: with a third of the TTL between them,
    /// two may fail before the lease runs out. A lease the server lost while its call runs
    /// (a restart without persistence, a failover) is added back when its key has room, so
    /// the call is counted again; while the key has none, it is counted as lost and tried
    /// again at each tick.
    async fn renew(self: Arc<Self>, key: String, id: String) {
        let every = self.config.lease_ttl / 3;
        let ttl_ms = u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let max = self.config.max_per_key;
        let mut lost = false;
        loop {
            tokio::time::sleep(every).await;
            let link = self.link.clone();
            let renewed = link
                .round_trip(
                    |mut conn| {
                        let (key, id, scripts) = (&key, &id, &self.link.scripts);
                        async move {
                            scripts
                                .renew
                                .key(key)
                                .arg(ttl_ms)
                                .arg(id)
                                .arg(max)
                                .invoke_async(&mut conn)
                                .await
                        }
                    },
                    read_renewed,
                )
                .await;
            match renewed {
                Ok(RenewReply::Kept | RenewReply::AddedBack) => {
                    self.renewed.fetch_add(1, Ordering::Relaxed);
                    lost = false;
                }
                Ok(RenewReply::Lost) => {
                    // Counted once per loss, not once per tick.
                    if !lost {
                        self.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    lost = true;
                }
                // The link recorded it; the next tick tries again.
                Err(_) => {}
            }
        }
    }

    /// Removes a lease from Redis; whether it was there.
    async fn remove(self: Arc<Self>, key: String, id: String) -> bool {
        let link = self.link.clone();
        link.round_trip(
            |mut conn| {
                let (key, id) = (&key, &id);
                async move {
                    ::redis::cmd("ZREM")
                        .arg(key)
                        .arg(id)
                        .query_async(&mut conn)
                        .await
                }
            },
            read_flag,
        )
        .await
        .unwrap_or(false)
    }
}
