//! Circuit breaker: stop calling a dependency that keeps failing, and probe it back to health.
//!
//! # Semantics
//!
//! ```text
//!            trip rule met                      break duration over:
//!  Closed ─────────────────────► Open ─────────► HalfOpen (first caller is a probe)
//!    ▲                            ▲                 │
//!    │  success_threshold probes  │  a probe fails, │
//!    └──────── succeed ───────────┼── or probes ────┘
//!                                 │   never report within max_wait_in_half_open
//!                                 └──────────────────
//!  isolate() ──► Isolated (rejects everything)     disable() ──► Disabled (admits everything)
//!  reset()   ──► Closed, window cleared (from any state)
//! ```
//!
//! - **Closed**: calls pass; their outcomes feed the [`TripModel`]: failures in a row, a
//!   count window, a time window by ratio, or a number of failures within a duration. With
//!   [`SlowCalls`], calls slower than a threshold can trip it too.
//! - **Open**: calls are rejected with [`Rejected::CircuitOpen`], whose `retry_after()` is the
//!   time left until half-open. The break grows on each re-open without an intervening close
//!   when [`max_break_duration`](CircuitBreakerConfigBuilder::max_break_duration) is set.
//! - **HalfOpen**: up to `permitted_in_half_open` probes pass. The breaker closes when
//!   `success_threshold` of them succeed and opens again as soon as that can no longer happen.
//!   A slow probe counts as a failed one. If probes do not report within
//!   `max_wait_in_half_open`, the next call opens it again: it can never stay stuck.
//!
//! Transitions are lazy: they happen on the call that observes them, from the clock. There is
//! no background task, and none is needed: [`state`](CircuitBreaker::state),
//! [`metrics`](CircuitBreaker::metrics) and health reports work out the clock too, so an open
//! breaker whose break is over reads `HalfOpen` before any call arrives.
//!
//! No state can get stuck, whatever the traffic:
//! - A break never ends early (deadlines count from the reading rounded up, plus a coarse
//!   clock's tick) and always ends, after any idle span.
//! - A half-open probe that is dropped, or whose outcome is ignored, holds nothing: the next
//!   call becomes the probe, however long after, with a fresh `max_wait_in_half_open`.
//! - Probes that never report (hung calls) are given up when `max_wait_in_half_open` runs
//!   out: the breaker re-opens *then*, with a longer break counted from that moment, and a
//!   call arriving after that break too becomes the next probe at once.
//!
//! Every transition bumps an epoch that permits carry. A result recorded against an older
//! epoch is ignored: a failure that arrives after the breaker closed again cannot re-open it,
//! and a success from before a trip cannot close it.
//!
//! Outcomes come from a [`Classifier`](crate::classify::Classifier), by default
//! [`DefaultClassifier`]: `Err` is a failure, except rejections by
//! inner policies that only shed load (an open circuit, a full bulkhead), which are ignored; a
//! timeout is a failure. An `Ok` can be made a failure with a classifier of your own.
//!
//! # Examples
//!
//! With closures:
//!
//! ```
//! use palisade::Rejected;
//! use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
//!
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade::ConfigError> {
//! let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(2).build()?);
//! for _ in 0..2 {
//!     let _: Result<(), Rejected> = breaker
//!         .run(|| async { Err(palisade::error::Elapsed::new("db", std::time::Duration::from_secs(1)).into()) })
//!         .await;
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! let rejected: Result<(), Rejected> = breaker.run(|| async { Ok(()) }).await;
//! assert!(matches!(rejected, Err(Rejected::CircuitOpen(_))));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))] fn main() {}
//! ```
//!
//! As a tower layer (the same handle):
//!
//! ```
//! use palisade::circuit_breaker::CircuitBreaker;
//! use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[cfg(all(feature = "tokio", feature = "tower"))]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker.layer())
//!     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) });
//! assert_eq!(svc.ready().await?.call(1).await?, 2);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "tokio", feature = "tower")))] fn main() {}
//! ```
//!
//! # Cancellation
//!
//! A call dropped before it produced a result counts as nothing: its permit is released on
//! drop, and a half-open probe slot is freed at once for the next caller. Cancellation is
//! never a failure. A panic inside the call drops the permit the same way, and so does a
//! panic in a classifier or listener: every transition, slot and count is settled before any
//! of your code runs (see [`telemetry`](crate::telemetry#user-code-runs-last)).
//!
//! On the tower surface, `poll_ready` asks the breaker afresh each time and holds no permit
//! while the inner service is not ready; see [`CircuitBreakerService`].
//!
//! # Clone semantics
//!
//! Clones share one breaker: state, window, counters and listener. A breaker shared by a
//! tower stack and a closure call site is one breaker.
//!
//! # Performance
//!
//! Admission in the closed state is one atomic load; a permit borrows the breaker, so the
//! closure surface moves no reference count. Recording a success under the consecutive model
//! is one more load, and writes nothing unless a failure preceded it. The clock is read only
//! where the semantics need it: by time windows and slow-call detection (once at admission,
//! once at record), and outside the closed state. No lock, no allocation per call. The tower
//! surface holds an owned permit (one reference-count increment per call), as its response
//! futures must be `'static`.

mod config;
mod controller;
pub mod future;
#[cfg(feature = "tower")]
mod layer;
mod metrics;
mod permit;
#[cfg(feature = "tower")]
mod service;
mod state;
mod transitions;
mod window;

#[cfg(all(test, loom))]
mod loom;

pub use crate::telemetry::circuit_state::CircuitState;
pub use config::{
    CircuitBreakerConfig, CircuitBreakerConfigBuilder, DEFAULT_BREAK_DURATION,
    DEFAULT_BREAK_GROWTH_FACTOR, DEFAULT_BUCKETS, DEFAULT_CONSECUTIVE_FAILURES,
    DEFAULT_FAILURE_RATIO, DEFAULT_MAX_WAIT_IN_HALF_OPEN, DEFAULT_MINIMUM_CALLS, DEFAULT_NAME,
    DEFAULT_PERMITTED_IN_HALF_OPEN, MAX_BUCKETS, MAX_DURATION, MAX_WINDOW_SIZE, SlowCalls,
    TripModel,
};
#[cfg(feature = "tower")]
pub use layer::CircuitBreakerLayer;
pub use metrics::CircuitBreakerMetrics;
pub use permit::{CallPermit, OwnedCallPermit};
#[cfg(feature = "tower")]
pub use service::CircuitBreakerService;

use std::fmt;
use std::future::Future;

use crate::classify::DefaultClassifier;
use crate::clock::{Clock, DefaultClock};
use crate::error::Rejected;
use crate::sync::Arc;
use crate::telemetry::PolicyKind;

use self::controller::Shared;
use self::future::RunFuture;

/// A circuit breaker. Cheap to clone; clones share state.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
///
/// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?);
/// let permit = breaker.try_acquire()?;
/// permit.failure();
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(breaker.try_acquire().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CircuitBreaker<C = DefaultClock> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for CircuitBreaker<C> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            shared: self.shared.clone(),
        }
    }
}

impl CircuitBreaker {
    /// A breaker from `config`, reading the [`DefaultClock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    ///
    /// let config = CircuitBreakerConfig::builder().consecutive_failures(3).build()?;
    /// let breaker = CircuitBreaker::new(config);
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }

    /// A builder for a breaker's config (shortcut for [`CircuitBreakerConfig::builder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().name("payments").build()?);
    /// assert_eq!(breaker.name(), "payments");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn builder() -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfig::builder()
    }
}

impl<C: Clock> CircuitBreaker<C> {
    /// A breaker from `config` that reads `clock`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use palisade::clock::MonotonicClock;
    ///
    /// let breaker = CircuitBreaker::with_clock(CircuitBreaker::builder().build()?, MonotonicClock::new());
    /// # let _ = breaker;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn with_clock(config: CircuitBreakerConfig, clock: C) -> Self {
        let telemetry = config.telemetry.clone();
        let breaker = CircuitBreaker {
            shared: Arc::new(Shared::new(config, clock)),
        };
        telemetry.created(PolicyKind::CircuitBreaker);
        breaker
    }

    pub(crate) fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.shared.telemetry
    }

    /// A closed breaker with this one's config and clock and state of its own, for a
    /// per-key map (no `Created` event: it is part of the map).
    pub(crate) fn sibling(&self, key: Option<std::sync::Arc<str>>) -> Self
    where
        C: Clone,
    {
        CircuitBreaker {
            shared: Arc::new(
                Shared::new(self.config().clone(), self.shared.clock.clone()).per_key(key),
            ),
        }
    }

    /// Runs the future made by `make` if the breaker admits it, and records its outcome with
    /// the [`DefaultClassifier`] (chain [`classify`](future::RunFuture::classify) on the
    /// returned future to use another).
    ///
    /// Admission is decided now; when the breaker rejects, `make` is not called and the future
    /// resolves to `Err(E::from(Rejected::CircuitOpen(..)))`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Outcome, Rejected, circuit_breaker::CircuitBreaker};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?);
    /// // A 503 answered as `Ok` is a failure for this call site.
    /// let status: Result<u16, Rejected> = breaker
    ///     .run(|| async { Ok(503) })
    ///     .classify(|r: &Result<u16, Rejected>| match r {
    ///         Ok(s) if *s >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .await;
    /// assert_eq!(status, Ok(503));
    /// assert!(breaker.try_acquire().is_err(), "the 503 opened the breaker");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future drops the call and releases its permit; nothing is
    /// counted.
    pub fn run<M, F, T, E>(&self, make: M) -> RunFuture<'_, F, C>
    where
        M: FnOnce() -> F,
        F: Future<Output = Result<T, E>>,
        E: From<Rejected>,
    {
        match self.try_acquire() {
            Ok(permit) => RunFuture::called(make(), permit, DefaultClassifier),
            Err(error) => RunFuture::refused(error, DefaultClassifier),
        }
    }

    /// Runs `fut` if the breaker admits it; see [`run`](Self::run). A rejected `fut` is
    /// dropped unpolled.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, circuit_breaker::CircuitBreaker};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// let out: Result<u8, Rejected> = breaker.run_once(async { Ok(1) }).await;
    /// assert_eq!(out, Ok(1));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run).
    pub fn run_once<F, T, E>(&self, fut: F) -> RunFuture<'_, F, C>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Rejected>,
    {
        self.run(|| fut)
    }

    /// The state a call arriving now would find.
    ///
    /// Transitions are made by calls, but this view works out the clock: an open breaker
    /// whose break is over reads [`HalfOpen`](CircuitState::HalfOpen) before any call
    /// arrives, so a health check that takes an instance out of rotation while it is open
    /// sees it come back without traffic.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?);
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// breaker.try_acquire()?.failure();
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(&self) -> CircuitState {
        self.shared.observed_state()
    }

    /// Forces the breaker open until [`reset`](Self::reset): every call is rejected, with no
    /// `retry_after`.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// breaker.isolate();
    /// assert_eq!(breaker.state(), CircuitState::Isolated);
    /// let rejected = breaker.try_acquire().unwrap_err();
    /// assert_eq!(rejected.retry_after(), None);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn isolate(&self) {
        self.shared.force(CircuitState::Isolated);
    }

    /// Closes the breaker and clears its window, from any state.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?);
    /// breaker.try_acquire()?.failure();
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// breaker.reset();
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// assert!(breaker.try_acquire().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&self) {
        self.shared.window.clear();
        self.shared.force(CircuitState::Closed);
    }

    /// Switches the breaker off until [`reset`](Self::reset): every call passes and nothing
    /// is counted.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?);
    /// breaker.disable();
    /// breaker.try_acquire()?.failure();
    /// assert_eq!(breaker.state(), CircuitState::Disabled, "nothing is counted");
    /// assert!(breaker.try_acquire().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn disable(&self) {
        self.shared.force(CircuitState::Disabled);
    }

    /// A snapshot of the breaker's state and window.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// breaker.try_acquire()?.failure();
    /// let m = breaker.metrics();
    /// assert_eq!(m.state, CircuitState::Closed);
    /// assert_eq!(m.failures, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> CircuitBreakerMetrics {
        let shared = &*self.shared;
        let counts = shared.window.counts(shared.clock.now().as_nanos());
        CircuitBreakerMetrics::new(self.state(), counts, shared.rejected.sum())
    }

    /// The config the breaker was built from.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use std::time::Duration;
    ///
    /// let config = CircuitBreaker::builder().break_duration(Duration::from_secs(10)).build()?;
    /// let breaker = CircuitBreaker::new(config);
    /// assert_eq!(breaker.config().break_duration(), Duration::from_secs(10));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// The name the breaker reports under.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().name("inventory").build()?);
    /// assert_eq!(breaker.name(), "inventory");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.telemetry.name()
    }
}

#[cfg(feature = "tower")]
impl<C> CircuitBreaker<C> {
    /// A tower layer guarded by this breaker; the same as [`CircuitBreakerLayer::new`] on a
    /// clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(breaker.layer())
    ///     .service_fn(|_: ()| async { Err::<(), BoxError>("down".into()) });
    /// assert!(svc.ready().await?.call(()).await.is_err());
    /// // The layer shares the handle's state.
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn layer(&self) -> CircuitBreakerLayer<C> {
        CircuitBreakerLayer::new(self.clone())
    }
}

impl<C> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.telemetry.name())
            .field("word", &self.shared.state.load())
            .finish_non_exhaustive()
    }
}
