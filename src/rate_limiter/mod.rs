//! Rate limiter: admit calls at `count` per `period` on average, in bursts of up to
//! `burst`, so a caller stays inside a dependency's quota (an API's requests per minute) or
//! a server sheds a client's excess before it costs anything.
//!
//! # Semantics
//!
//! A [`RateLimiter`] is a token bucket of `burst` tokens that refills one token every
//! `period / count`, kept as the generic cell rate algorithm (GCRA) in one atomic word: no
//! refill task, no lock, one clock reading per decision in the steady state: the exact
//! one while the limiter is not limiting (a full bucket counts from the exact time), the
//! clock's cheap lagging one while it refuses (as for an open breaker). A call takes one token
//! ([`try_acquire_n`](RateLimiter::try_acquire_n) and [`acquire_n`](RateLimiter::acquire_n)
//! take several, for weighted calls). When the bucket holds too few:
//!
//! - with no `max_wait` (the default), the call is refused at once with
//!   [`Rejected::RateLimited`], whose [`retry_after`](Rejected::retry_after) says when the
//!   same call would be admitted;
//! - with a `max_wait`, a call whose turn comes within it waits for it (its turn is taken
//!   when it asks, so callers are served in the order they asked); one whose turn is
//!   further away is refused at once, with that `retry_after`.
//!
//! A cost above the burst is never admitted, however long the caller would wait: it is
//! refused with [`LimitCause::CostAboveBurst`](crate::error::LimitCause::CostAboveBurst) and no `retry_after`.
//!
//! **What "the rate" bounds.** Over any span of time `w`, at most `burst + w / interval`
//! calls are admitted, where `interval = period / count` (rounded up to a whole nanosecond,
//! so never shorter). A bucket left alone refills to its burst and no further, so no idle
//! span, however long, lets more than `burst` calls through at once. With the default burst
//! of `count`, a period right after a quiet spell can therefore see up to about `2 × count`
//! calls. To hold a hard quota of `n` calls in *every* window of `period` (an API that
//! counts that way), keep `burst + count ≤ n`: for example `rate(n / 2, period)` with
//! `burst(n / 2)`, or `rate(n, period)` with `burst(1)` for calls spread evenly.
//!
//! The bound takes the clock at its word that its lagging reading trails the exact one by
//! at most its [`max_lag`](crate::clock::Clock::max_lag) (16 ms for the default clock on
//! Linux: the kernel's coarse clock must tick). Should the kernel's timekeeping stall for
//! longer (a virtual CPU held back by its host), a limiter that is limiting may admit up to
//! the excess stall over `max_lag` divided by the interval more, once per stall; a limiter
//! that is not limiting reads the exact clock and is not affected.
//!
//! # Examples
//!
//! ```
//! use palisade::{Rejected, rate_limiter::RateLimiter};
//! use std::time::Duration;
//!
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade::ConfigError> {
//! // An API that allows 60 requests a minute, 10 at once.
//! let limiter = RateLimiter::new(
//!     RateLimiter::builder().name("llm").rate(60, Duration::from_secs(60)).burst(10).build()?,
//! );
//! let out: Result<&str, Rejected> = limiter.run(|| async { Ok("answer") }).await;
//! assert_eq!(out, Ok("answer"));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))] fn main() {}
//! ```
//!
//! As a tower layer (the same handle, the same bucket):
//!
//! ```
//! use palisade::rate_limiter::RateLimiter;
//! use std::time::Duration;
//! use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[cfg(all(feature = "tokio", feature = "tower"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let limiter = RateLimiter::new(RateLimiter::builder().rate(100, Duration::from_secs(1)).build()?);
//! let mut svc = ServiceBuilder::new()
//!     .layer(limiter.layer())
//!     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) });
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "tokio", feature = "tower")))] fn main() {}
//! ```
//!
//! # Tower readiness
//!
//! [`RateLimiterService`]'s `poll_ready` takes the next call's turn first, then asks the
//! inner service, holding the turn meanwhile. A turn within `max_wait` makes `poll_ready`
//! `Pending` until it comes. A refusal is not a readiness error (tower treats those as
//! fatal): `poll_ready` returns `Ready(Ok(()))` at once, without asking the inner service,
//! and the next `call` fails with [`Rejected::RateLimited`] without calling it, counted
//! and reported once. A refusal holds nothing and is not kept: the next `poll_ready` asks
//! again. In a server, put [`ShedLayer`](crate::http::ShedLayer) above it to answer
//! refusals with `429 Too Many Requests` and `Retry-After`.
//!
//! # Cancellation
//!
//! A call dropped while it waits for its turn (or a service dropped holding one, waiting or
//! not yet called) gives the turn back, so the next caller finds
//! the bucket as if it had never asked, provided no caller took a later turn meanwhile.
//! When one did, the turn stays taken: moving the bucket back under a caller already
//! waiting would let a newcomer go at the same instant as that caller, over the rate. A
//! refusal takes nothing.
//!
//! # Listeners
//!
//! As everywhere in the crate ([user code runs last](crate::telemetry#user-code-runs-last)),
//! the bucket has changed before a listener hears of a refusal
//! ([`EventKind::Rejected`](crate::telemetry::EventKind::Rejected)), so a panicking listener
//! leaves nothing taken that should not be.
//!
//! # Clone semantics
//!
//! Clones share the bucket and the counters: clone the handle into every place that spends
//! the same quota.

mod config;
pub mod future;
pub(crate) mod gcra;
#[cfg(feature = "tower")]
mod layer;
mod metrics;
#[cfg(feature = "tower")]
mod service;
mod shared;

pub use config::{
    DEFAULT_NAME, MAX_BURST, MAX_PERIOD, RateLimiterConfig, RateLimiterConfigBuilder,
};
#[cfg(feature = "tower")]
pub use layer::RateLimiterLayer;
pub use metrics::RateLimiterMetrics;
#[cfg(feature = "tower")]
pub use service::RateLimiterService;

use std::fmt;
use std::future::Future;

use crate::clock::{Clock, DefaultClock};
use crate::error::Rejected;
use crate::sync::Arc;
use crate::timer::{DefaultTimer, Timer};

use self::future::{Acquire, RunFuture};
use self::shared::{Shared, Turn};

/// A rate limiter. Cheap to clone; clones share the bucket.
///
/// # Examples
///
/// ```
/// use palisade::rate_limiter::RateLimiter;
/// use std::time::Duration;
///
/// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(60)).build()?);
/// limiter.try_acquire()?;
/// let refused = limiter.try_acquire().unwrap_err();
/// assert!(refused.retry_after().is_some_and(|d| d > Duration::from_secs(59)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RateLimiter<T = DefaultTimer, C = DefaultClock> {
    shared: Arc<Shared>,
    timer: T,
    clock: C,
}

impl<T: Clone, C: Clone> Clone for RateLimiter<T, C> {
    fn clone(&self) -> Self {
        RateLimiter {
            shared: self.shared.clone(),
            timer: self.timer.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl RateLimiter {
    /// A rate limiter from `config`, on the [`DefaultTimer`] and the [`DefaultClock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::{RateLimiter, RateLimiterConfig};
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiterConfig::builder().rate(5, Duration::from_secs(1)).build()?);
    /// assert_eq!(limiter.metrics().tokens, 5);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(config: RateLimiterConfig) -> Self {
        Self::with_timer_and_clock(config, DefaultTimer::default(), DefaultClock::default())
    }

    /// A builder for a rate limiter's config (shortcut for [`RateLimiterConfig::builder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let config = RateLimiter::builder().rate(100, Duration::from_secs(1)).build()?;
    /// assert_eq!(config.burst(), 100, "a whole period's calls by default");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn builder() -> RateLimiterConfigBuilder {
        RateLimiterConfig::builder()
    }
}

impl<T, C> RateLimiter<T, C> {
    /// A rate limiter that waits on `timer` and reads `clock`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::FakeClock;
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let clock = FakeClock::new();
    /// let config = RateLimiter::builder().rate(1, Duration::from_secs(1)).build()?;
    /// // Any `Fn(Duration) -> impl Future` is a timer; this limiter never waits anyway.
    /// let timer = |_: Duration| std::future::ready(());
    /// let limiter = RateLimiter::with_timer_and_clock(config, timer, clock.clone());
    /// limiter.try_acquire()?;
    /// assert!(limiter.try_acquire().is_err());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(limiter.try_acquire().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_timer_and_clock(config: RateLimiterConfig, timer: T, clock: C) -> Self {
        let limiter = RateLimiter {
            shared: Arc::new(Shared::new(config)),
            timer,
            clock,
        };
        limiter
            .shared
            .telemetry
            .created(crate::telemetry::PolicyKind::RateLimiter);
        limiter
    }

    /// A limiter with this one's config, timer and clock and a full bucket of its own, for
    /// a per-key map (no `Created` event: it is part of the map).
    pub(crate) fn sibling(&self, key: Option<std::sync::Arc<str>>) -> Self
    where
        T: Clone,
        C: Clone,
    {
        RateLimiter {
            shared: Arc::new(Shared::for_key(self.shared.config.clone(), key)),
            timer: self.timer.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The config this rate limiter was built from.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(3, Duration::from_secs(1)).build()?);
    /// assert_eq!(limiter.config().count(), 3);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn config(&self) -> &RateLimiterConfig {
        &self.shared.config
    }

    /// The name the rate limiter reports under.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().name("api").rate(3, Duration::from_secs(1)).build()?);
    /// assert_eq!(limiter.name(), "api");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.telemetry.name()
    }
}

impl<T, C: Clock> RateLimiter<T, C> {
    /// Takes one token now, or refuses: never waits, whatever the `max_wait`.
    ///
    /// # Errors
    ///
    /// [`Rejected::RateLimited`] with the time until a token is free.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(2, Duration::from_secs(1)).build()?);
    /// assert!(limiter.try_acquire().is_ok() && limiter.try_acquire().is_ok());
    /// assert!(limiter.try_acquire().is_err(), "the burst of 2 is spent");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<(), Rejected> {
        self.try_acquire_n(1)
    }

    /// Takes `cost` tokens now, or refuses, for a call that weighs more than one (a batch,
    /// a large request). A cost of zero is always admitted.
    ///
    /// # Errors
    ///
    /// [`Rejected::RateLimited`]: with the time until `cost` tokens are free, or, for a
    /// cost above the burst, [`LimitCause::CostAboveBurst`](crate::error::LimitCause::CostAboveBurst) and no `retry_after`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, error::LimitCause, rate_limiter::RateLimiter};
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(10, Duration::from_secs(1)).build()?);
    /// limiter.try_acquire_n(7)?;
    /// assert!(limiter.try_acquire_n(4).is_err(), "3 tokens left");
    /// let Err(Rejected::RateLimited(never)) = limiter.try_acquire_n(11) else { unreachable!() };
    /// assert_eq!(never.cause(), LimitCause::CostAboveBurst);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // `#[inline(always)]`: inlined into the caller, the cost of one folds into the decision
    // and the rejection is built in the caller's frame.
    #[inline(always)]
    pub fn try_acquire_n(&self, cost: u32) -> Result<(), Rejected> {
        match self.shared.take(&self.clock, cost, 0) {
            Turn::Now { .. } => {
                self.shared.admitted();
                Ok(())
            }
            Turn::Refused(refusal) => Err(self.shared.refuse(refusal)),
            Turn::Later { .. } => unreachable!("no wait was allowed"),
        }
    }

    /// A snapshot of the limiter's counters and bucket.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(4, Duration::from_secs(1)).build()?);
    /// limiter.try_acquire()?;
    /// assert_eq!(limiter.metrics().tokens, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> RateLimiterMetrics {
        let s = &self.shared;
        RateLimiterMetrics {
            admitted: s.admitted.sum(),
            limited: s.limited.sum(),
            tokens: s.gcra.tokens(self.clock.now().as_nanos(), s.rate),
            burst: s.rate.burst(),
        }
    }

    pub(crate) fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.shared.telemetry
    }

    /// Retires the bucket for its per-key map if it has been full for `idle`: no token
    /// spent that has not come back, no turn reserved, and no admission within `idle` (each
    /// moves the TAT past its own clock reading, which may lag the exact clock by the
    /// clock's `max_lag`). Reads the exact clock.
    pub(crate) fn try_retire(&self, idle: std::time::Duration) -> bool {
        let behind = crate::clock::saturating_nanos(idle)
            .saturating_add(crate::clock::saturating_nanos(self.clock.max_lag()));
        let now = self.clock.now().as_nanos();
        // Before the clock's origin plus `idle`, no bucket can have been idle that long.
        now >= behind && self.shared.gcra.try_retire(now - behind)
    }

    /// [`try_acquire_n`](Self::try_acquire_n) for a per-key map that holds no lease on the
    /// key: `None` when the map retired the bucket meanwhile.
    #[inline]
    pub(crate) fn try_acquire_unleased(&self, cost: u32) -> Option<Result<(), Rejected>> {
        Some(match self.shared.take_unleased(&self.clock, cost, 0)? {
            Turn::Now { .. } => {
                self.shared.admitted();
                Ok(())
            }
            Turn::Refused(refusal) => Err(self.shared.refuse(refusal)),
            Turn::Later { .. } => unreachable!("no wait was allowed"),
        })
    }
}

impl<T: Timer, C: Clock> RateLimiter<T, C> {
    /// Waits for one token, up to the limiter's `max_wait`; refuses at once when the turn
    /// is further away.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RateLimiter::new(
    ///     RateLimiter::builder().rate(1, Duration::from_secs(1)).max_wait(Duration::from_secs(5)).build()?,
    /// );
    /// limiter.acquire().await?;
    /// limiter.acquire().await?; // a second later
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn acquire(&self) -> Acquire<'_, T, C> {
        Acquire::new(self, 1)
    }

    /// Waits for `cost` tokens, up to the limiter's `max_wait`. A cost above the burst is
    /// refused at once with [`LimitCause::CostAboveBurst`](crate::error::LimitCause::CostAboveBurst).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RateLimiter::new(
    ///     RateLimiter::builder().rate(10, Duration::from_secs(1)).max_wait(Duration::from_secs(1)).build()?,
    /// );
    /// limiter.acquire_n(10).await?;
    /// let start = tokio::time::Instant::now();
    /// limiter.acquire_n(5).await?; // half a second's tokens
    /// assert_eq!(start.elapsed(), Duration::from_millis(500));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn acquire_n(&self, cost: u32) -> Acquire<'_, T, C> {
        Acquire::new(self, cost)
    }

    /// Runs the call that `make` starts once it has a turn (a token now, or after a wait
    /// within `max_wait`); a refused call is never started.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, rate_limiter::RateLimiter};
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(5, Duration::from_secs(1)).build()?);
    /// let out: Result<u32, Rejected> = limiter.run(|| async { Ok(5) }).await;
    /// assert_eq!(out, Ok(5));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn run<M, F, R, E>(&self, make: M) -> RunFuture<'_, M, F, T, C>
    where
        M: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        RunFuture::new(self, make)
    }

    /// Runs `fut` once it has a turn; a refused future is dropped unpolled.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, rate_limiter::RateLimiter};
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(5, Duration::from_secs(1)).build()?);
    /// let out: Result<u32, Rejected> = limiter.run_once(async { Ok(5) }).await;
    /// assert_eq!(out, Ok(5));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn run_once<F, R, E>(&self, fut: F) -> RunFuture<'_, impl FnOnce() -> F, F, T, C>
    where
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        RunFuture::new(self, move || fut)
    }
}

impl<T: Clone, C: Clone> RateLimiter<T, C> {
    /// A tower layer sharing this limiter's bucket (feature `tower`).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    /// use tower::ServiceBuilder;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(50, Duration::from_secs(1)).build()?);
    /// let svc = ServiceBuilder::new()
    ///     .layer(limiter.layer())
    ///     .service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) });
    /// # let _ = svc;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[cfg(feature = "tower")]
    pub fn layer(&self) -> RateLimiterLayer<T, C> {
        RateLimiterLayer::new(self.clone())
    }
}

impl<T, C> fmt::Debug for RateLimiter<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.shared.telemetry.name())
            .field("rate", &self.shared.rate)
            .finish_non_exhaustive()
    }
}
