//! Retry: try a failed call again, after a delay, within limits that keep retries from making
//! an outage worse.
//!
//! # Semantics
//!
//! A call is made; its result is classified. A success (or a result that is not retryable)
//! is returned as is. A retryable failure is tried again after a delay, until one of the limits
//! stops it, and then **the last result is returned unchanged** (never wrapped): the reason it
//! stopped goes to a [`RetryGaveUp`](crate::telemetry::EventKind::RetryGaveUp) event.
//!
//! - **What is retried**: what the [`Classifier`](crate::Classifier) calls a
//!   [`Failure`](crate::Outcome::Failure). A success is returned, and so is a result it
//!   ignores, with one exception: with
//!   [`retry_rejections`](RetryConfigBuilder::retry_rejections), an inner circuit breaker's
//!   or bulkhead's rejection that the classifier reports (through
//!   [`Classifier::rejection`](crate::Classifier::rejection)) is retried after its
//!   `retry_after()`. The default, [`DefaultClassifier`], calls every `Err` a failure
//!   except those rejections (retrying them is what they exist to prevent), and reports
//!   them. Chain
//!   [`classify`](future::RunFuture::classify) with any classifier to decide otherwise, for
//!   instance to retry an `Ok(503)`.
//! - **Delays**: a [`Backoff`] (constant, linear or exponential, with jitter), or the delay a
//!   result asks for: a rejection's `retry_after()` (as above), else a [`Hint`]'s
//!   (`Retry-After`), capped by [`max_hint`](RetryConfigBuilder::max_hint).
//! - **Limits**: [`max_attempts`](RetryConfigBuilder::max_attempts) counts **all** attempts,
//!   the first one included. A [`RetryBudget`] caps retries as a fraction of recent first
//!   attempts across every clone of the handle.
//! - **Deadline**: a total [`deadline`](RetryConfigBuilder::deadline), counted from the start
//!   of the first attempt, is never waited out. When the next delay (from the backoff, or a
//!   hint), plus the timer's [`resolution`](crate::timer::Timer::resolution), is at least
//!   the time left, the retry gives up at once with
//!   [`GiveUp::Deadline`] and returns the last result: it does not sleep, and it never starts
//!   an attempt that would have no time of its own (which, under a timeout cut to the
//!   deadline, would fail at once and replace the call's real error with a timeout). So every
//!   attempt starts before the deadline, with the delay before it fully waited, and a delay
//!   equal to the time left ends the call. A timer that fires later than its resolution
//!   (a busy runtime) can still start an
//!   attempt at the deadline or just past it; the retry does not stop an attempt in flight
//!   (put a timeout inside it, or use a [`Pipeline`](crate::pipeline::Pipeline), which cuts
//!   each attempt's timeout to the time left).
//! - **Budget tokens**: a retry takes its budget token when it is scheduled (so that callers
//!   waiting out their backoffs together cannot all count on the same last token) and spends
//!   it when the retry starts. [`RetryMetrics::retries`] and the budget both count retries
//!   made: see [Cancellation](#cancellation).
//!
//! # Examples
//!
//! ```
//! use palisade::retry::{Backoff, Retry};
//! use std::time::Duration;
//!
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade::ConfigError> {
//! let retry = Retry::new(
//!     Retry::builder()
//!         .max_attempts(4)
//!         .backoff(Backoff::exponential(Duration::from_millis(100), 2.0, Duration::from_secs(2)))
//!         .build()?,
//! );
//! let mut calls = 0;
//! let out: Result<&str, palisade::Rejected> = retry
//!     .run(|| {
//!         calls += 1;
//!         let n = calls;
//!         async move {
//!             if n < 3 { Err(palisade::error::Elapsed::new("db", Duration::from_secs(1)).into()) } else { Ok("done") }
//!         }
//!     })
//!     .await;
//! assert_eq!(out, Ok("done"));
//! assert_eq!(calls, 3);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))] fn main() {}
//! ```
//!
//! As a tower layer, the request is re-sent through a [`RequestCloner`] (by default
//! `Req: Clone`), and the inner service's readiness is polled again before each attempt. A
//! request that cannot be cloned is sent once; if it fails, the caller gets that failure and
//! a `RetryGaveUp` event with [`GiveUp::NotCloneable`] says why it was not retried.
//!
//! # What you implement, and why
//!
//! Nothing, for the default rules. To change what is retried, one trait: the crate's
//! [`Classifier`](crate::Classifier) (any `Fn(&Result<R, E>) -> Outcome` is one), the same
//! one the breaker and the fallback take, so one closure grades results for a whole
//! [`Pipeline`](crate::pipeline::Pipeline). A failure is retried; anything else is final.
//!
//! Then, each optional: a [`Hint`] (any `Fn(&Result<R, E>) -> Option<Duration>`, such as
//! `http::retry_after_hint` with the `http` feature) when results say how long to wait, a
//! [`Notify`] callback to watch retries, and for the tower layer a `RequestCloner` when
//! requests are not `Clone`. They are apart because they answer apart: whether to retry is
//! the classifier's question, how long to wait the result's, how to send it again the
//! request's.
//!
//! # Cancellation
//!
//! Dropping the future stops everything at once: the attempt in flight or the sleep is
//! dropped, and no further attempt is made. A retry that was scheduled but had not started
//! (the call was dropped during its backoff, or, with tower, while the inner service was not
//! ready) gives its budget token back and is not counted in [`RetryMetrics::retries`]. A
//! timer's sleep that panics when dropped unwinds like any other panic, and the token still
//! goes back.
//!
//! # Panics in user code
//!
//! The policy's own bookkeeping is done before any callback runs (the crate-wide rule, see
//! [`telemetry`](crate::telemetry)): a call is counted before its first attempt is made, a
//! give-up or recovery before its event, and a retry's budget token is held by the call
//! before the [`RetryScheduled`](crate::telemetry::EventKind::RetryScheduled) event, the
//! [`on_retry`](future::RunFuture::on_retry) callback or the request cloner runs. A panic
//! in a listener, classifier, hint, `on_retry` or cloner unwinds through the caller, and
//! the call, dropped by the unwinding, gives back a token whose retry did not start. The
//! tower service copies the request before it counts the call, so a cloner that panics on
//! the first copy leaves no call counted.
//!
//! # Clone semantics
//!
//! Clones share the config, the budget, the jitter's seed stream and the counters behind
//! [`Retry::metrics`]. Each call keeps its own attempt count and backoff sequence. A
//! [`RetryLayer`] holds a clone, and so does each of its calls' futures.

mod attempts;
mod backoff;
mod budget;
mod config;
pub mod future;
#[cfg(feature = "tower")]
mod layer;
mod metrics;
mod policy;
#[cfg(feature = "tower")]
mod service;

pub use crate::telemetry::GiveUp;
pub(crate) use attempts::{Attempts, Next, Verdict};
#[cfg(feature = "serde")]
pub(crate) use backoff::Schedule;
pub use backoff::{Backoff, BackoffIter, Jitter, MAX_DELAY};
pub use budget::RetryBudget;
pub use config::{
    DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_HINT, DEFAULT_NAME, MAX_ATTEMPTS,
    RetryConfig, RetryConfigBuilder,
};
#[cfg(feature = "tower")]
pub use layer::RetryLayer;
pub use metrics::RetryMetrics;
#[cfg(feature = "tower")]
pub use policy::{CloneRequest, RequestCloner};
pub use policy::{Hint, NoHint, NoNotify, Notify};
#[cfg(feature = "tower")]
pub use service::RetryService;

use std::fmt;
use std::future::Future;

use crate::classify::DefaultClassifier;
use crate::clock::{Clock, DefaultClock};
use crate::counter::StripedCounter;
use crate::rng::RngSource;
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::telemetry::Telemetry;
use crate::timer::{DefaultTimer, Timer};

use self::budget::Budget;
use self::future::RunFuture;

/// A retry policy. Cheap to clone; clones share the budget and the counters.
///
/// # Examples
///
/// ```
/// use palisade::retry::Retry;
///
/// let retry = Retry::new(Retry::builder().max_attempts(2).build()?);
/// assert_eq!(retry.config().max_attempts(), 2);
/// # Ok::<(), palisade::ConfigError>(())
/// ```
///
/// # Cost of a clone
///
/// One `Arc` (the config, the jitter's seed stream, the budget and the counters behind
/// [`metrics`](Self::metrics)) plus the timer and clock: a reference count, which the tower
/// layer pays once per call, since each call's future holds a clone.
#[derive(Clone)]
pub struct Retry<T = DefaultTimer, C = DefaultClock> {
    shared: Arc<Shared>,
    clock: C,
    timer: T,
}

/// What clones of a handle share.
#[derive(Debug)]
struct Shared {
    config: RetryConfig,
    rng: RngSource,
    /// A deadline or a budget is set: the first attempt reads the clock.
    timed: bool,
    // In its own `Arc` so that a retry's token can give itself back when dropped.
    budget: Option<Arc<Budget>>,
    /// First attempts: bumped on every call, so striped to scale across threads.
    calls: StripedCounter,
    // The rest only move when a call fails, which is the cold path.
    retries: AtomicU64,
    gave_up: AtomicU64,
    recovered: AtomicU64,
}

impl Retry {
    /// A retry from `config`, sleeping on the [`DefaultTimer`] and reading the
    /// [`DefaultClock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Retry, RetryConfig};
    ///
    /// let retry = Retry::new(RetryConfig::builder().max_attempts(4).build()?);
    /// assert_eq!(retry.config().max_attempts(), 4);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn new(config: RetryConfig) -> Self {
        Self::with_timer_and_clock(config, DefaultTimer::default(), DefaultClock::default())
    }

    /// A builder for a retry's config (shortcut for [`RetryConfig::builder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Backoff, Retry};
    /// use std::time::Duration;
    ///
    /// let config = Retry::builder()
    ///     .max_attempts(5)
    ///     .backoff(Backoff::constant(Duration::from_millis(50)))
    ///     .deadline(Duration::from_secs(2))
    ///     .build()?;
    /// assert_eq!(config.deadline(), Some(Duration::from_secs(2)));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn builder() -> RetryConfigBuilder {
        RetryConfig::builder()
    }
}

impl<T, C> Retry<T, C> {
    /// A retry from `config` that sleeps on `timer` and reads `clock` (for the deadline and
    /// the budget).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::clock::MonotonicClock;
    /// use palisade::retry::Retry;
    /// use std::time::Duration;
    ///
    /// let retry = Retry::with_timer_and_clock(
    ///     Retry::builder().build()?,
    ///     |d: Duration| tokio::time::sleep(d),
    ///     MonotonicClock::new(),
    /// );
    /// # let _ = retry;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn with_timer_and_clock(config: RetryConfig, timer: T, clock: C) -> Self {
        let retry = Retry {
            shared: Arc::new(Shared {
                rng: config
                    .seed
                    .map_or_else(RngSource::from_entropy, RngSource::seeded),
                timed: config.deadline.is_some() || config.budget.is_some(),
                budget: config.budget.map(|b| Arc::new(Budget::new(b))),
                calls: StripedCounter::new(),
                retries: AtomicU64::new(0),
                gave_up: AtomicU64::new(0),
                recovered: AtomicU64::new(0),
                config,
            }),
            clock,
            timer,
        };
        retry
            .shared
            .config
            .telemetry
            .created(crate::telemetry::PolicyKind::Retry);
        retry
    }

    /// The config the policy was built from.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    /// use std::time::Duration;
    ///
    /// let retry = Retry::new(Retry::builder().deadline(Duration::from_secs(1)).build()?);
    /// assert_eq!(retry.config().deadline(), Some(Duration::from_secs(1)));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// The name the policy reports under.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    ///
    /// let retry = Retry::new(Retry::builder().name("orders").build()?);
    /// assert_eq!(retry.name(), "orders");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn name(&self) -> &'static str {
        self.shared.config.telemetry.name()
    }

    /// The timer the retry sleeps on, for drivers of its attempts outside this module.
    pub(crate) fn timer(&self) -> &T {
        &self.timer
    }

    /// The clock the deadline and the budget read.
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn clock(&self) -> &C {
        &self.clock
    }

    #[inline]
    pub(crate) fn retry_rejections(&self) -> bool {
        self.shared.config.retry_rejections
    }

    fn telemetry(&self) -> &Telemetry {
        &self.shared.config.telemetry
    }
}

impl<T, C: Clock> Retry<T, C> {
    /// A snapshot of the policy's counters, shared by every clone of the handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    ///
    /// let retry = Retry::new(Retry::builder().build()?);
    /// let m = retry.metrics();
    /// assert_eq!((m.calls, m.retries, m.gave_up), (0, 0, 0));
    /// assert!(m.budget_left.is_none(), "no budget configured");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn metrics(&self) -> RetryMetrics {
        let s = &*self.shared;
        let calls = s.calls.sum();
        let retries = s.retries.load(Ordering::Relaxed);
        RetryMetrics {
            calls,
            attempts: calls.wrapping_add(retries),
            retries,
            recovered: s.recovered.load(Ordering::Relaxed),
            gave_up: s.gave_up.load(Ordering::Relaxed),
            budget_left: s
                .budget
                .as_ref()
                .map(|b| b.balance(self.clock.now().as_nanos()).max(0.0)),
        }
    }
}

impl<T: Timer, C: Clock> Retry<T, C> {
    /// Runs the future made by `make`, again after each retryable failure.
    ///
    /// Chain [`classify`](RunFuture::classify), [`hint`](RunFuture::hint) and
    /// [`on_retry`](RunFuture::on_retry) on the returned future to change what is retried,
    /// honour server hints, or watch the retries.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Outcome, retry::{Backoff, Retry}};
    /// use std::time::Duration;
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(Retry::builder().backoff(Backoff::constant(Duration::from_millis(10))).build()?);
    /// // A 503 answered as Ok is worth another try; anything else is final.
    /// let status: Result<u16, palisade::Rejected> = retry
    ///     .run(|| async { Ok(503) })
    ///     .classify(|r: &Result<u16, palisade::Rejected>| match r {
    ///         Ok(503) => Outcome::Failure,
    ///         _ => Outcome::Success,
    ///     })
    ///     .await;
    /// assert_eq!(status, Ok(503), "the last result, after 3 attempts");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the attempt in flight or the sleep; nothing else is tried,
    /// and a retry that had not started gives its budget token back.
    pub fn run<M, F, R, E>(
        &self,
        mut make: M,
    ) -> RunFuture<'_, impl FnMut(u32) -> F, F, T, C, DefaultClassifier, NoHint, NoNotify>
    where
        M: FnMut() -> F,
        F: Future<Output = Result<R, E>>,
    {
        RunFuture::new(self, move |_attempt| make())
    }

    /// [`run`](Self::run) with a closure that receives the attempt number (1 for the first).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Backoff, Retry};
    /// use std::time::Duration;
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(Retry::builder().backoff(Backoff::constant(Duration::ZERO)).build()?);
    /// let out: Result<u32, palisade::Error<&str>> = retry
    ///     .run_with_attempt(|attempt| async move {
    ///         if attempt < 3 { Err(palisade::Error::Inner("flaky")) } else { Ok(attempt) }
    ///     })
    ///     .await;
    /// assert_eq!(out, Ok(3));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run).
    pub fn run_with_attempt<M, F, R, E>(
        &self,
        make: M,
    ) -> RunFuture<'_, M, F, T, C, DefaultClassifier, NoHint, NoNotify>
    where
        M: FnMut(u32) -> F,
        F: Future<Output = Result<R, E>>,
    {
        RunFuture::new(self, make)
    }
}

#[cfg(feature = "tower")]
impl<T: Clone, C: Clone> Retry<T, C> {
    /// A tower layer retrying with this policy; the same as [`RetryLayer::new`] on a clone.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// static CALLS: AtomicU32 = AtomicU32::new(0);
    /// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
    /// let mut svc = ServiceBuilder::new().layer(retry.layer()).service_fn(|_: ()| async {
    ///     match CALLS.fetch_add(1, Ordering::Relaxed) {
    ///         0 => Err::<u32, BoxError>("reset".into()),
    ///         n => Ok(n),
    ///     }
    /// });
    /// assert_eq!(svc.ready().await?.call(()).await?, 1, "the second attempt");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn layer(&self) -> RetryLayer<T, C> {
        RetryLayer::new(self.clone())
    }
}

impl<T, C> fmt::Debug for Retry<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}
