//! Per-key policies: one rate limiter, bulkhead or circuit breaker per user, client IP or
//! host, made from one prototype on a key's first call, with bounded memory.
//!
//! [`Keyed`] maps keys to instances of a policy. The first call for a key makes the key's
//! instance, a sibling of the prototype given to [`Keyed::new`] (same config, timer and
//! clock, state of its own); later calls for the key share it. So
//! `Keyed<IpAddr, RateLimiter>` limits each client to the prototype's rate,
//! `Keyed<UserId, Bulkhead>` caps each user's concurrent calls (a session limit), and
//! `Keyed<Host, CircuitBreaker>` opens the breaker of a failing host only.
//!
//! ```
//! use palisade::Rejected;
//! use palisade::keyed::{Keyed, KeyedConfig};
//! use palisade::rate_limiter::RateLimiter;
//! use std::time::Duration;
//!
//! let limiter = RateLimiter::new(RateLimiter::builder().rate(2, Duration::from_secs(1)).build()?);
//! let per_user: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
//! per_user.try_acquire("ada")?;
//! per_user.try_acquire("ada")?;
//! assert!(matches!(per_user.try_acquire("ada"), Err(Rejected::RateLimited(_))));
//! per_user.try_acquire("grace")?; // a key of its own
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Under axum (feature `axum`), [`axum::ClientIp`] and [`axum::HeaderKey`] read the key
//! of a request (the client's address, from the connection or a header your proxies
//! write; a user id or API key header) for a [`KeyedLayer`].
//!
//! # Bounded memory
//!
//! A map keeps at most [`max_keys`](KeyedConfig::max_keys) keys, and forgets a key once it
//! is **at rest** and has been **idle** for the [`idle`](KeyedConfig::idle) time:
//!
//! - at rest: no call holds the key (a call in flight, or waiting for its turn or slot,
//!   holds a lease on it), and its instance is as a fresh one would be: a rate limiter's
//!   bucket has refilled, a bulkhead has no slot taken and no caller queued, a breaker is
//!   closed or its break is over. Evicting such a key changes nothing a caller can see, so
//!   eviction never resets a limit someone is inside;
//! - idle: no call for the key ended (or, for a limiter's `try_acquire`, was admitted) for
//!   at least the idle time. A call notes its end on the map's clock's cheap lagging
//!   reading ([`Clock::now_lagging`]), at most a few times per idle time per key, and a
//!   limiter's bucket records its own last admission; eviction allows for both
//!   imprecisions, so a key is kept at least the idle time after its last call and leaves
//!   at most about an idle time and a half after it while new keys keep eviction running.
//!   Any quiet spell longer than the idle time leaves every key idle.
//!
//! Eviction runs without a task of its own: on the call that meets a new key, at most once
//! per idle time (and once per quarter of it while the map is full), or when you call
//! [`evict_idle`](Keyed::evict_idle). A call for a new key when the map is full and nothing
//! can be evicted is refused with [`Rejected::TooManyKeys`], never by growing past the cap.
//!
//! # Concurrency
//!
//! The map is [`papaya`]'s lock-free hash map: a call for a key already in the map takes no
//! lock, only the map's epoch guard, and around the policy's own atomic work two
//! read-modify-writes on the key's own lease count (take and give back, which also reads
//! the lagging clock); a rate limiter's `try_acquire` needs none, as its bucket's word itself can be retired (see below). Chosen by measurement
//! (`benches/keyed_map.rs`, lookups of an existing key on 2 threads, aggregate ns per
//! lookup): papaya 12.5, dashmap 37.6 (governor's keyed limiter uses dashmap), scc 31.6, a
//! `std` `RwLock<HashMap>` 128; on one thread they were within 25.2 to 31.2 ns. papaya is
//! the only one whose lookups got faster with a second thread: its reads write nothing
//! shared.
//!
//! A lease and eviction race on one word per key (the lease count, with a bit eviction sets
//! while no lease is held, before it looks at the policy), so eviction never removes a key
//! a call is using, and a call never uses a key eviction removed (loom model in
//! `keyed/lease.rs`). A limiter's [`try_acquire`](Keyed::try_acquire), which decides in one
//! compare-and-swap and holds nothing afterwards, skips the lease: eviction retires a full
//! bucket by moving its word to a mark in a compare-and-swap of its own, which fails if a
//! caller took a token first, and a caller that finds the mark looks the key up again
//! (loom model in `rate_limiter/gcra.rs`). A call that meets a key in the instant eviction
//! is looking at it spins until eviction has decided.
//!
//! # Cancellation
//!
//! Dropping a call's future drops the key's policy's future first (giving back its slot or
//! reserved turn, as that policy documents) and then its lease. A lease is given back
//! exactly once, on completion or drop.
//!
//! # Clone semantics
//!
//! Clones of a `Keyed` share the map: a key has one instance however many clones call it.
//! The prototype given to [`Keyed::new`] is never called; its clones elsewhere share
//! nothing with the keys' instances.
//!
//! # Names and metrics
//!
//! Every key's instance reports under the prototype's name, so events and metrics have one
//! series per policy, not one per key (the number of keys is unbounded). Ask the map for
//! one key's state ([`metrics`](Keyed::metrics)), the keys a limiter refused most
//! ([`top_limited`](Keyed::top_limited)) or the number of open breakers
//! ([`open_breakers`](Keyed::open_breakers)).
//!
//! Events carry the key beside the name ([`Event::key`](crate::telemetry::Event::key)).
//! A rejection carries the name and not the key: rejections are small `Copy` values that
//! allocate nothing, and a key is any size. The caller knows the key it asked for (the
//! tower surface's key function computed it from the request), and the listener's
//! `Rejected` event carries it. [`BulkheadFull::per_key`](crate::error::BulkheadFull::per_key)
//! says whether a key's own bulkhead refused, which [`ShedLayer`](crate::http::ShedLayer)
//! answers with 429 rather than 503.

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod config;
pub mod future;
#[cfg(feature = "tower")]
mod layer;
mod lease;
mod map;
mod policy;
/// The tower service of a [`Keyed`] map, and its future.
#[cfg(feature = "tower")]
pub mod service;

pub use config::{
    DEFAULT_IDLE, DEFAULT_MAX_KEYS, KeyedConfig, KeyedConfigBuilder, MAX_IDLE, MAX_KEYS,
};
pub use future::KeyedFuture;
#[cfg(feature = "tower")]
pub use layer::KeyedLayer;
pub use policy::PerKey;
#[cfg(feature = "tower")]
#[doc(hidden)]
pub use policy::WrapsInner;
#[cfg(feature = "tower")]
pub use service::KeyedService;

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use self::map::Shared;
use crate::bulkhead::{Bulkhead, BulkheadMetrics};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerMetrics, CircuitState};
use crate::clock::{Clock, DefaultClock};
use crate::error::Rejected;
use crate::rate_limiter::{RateLimiter, RateLimiterMetrics};
use crate::timer::Timer;

/// One instance of a policy per key, with bounded memory; see the [module docs](self).
///
/// `K` is the key (a user id, an `IpAddr`, a host name), `P` the policy
/// ([`RateLimiter`], [`Bulkhead`] or [`CircuitBreaker`]), `C` the clock that times idleness.
///
/// # Examples
///
/// ```
/// use palisade::keyed::{Keyed, KeyedConfig};
/// use palisade::bulkhead::Bulkhead;
///
/// let sessions: Keyed<u64, _> = Keyed::new(
///     KeyedConfig::builder().max_keys(100_000).build()?,
///     Bulkhead::new(Bulkhead::builder().max_concurrent(2).name("sessions").build()?),
/// );
/// assert!(sessions.is_empty());
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub struct Keyed<K, P, C = DefaultClock> {
    shared: Arc<Shared<K, P, C>>,
}

impl<K, P, C> Clone for Keyed<K, P, C> {
    fn clone(&self) -> Self {
        Keyed {
            shared: self.shared.clone(),
        }
    }
}

impl<K, P, C> fmt::Debug for Keyed<K, P, C>
where
    K: Hash + Eq + fmt::Debug + Send + Sync + 'static,
    P: PerKey,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("name", &self.name())
            .field("keys", &self.len())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<K, P> Keyed<K, P>
where
    K: Hash + Eq + fmt::Debug + Send + Sync + 'static,
    P: PerKey,
{
    /// A map whose keys each get a sibling of `prototype`, timing idleness on the
    /// [`DefaultClock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let per_host: Keyed<String, _> =
    ///     Keyed::new(KeyedConfig::default(), CircuitBreaker::new(CircuitBreaker::builder().build()?));
    /// assert_eq!(per_host.len(), 0);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(config: KeyedConfig, prototype: P) -> Self {
        Keyed::with_clock(config, prototype, DefaultClock::default())
    }
}

impl<K, P, C> Keyed<K, P, C>
where
    K: Hash + Eq + fmt::Debug + Send + Sync + 'static,
    P: PerKey,
    C: Clock,
{
    /// As [`new`](Keyed::new), timing idleness on `clock`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::FakeClock;
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let clock = FakeClock::new();
    /// let config = RateLimiter::builder().rate(1, Duration::from_secs(1)).build()?;
    /// let limiter = RateLimiter::with_timer_and_clock(config, |_: std::time::Duration| std::future::ready(()), clock.clone());
    /// let per_ip: Keyed<u32, _, _> = Keyed::with_clock(KeyedConfig::default(), limiter, clock);
    /// per_ip.try_acquire(&7)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_clock(config: KeyedConfig, prototype: P, clock: C) -> Self {
        Keyed {
            shared: Arc::new(Shared::new(config, prototype, clock)),
        }
    }

    /// The keys kept now (a snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(5, Duration::from_secs(1)).build()?);
    /// let per_ip: Keyed<u32, _> = Keyed::new(KeyedConfig::default(), limiter);
    /// per_ip.try_acquire(&1)?;
    /// per_ip.try_acquire(&2)?;
    /// assert_eq!(per_ip.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether no key is kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let map: Keyed<u8, _> = Keyed::new(KeyedConfig::default(), Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?));
    /// assert!(map.is_empty());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` has an instance now.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(5, Duration::from_secs(1)).build()?);
    /// let per_user: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
    /// per_user.try_acquire("ada")?;
    /// assert!(per_user.contains_key("ada"));
    /// assert!(!per_user.contains_key("grace"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared.map.pin().contains_key(key)
    }

    /// The map's limits.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let map: Keyed<u8, _> = Keyed::new(KeyedConfig::builder().max_keys(9).build()?, Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?));
    /// assert_eq!(map.config().max_keys(), 9);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn config(&self) -> &KeyedConfig {
        &self.shared.config
    }

    /// The name every key's instance reports under: the prototype's.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let map: Keyed<u8, _> = Keyed::new(KeyedConfig::default(), Bulkhead::new(Bulkhead::builder().max_concurrent(1).name("sessions").build()?));
    /// assert_eq!(map.name(), "sessions");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        policy::sealed::Sealed::policy_name(&self.shared.prototype)
    }

    /// Evicts the keys at rest and idle now, without waiting for a new key to trigger it
    /// (call it from a periodic task to give memory back sooner); returns how many left.
    /// Returns 0 at once while another eviction runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::FakeClock;
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let clock = FakeClock::new();
    /// let config = RateLimiter::builder().rate(10, Duration::from_secs(1)).build()?;
    /// let limiter = RateLimiter::with_timer_and_clock(config, |_: std::time::Duration| std::future::ready(()), clock.clone());
    /// let idle = Duration::from_secs(60);
    /// let per_ip: Keyed<u32, _, _> =
    ///     Keyed::with_clock(KeyedConfig::builder().idle(idle).build()?, limiter, clock.clone());
    /// per_ip.try_acquire(&1)?;
    /// assert_eq!(per_ip.evict_idle(), 0); // used a moment ago
    /// for _ in 0..3 {
    ///     clock.advance(idle);
    ///     per_ip.evict_idle();
    /// }
    /// assert!(per_ip.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn evict_idle(&self) -> usize {
        self.shared.sweep(true)
    }

    /// Reads `key`'s instance, if it has one, without making one or counting as a use.
    fn peek<Q, R>(&self, key: &Q, read: impl FnOnce(&P) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.shared.map.pin();
        map.get(key).map(|entry| read(&entry.policy))
    }
}

impl<K, T, C, KC> Keyed<K, RateLimiter<T, C>, KC>
where
    K: Hash + Eq + fmt::Debug + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    C: Clock + Clone,
    KC: Clock,
{
    /// Takes one token from `key`'s bucket, or refuses at once; see
    /// [`RateLimiter::try_acquire`].
    ///
    /// # Errors
    ///
    /// [`Rejected::RateLimited`] over the key's rate; [`Rejected::TooManyKeys`] for a new
    /// key when the map is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(60)).build()?);
    /// let per_ip: Keyed<[u8; 4], _> = Keyed::new(KeyedConfig::default(), limiter);
    /// per_ip.try_acquire(&[10, 0, 0, 1])?;
    /// let refused = per_ip.try_acquire(&[10, 0, 0, 1]).unwrap_err();
    /// assert!(refused.retry_after().is_some());
    /// per_ip.try_acquire(&[10, 0, 0, 2])?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire<Q>(&self, key: &Q) -> Result<(), Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.try_acquire_n(key, 1)
    }

    /// Takes `cost` tokens from `key`'s bucket, or refuses at once; see
    /// [`RateLimiter::try_acquire_n`].
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire); a cost above the burst is never admitted.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(10, Duration::from_secs(1)).build()?);
    /// let per_user: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
    /// per_user.try_acquire_n("ada", 10)?;
    /// assert!(per_user.try_acquire_n("ada", 1).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire_n<Q>(&self, key: &Q, cost: u32) -> Result<(), Rejected>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // No lease: the decision is one compare-and-swap on the bucket, which fails once
        // eviction has retired the bucket (see `rate_limiter::gcra`).
        self.shared
            .unleased(key, |limiter| limiter.try_acquire_unleased(cost))?
    }

    /// One key's limiter state, if the key has one.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(3, Duration::from_secs(1)).build()?);
    /// let per_user: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
    /// per_user.try_acquire("ada")?;
    /// assert_eq!(per_user.metrics("ada").map(|m| m.tokens), Some(2));
    /// assert!(per_user.metrics("grace").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics<Q>(&self, key: &Q) -> Option<RateLimiterMetrics>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek(key, RateLimiter::metrics)
    }

    /// The `n` keys with the most refused calls, most first, with their counts (keys with
    /// none left out). Walks the whole map: for a report, not for every call.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(60)).build()?);
    /// let per_ip: Keyed<u32, _> = Keyed::new(KeyedConfig::default(), limiter);
    /// for _ in 0..3 { let _ = per_ip.try_acquire(&1); }
    /// for _ in 0..2 { let _ = per_ip.try_acquire(&2); }
    /// let _ = per_ip.try_acquire(&3);
    /// assert_eq!(per_ip.top_limited(5), vec![(1, 2), (2, 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn top_limited(&self, n: usize) -> Vec<(K, u64)>
    where
        K: Clone,
    {
        let map = self.shared.map.pin();
        let mut counts: Vec<(K, u64)> = map
            .iter()
            .filter_map(|(key, entry)| {
                let limited = entry.policy.metrics().limited;
                (limited > 0).then(|| (key.clone(), limited))
            })
            .collect();
        counts.sort_by_key(|&(_, limited)| std::cmp::Reverse(limited));
        counts.truncate(n);
        counts
    }
}

impl<K, T, C, KC> Keyed<K, RateLimiter<T, C>, KC>
where
    K: Hash + Eq + fmt::Debug + Send + Sync + 'static,
    T: Timer + Clone,
    C: Clock + Clone,
    KC: Clock,
{
    /// Runs the future `make` returns once `key`'s limiter gives it a turn (waiting up to
    /// the limiter's `max_wait`); see [`RateLimiter::run`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Rejected;
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(1)).build()?);
    /// let per_user: Keyed<String, _> = Keyed::new(KeyedConfig::default(), limiter);
    /// assert_eq!(per_user.run("ada", || async { Ok::<_, Rejected>(1) }).await?, 1);
    /// let refused = per_user.run("ada", || async { Ok::<_, Rejected>(2) }).await;
    /// assert!(matches!(refused, Err(Rejected::RateLimited(_))));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn run<Q, M, F, R, E>(
        &self,
        key: &Q,
        make: M,
    ) -> KeyedFuture<'_, RateLimiter<T, C>, crate::rate_limiter::future::RunFuture<'_, M, F, T, C>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        M: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        match self.shared.lease(key) {
            Ok(lease) => KeyedFuture::running(lease.policy().run(make), lease),
            Err(rejected) => KeyedFuture::refused(rejected),
        }
    }
}

impl<K, T, KC> Keyed<K, Bulkhead<T>, KC>
where
    K: Hash + Eq + fmt::Debug + Send + Sync + 'static,
    T: Timer + Clone,
    KC: Clock,
{
    /// Runs the future `make` returns in one of `key`'s slots; see [`Bulkhead::run`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Rejected;
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sessions: Keyed<String, _> = Keyed::new(
    ///     KeyedConfig::default(),
    ///     Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?),
    /// );
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let first = sessions.run("ada", || async { rx.await.ok(); Ok::<_, Rejected>(()) });
    /// let second = async {
    ///     // Polled after `first` took ada's one slot.
    ///     let refused = sessions.run("ada", || async { Ok::<_, Rejected>(()) }).await;
    ///     let other = sessions.run("grace", || async { Ok::<_, Rejected>(()) }).await; // her own slot
    ///     tx.send(()).unwrap();
    ///     (refused, other)
    /// };
    /// let (first, (refused, other)) = tokio::join!(first, second);
    /// assert!(matches!(refused, Err(Rejected::BulkheadFull(f)) if f.per_key()));
    /// assert!(first.is_ok() && other.is_ok());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn run<Q, M, F, R, E>(
        &self,
        key: &Q,
        make: M,
    ) -> KeyedFuture<'_, Bulkhead<T>, crate::bulkhead::future::RunFuture<'_, M, F, T>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        M: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        match self.shared.lease(key) {
            Ok(lease) => KeyedFuture::running(lease.policy().run(make), lease),
            Err(rejected) => KeyedFuture::refused(rejected),
        }
    }

    /// One key's bulkhead state, if the key has one.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::bulkhead::Bulkhead;
    ///
    /// let slots = Bulkhead::with_timer(Bulkhead::builder().max_concurrent(2).build()?, |_: std::time::Duration| std::future::ready(()));
    /// let sessions: Keyed<String, _> = Keyed::new(KeyedConfig::default(), slots);
    /// assert!(sessions.metrics("ada").is_none());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn metrics<Q>(&self, key: &Q) -> Option<BulkheadMetrics>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek(key, Bulkhead::metrics)
    }
}

impl<K, C, KC> Keyed<K, CircuitBreaker<C>, KC>
where
    K: Hash + Eq + fmt::Debug + Send + Sync + 'static,
    C: Clock + Clone,
    KC: Clock,
{
    /// Runs the future `make` returns if `key`'s breaker admits it, and records its
    /// outcome there; see [`CircuitBreaker::run`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::Error;
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let per_host: Keyed<String, _> = Keyed::new(
    ///     KeyedConfig::default(),
    ///     CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?),
    /// );
    /// let refused = || async { Err::<(), _>(Error::Inner(std::io::Error::other("refused"))) };
    /// let down = per_host.run("a.example", refused).await;
    /// assert!(down.is_err());
    /// assert_eq!(per_host.state("a.example"), Some(CircuitState::Open));
    /// assert_eq!(per_host.open_breakers(), 1);
    /// let up = per_host.run("b.example", || async { Ok::<_, Error<std::io::Error>>(()) }).await;
    /// assert!(up.is_ok()); // b's breaker is closed
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn run<Q, M, F, R, E>(
        &self,
        key: &Q,
        make: M,
    ) -> KeyedFuture<'_, CircuitBreaker<C>, crate::circuit_breaker::future::RunFuture<'_, F, C>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        M: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        match self.shared.lease(key) {
            Ok(lease) => KeyedFuture::running(lease.policy().run(make), lease),
            Err(rejected) => KeyedFuture::refused(rejected),
        }
    }

    /// The state of `key`'s breaker, if the key has one (see [`CircuitBreaker::state`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let per_host: Keyed<String, _> = Keyed::new(KeyedConfig::default(), CircuitBreaker::new(CircuitBreaker::builder().build()?));
    /// assert_eq!(per_host.state("a.example"), None);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn state<Q>(&self, key: &Q) -> Option<CircuitState>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek(key, CircuitBreaker::state)
    }

    /// One key's breaker counts, if the key has one.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let per_host: Keyed<String, _> = Keyed::new(KeyedConfig::default(), CircuitBreaker::new(CircuitBreaker::builder().build()?));
    /// assert!(per_host.metrics("a.example").is_none());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn metrics<Q>(&self, key: &Q) -> Option<CircuitBreakerMetrics>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek(key, CircuitBreaker::metrics)
    }

    /// How many keys' breakers are not closed now (open, half-open or isolated): the count
    /// a health report shows. Walks the whole map.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::keyed::{Keyed, KeyedConfig};
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let per_host: Keyed<String, _> = Keyed::new(KeyedConfig::default(), CircuitBreaker::new(CircuitBreaker::builder().build()?));
    /// assert_eq!(per_host.open_breakers(), 0);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn open_breakers(&self) -> usize {
        let map = self.shared.map.pin();
        map.iter()
            .filter(|(_, entry)| entry.policy.state() != CircuitState::Closed)
            .count()
    }

    /// The keys whose breakers are not closed now, at most `n` of them; how many are not
    /// closed, how many of those are open or isolated (not half-open: a breaker past its
    /// break is waiting for a probe), and the number of keys kept; for a health report.
    /// Walks the whole map.
    pub(crate) fn open_keys(&self, n: usize) -> (Vec<K>, usize, usize, usize)
    where
        K: Clone,
    {
        let map = self.shared.map.pin();
        let (mut keys, mut not_closed, mut down, mut total) = (Vec::new(), 0, 0, 0);
        for (key, entry) in map.iter() {
            total += 1;
            let state = entry.policy.state();
            if state != CircuitState::Closed {
                not_closed += 1;
                if matches!(state, CircuitState::Open | CircuitState::Isolated) {
                    down += 1;
                }
                if keys.len() < n {
                    keys.push(key.clone());
                }
            }
        }
        (keys, not_closed, down, total)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
