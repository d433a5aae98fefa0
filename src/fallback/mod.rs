//! Fallback: when a call fails, serve the next best thing: another source, the last good
//! answer, or a default.
//!
//! # Semantics
//!
//! [`Fallback::run`] makes the primary call. Chained on its future, alternatives are tried
//! in the order written, each only if everything before it failed:
//!
//! - [`or_else`](future::Chain::or_else): an async closure that receives the failed result
//!   (a secondary source, a degraded computation);
//! - [`or_cached`](future::Chain::or_cached): the last successful primary result, if younger
//!   than the configured [`cache_max_age`](FallbackConfigBuilder::cache_max_age) (the
//!   primary's successes are stored as they pass; only a success of the primary call itself
//!   is cached, never a fallback's);
//! - [`or_value`](future::Chain::or_value): a fixed value.
//!
//! What counts as a failure comes from a [`Classifier`](crate::Classifier), by default
//! [`AllErrors`]: every `Err`, our own rejections included (a full bulkhead
//! or an open circuit is exactly when a fallback should answer). Choose another with
//! [`classify`](future::Primary::classify) before chaining, for instance to fall back on an `Ok(503)`
//! or only on timeouts. When every level fails, the result of the last one is returned.
//!
//! Each level used reports [`FallbackUsed`](crate::telemetry::EventKind::FallbackUsed) with its
//! number (1 for the first alternative).
//!
//! # Examples
//!
//! ```
//! use palisade::fallback::{Chain, Fallback};
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
//! # Ok(())
//! # }
//! ```
//!
//! As a tower layer, [`FallbackLayer`] runs the same chain with the inner service as the
//! primary; its alternatives get a copy of the request (so requests must be `Clone`), and
//! one of them can be another service ([`or_service`](FallbackLayer::or_service)).
//!
//! # Cancellation
//!
//! Dropping the future drops whichever level is running; nothing is cached or reported for
//! it.
//!
//! # Clone semantics
//!
//! Clones share the cache: every call site using clones of one handle serves (and refreshes)
//! the same last good answer.

mod config;
pub mod future;
#[cfg(feature = "tower")]
pub mod layer;

pub use config::{DEFAULT_NAME, FallbackConfig, FallbackConfigBuilder, MAX_CACHE_AGE};
pub use future::{Chain, OrCached, OrElse, OrValue, Primary};
#[cfg(feature = "tower")]
pub use layer::{FallbackLayer, FallbackService};

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::classify::AllErrors;
use crate::clock::{Clock, DefaultClock, Ticks};
use crate::sync::{Arc, Mutex};
use crate::telemetry::{EventKind, Telemetry};

/// A fallback policy for results of type `T`. Cheap to clone; clones share the cache.
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
    max_age: Option<Duration>,
    // The last good primary result and when it was stored.
    cache: Mutex<Option<(T, Ticks)>>,
    clock: C,
    telemetry: Telemetry,
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
                max_age: config.cache_max_age,
                cache: Mutex::new(None),
                clock,
                telemetry: config.telemetry,
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
    /// use palisade::fallback::{Chain, Fallback};
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
    pub fn run<M, F, E>(&self, make: M) -> Primary<'_, F, T, C, AllErrors>
    where
        M: FnOnce() -> F,
        F: Future<Output = Result<T, E>>,
    {
        Primary::new(self, make(), AllErrors)
    }

    fn report(&self, level: u8) {
        self.shared
            .telemetry
            .emit(|| EventKind::FallbackUsed { level });
    }
}

impl<T: Clone, C: Clock> Fallback<T, C> {
    /// The cached value, if one is stored and younger than the max age.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::{Chain, Fallback};
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
        let max_age = self.shared.max_age?;
        let now = self.shared.clock.now();
        let slot = self.shared.cache.lock();
        slot.as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) <= max_age)
            .map(|(value, _)| value.clone())
    }

    fn store(&self, value: &T) {
        if self.shared.max_age.is_some() {
            // Cloned before the lock: `T::clone` is user code, which must not run under the
            // cache's lock (a panic there leaves the cache as it was either way).
            let value = value.clone();
            let now = self.shared.clock.now();
            *self.shared.cache.lock() = Some((value, now));
        }
    }
}

impl<T, C> fmt::Debug for Fallback<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.shared.telemetry.name())
            .field("cache_max_age", &self.shared.max_age)
            .finish_non_exhaustive()
    }
}
