//! Fallback: when a call fails, serve the next best thing: another source, the last good
//! answer, or a default.
//!
//! # Semantics
//!
//! [`Fallback::run`] makes the primary call. Chained on its future, alternatives are tried
//! in the order written, each only if everything before it failed:
//!
//! - [`or_else`](future::RunFuture::or_else): an async closure that receives the failed
//!   result (a secondary source, a degraded computation);
//! - [`or_cached`](future::RunFuture::or_cached): the last successful primary result, if
//!   younger than the configured [`cache_max_age`](FallbackConfigBuilder::cache_max_age) (the
//!   primary's successes are stored as they pass; only a success of the primary call itself
//!   is cached, never a fallback's); an empty or stale cache passes the failure on;
//! - [`or_value`](future::RunFuture::or_value): a fixed value.
//!
//! What counts as a failure comes from a [`Classifier`](crate::Classifier), by default
//! [`AllErrors`](crate::AllErrors): every `Err`, our own rejections included (a full bulkhead
//! or an open circuit is exactly when a fallback should answer). Choose another with
//! [`classify`](future::RunFuture::classify), for instance to fall back on an `Ok(503)` or
//! only on timeouts. It grades a level's result once, and only when a later level is there
//! to decide about: when every level fails, the result of the last one is returned as it
//! is. A failure an empty cache passed on is not graded again.
//!
//! Each level used counts in [`metrics`](Fallback::metrics) and then reports
//! [`FallbackUsed`](crate::telemetry::EventKind::FallbackUsed) with its number (1 for the
//! first alternative), before the alternative runs: a listener or an alternative that panics
//! finds the policy's counts and cache settled.
//!
//! The tower layer, [`FallbackLayer`], runs the same chain with the inner service as the
//! primary, by the same rules (one implementation serves both). Its alternatives get a copy
//! of the request, so requests must be `Clone`, and one of them can be another service
//! ([`or_service`](FallbackLayer::or_service)).
//!
//! # Examples
//!
//! ```
//! use palisade::fallback::Fallback;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade::ConfigError> {
//! let fallback = Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(60)).build()?);
//!
//! // The primary works: its answer is returned and remembered.
//! let fresh: Result<String, &str> = fallback.run(|| async { Ok("fresh".to_string()) }).or_cached().await;
//! assert_eq!(fresh.as_deref(), Ok("fresh"));
//!
//! // The primary and the secondary fail: the cached answer is served.
//! let degraded: Result<String, &str> = fallback
//!     .run(|| async { Err("primary down") })
//!     .or_else(|_failed| async { Err("replica down") })
//!     .or_cached()
//!     .or_value("static default".to_string())
//!     .await;
//! assert_eq!(degraded.as_deref(), Ok("fresh"));
//! assert_eq!(fallback.metrics().used, 2, "the replica, then the cache");
//! # Ok(())
//! # }
//! ```
//!
//! The same handle as a tower layer:
//!
//! ```
//! use palisade::fallback::Fallback;
//! use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[cfg(feature = "tower")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let fallback = Fallback::new(Fallback::builder().build()?);
//! let replica = tower::service_fn(|id: u32| async move { Ok::<_, BoxError>(format!("replica {id}")) });
//! let mut svc = ServiceBuilder::new()
//!     .layer(fallback.layer().or_service(replica).or_value("unknown".to_string()))
//!     .service_fn(|_: u32| async { Err::<String, BoxError>("primary down".into()) });
//! assert_eq!(svc.ready().await?.call(7).await?, "replica 7");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tower"))] fn main() {}
//! ```
//!
//! # Cancellation
//!
//! Dropping the future drops whichever level is running; nothing is cached for it and no
//! later level is counted or reported (a level already started stays counted).
//!
//! # Clone semantics
//!
//! Clones share the cache and the counters: every call site using clones of one handle, by
//! closure or through a layer, serves (and refreshes) the same last good answer.

mod cache;
mod chain;
mod config;
pub mod future;
#[cfg(feature = "tower")]
mod layer;
mod metrics;
#[cfg(feature = "tower")]
mod service;

pub use config::{DEFAULT_NAME, FallbackConfig, FallbackConfigBuilder, MAX_CACHE_AGE};
#[cfg(feature = "tower")]
pub use layer::FallbackLayer;
pub use metrics::FallbackMetrics;
#[cfg(feature = "tower")]
pub use service::FallbackService;

use std::fmt;
use std::future::Future;

use self::cache::{Cache, clone_held};
use self::future::RunFuture;
use crate::clock::{Clock, DefaultClock};
use crate::sync::{Arc, AtomicU64, Ordering};

/// A fallback policy for results of type `T`. Cheap to clone; clones share the cache and
/// the counters.
///
/// # Examples
///
/// ```
/// use palisade::fallback::Fallback;
///
/// let fallback: Fallback<String> = Fallback::new(Fallback::builder().name("profile").build()?);
/// assert_eq!(fallback.name(), "profile");
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub struct Fallback<T, C = DefaultClock> {
    shared: Arc<Shared<T, C>>,
}

impl<T, C> Clone for Fallback<T, C> {
    fn clone(&self) -> Self {
        Fallback {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T, C> {
    cache: Cache<T>,
    clock: C,
    telemetry: crate::telemetry::Telemetry,
    // Counted on the fallback path only (never for a primary call that works), `Relaxed`:
    // independent tallies read by snapshots.
    used: AtomicU64,
    cache_hits: AtomicU64,
}

impl<T> Fallback<T> {
    /// A fallback from `config`, timing its cache with the [`DefaultClock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Fallback, FallbackConfig};
    /// use std::time::Duration;
    ///
    /// let config = FallbackConfig::builder().cache_max_age(Duration::from_secs(30)).build()?;
    /// let fallback: Fallback<String> = Fallback::new(config);
    /// assert_eq!(fallback.cached(), None);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(config: FallbackConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl Fallback<()> {
    /// A builder for a fallback's config (shortcut for [`FallbackConfig::builder`]; the
    /// config does not depend on the type of the results).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use std::time::Duration;
    ///
    /// let config = Fallback::builder().cache_max_age(Duration::from_secs(30)).build()?;
    /// assert_eq!(config.cache_max_age(), Some(Duration::from_secs(30)));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn builder() -> FallbackConfigBuilder {
        FallbackConfig::builder()
    }
}

impl<T, C> Fallback<T, C> {
    /// A fallback from `config` that times its cache with `clock`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::MonotonicClock;
    /// use palisade::fallback::Fallback;
    ///
    /// let fallback: Fallback<u32, _> = Fallback::with_clock(Fallback::builder().build()?, MonotonicClock::new());
    /// # let _ = fallback;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn with_clock(config: FallbackConfig, clock: C) -> Self {
        let fallback = Fallback {
            shared: Arc::new(Shared {
                cache: Cache::new(config.cache_max_age),
                clock,
                telemetry: config.telemetry,
                used: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
            }),
        };
        fallback
            .shared
            .telemetry
            .created(crate::telemetry::PolicyKind::Fallback);
        fallback
    }

    /// The name the policy reports under.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    ///
    /// let fallback: Fallback<String> = Fallback::new(Fallback::builder().name("avatar").build()?);
    /// assert_eq!(fallback.name(), "avatar");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.telemetry.name()
    }

    /// Makes the primary call; chain alternatives on the returned future.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let out: Result<u32, &str> = fallback.run(|| async { Err("down") }).or_value(0).await;
    /// assert_eq!(out, Ok(0));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the level running; nothing else happens.
    pub fn run<M, F, E>(&self, make: M) -> RunFuture<'_, F, T, C>
    where
        M: FnOnce() -> F,
        F: Future<Output = Result<T, E>>,
    {
        RunFuture::new(self, make())
    }

    /// A tower layer applying this fallback (add alternatives to it); the same as
    /// [`FallbackLayer::new`] on a clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use tower::{BoxError, ServiceBuilder, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let fallback = Fallback::new(Fallback::builder().build()?);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(fallback.layer().or_value("default"))
    ///     .service_fn(|_: ()| async { Err::<&str, BoxError>("down".into()) });
    /// assert_eq!(svc.ready().await?.call(()).await?, "default");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tower")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
    pub fn layer(&self) -> FallbackLayer<T, C> {
        FallbackLayer::new(self.clone())
    }

    /// A snapshot of the policy: levels used and cache hits, shared by every clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use std::time::Duration;
    ///
    /// let fallback: Fallback<u8> = Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(5)).build()?);
    /// let m = fallback.metrics();
    /// assert_eq!((m.used, m.cache_hits, m.cache_max_age), (0, 0, Some(Duration::from_secs(5))));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn metrics(&self) -> FallbackMetrics {
        FallbackMetrics {
            used: self.shared.used.load(Ordering::Relaxed),
            cache_hits: self.shared.cache_hits.load(Ordering::Relaxed),
            cache_max_age: self.shared.cache.max_age(),
        }
    }
}

impl<T: Clone, C: Clock> Fallback<T, C> {
    /// The cached value, if one is stored and younger than the max age. Neither counted nor
    /// reported.
    ///
    /// `T::clone` runs after the cache is unlocked: a slow or panicking `Clone` holds up no
    /// other call and leaves the cache as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let fallback = Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(5)).build()?);
    /// assert_eq!(fallback.cached(), None);
    /// let _: Result<u8, ()> = fallback.run(|| async { Ok(7) }).or_cached().await;
    /// assert_eq!(fallback.cached(), Some(7));
    /// # Ok(())
    /// # }
    /// ```
    pub fn cached(&self) -> Option<T> {
        let held = self.shared.cache.lookup(self.shared.clock.now())?;
        Some(clone_held(&held))
    }
}

impl<T, C> fmt::Debug for Fallback<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.shared.telemetry.name())
            .field("cache_max_age", &self.shared.cache.max_age())
            .finish_non_exhaustive()
    }
}
