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
//! - **What is retried**: by default, results the [`DefaultClassifier`]
//!   calls failures: every `Err` except an inner circuit breaker's or bulkhead's rejection
//!   (retrying those is what they exist to prevent). With
//!   [`retry_rejections`](RetryConfigBuilder::retry_rejections) they are retried after their
//!   `retry_after()`. Chain [`classify`](future::RunFuture::classify) with any
//!   [`Classifier`] to decide otherwise, for instance to retry an `Ok(503)`.
//! - **Delays**: a [`Backoff`] (constant, linear or exponential, with jitter), or the delay a
//!   server asked for, from a [`hint`](future::RunFuture::hint) function (`Retry-After`),
//!   capped by [`max_hint`](RetryConfigBuilder::max_hint).
//! - **Limits**: [`max_attempts`](RetryConfigBuilder::max_attempts) counts **all** attempts,
//!   the first one included. A [`RetryBudget`] caps retries as a fraction of recent first
//!   attempts across every clone of the handle.
//! - **Deadline**: a total [`deadline`](RetryConfigBuilder::deadline), counted from the start
//!   of the first attempt, is never waited out. When the next delay (from the backoff, or a
//!   hint) is at least the time left, the retry gives up at once with
//!   [`GiveUp::Deadline`] and returns the last result: it does not sleep, and it never starts
//!   an attempt that would have no time of its own (which, under a timeout cut to the
//!   deadline, would fail at once and replace the call's real error with a timeout). So every
//!   attempt starts before the deadline, with the delay before it fully waited, and a delay
//!   equal to the time left ends the call. A timer that fires late can still start an
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
//! # Cancellation
//!
//! Dropping the future stops everything at once: the attempt in flight or the sleep is
//! dropped, and no further attempt is made. A retry that was scheduled but had not started
//! (the call was dropped during its backoff, or, with tower, while the inner service was not
//! ready) gives its budget token back and is not counted in [`RetryMetrics::retries`].
//!
//! One limit: a future dropped during its backoff drops the timer's sleep where a panic
//! cannot unwind (so that the future's own drop stays small enough to inline into the
//! caller), and a sleep whose destructor panics there aborts the process. tokio's sleep
//! does not panic when dropped; a sleep that has finished is dropped by the future's
//! poll, where a panic unwinds as usual.
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
//! [`Retry::metrics`]. Each call keeps its own attempt count and backoff sequence.

mod attempts;
mod backoff;
mod budget;
mod config;
pub mod future;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "tower")]
mod service;

pub use crate::telemetry::GiveUp;
pub(crate) use attempts::{Attempts, Next};
#[cfg(feature = "serde")]
pub(crate) use backoff::Schedule;
pub use backoff::{Backoff, BackoffIter, Jitter, MAX_DELAY};
pub use budget::RetryBudget;
pub use config::{
    DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_HINT, DEFAULT_NAME, MAX_ATTEMPTS,
    RetryConfig, RetryConfigBuilder,
};
#[cfg(feature = "tower")]
pub use layer::{CloneRequest, RequestCloner, RetryHandle, RetryLayer};
#[cfg(feature = "tower")]
pub use service::RetryService;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::classify::{Classifier, DefaultClassifier, Outcome};
use crate::clock::{Clock, DefaultClock};
use crate::counter::StripedCounter;
use crate::error::AsRejected;
use crate::rng::RngSource;
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::telemetry::Telemetry;
use crate::timer::{DefaultTimer, Timer};

use self::budget::Budget;
use self::future::{NoHint, NoNotify, RunFuture};

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
/// A handle is one `Arc` (the config, the jitter's seed stream, the budget and the counters
/// behind [`metrics`](Self::metrics)) plus its timer and clock. A clone bumps that one
/// reference count and copies the timer and clock, which is what the tower layer pays to give
/// every call its own copy: an atomic increment when the call starts and a decrement when its
/// future is dropped, on a cache line that every thread calling through the layer writes.
/// A layer holding a `&'static Retry` instead (from [`leak`](Self::leak), or a handle in a
/// `static`) has neither: see [`RetryHandle`].
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

/// A snapshot of a retry policy's counters, from [`Retry::metrics`].
///
/// Counts are since the handle was built and shared by its clones.
///
/// # Examples
///
/// ```
/// use palisade::retry::{Backoff, Retry};
/// use palisade::Error;
/// use std::time::Duration;
///
/// # #[cfg(feature = "tokio")]
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade::ConfigError> {
/// let retry = Retry::new(Retry::builder().backoff(Backoff::constant(Duration::ZERO)).build()?);
/// let mut failures = 1;
/// let _: Result<(), Error<&str>> = retry
///     .run(|| {
///         let fail = failures > 0;
///         failures -= 1;
///         async move { if fail { Err(Error::Inner("503")) } else { Ok(()) } }
///     })
///     .await;
/// let m = retry.metrics();
/// assert_eq!((m.calls, m.retries, m.attempts, m.recovered), (1, 1, 2, 1));
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "tokio"))] fn main() {}
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryMetrics {
    /// Calls made through the policy (each call's first attempt).
    pub calls: u64,
    /// Attempts started in all: `calls + retries`.
    pub attempts: u64,
    /// Retries started (a retry whose call was dropped during the backoff is not one).
    pub retries: u64,
    /// Calls that succeeded after at least one retry.
    pub recovered: u64,
    /// Calls that ended without a success after being found retryable or failed (every
    /// [`RetryGaveUp`](crate::telemetry::EventKind::RetryGaveUp) event).
    pub gave_up: u64,
    /// Retries the budget allows right now; `None` without a budget. A retry waiting out its
    /// backoff holds its token already; it comes back if the call is dropped before the retry
    /// starts.
    pub budget_left: Option<f64>,
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

    /// This handle for the rest of the process, as a `&'static Retry`.
    ///
    /// A [`RetryLayer`] made from a `&'static Retry` gives its services and their response
    /// futures a plain reference instead of a counted one, so a call whose first attempt
    /// succeeds makes no atomic write at all. The count costs two locked instructions per
    /// call on a cache line every caller thread writes: about 10 ns, most of the layer's
    /// happy path.
    ///
    /// The handle (config, budget, counters: a few hundred bytes) is never freed. Leak the
    /// handles you build once and keep, such as a client's made at startup, not ones made per
    /// request or per config reload. A handle in a `static` (a `LazyLock<Retry>`) is a
    /// `&'static Retry` already and needs no leak. The leaked handle shares its budget and
    /// counters with the clones made before.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    ///
    /// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
    /// let process_wide: &'static Retry = retry.clone().leak();
    /// # #[cfg(feature = "tower")]
    /// let _layer = palisade::retry::RetryLayer::new(process_wide);
    /// assert_eq!(process_wide.metrics(), retry.metrics(), "one set of counters");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[must_use = "leak returns the handle to use from now on"]
    pub fn leak(self) -> &'static Self
    where
        T: 'static,
        C: 'static,
    {
        Box::leak(Box::new(self))
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
    #[cfg(feature = "reqwest-middleware")]
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
    ) -> RunFuture<'_, impl FnMut(u32) -> F, F, T, C, Defaults, NoHint, NoNotify>
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
    ) -> RunFuture<'_, M, F, T, C, Defaults, NoHint, NoNotify>
    where
        M: FnMut(u32) -> F,
        F: Future<Output = Result<R, E>>,
    {
        RunFuture::new(self, make)
    }
}

impl<T, C> fmt::Debug for Retry<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

// ===== what is retried =====

/// Whether a result is worth another attempt, and what delay the result itself asks for.
///
/// # Examples
///
/// ```
/// use palisade::retry::{Defaults, RetryPredicate, Verdict};
/// use palisade::{Rejected, error::CircuitOpen};
/// use std::time::Duration;
///
/// let open: Result<(), Rejected> = Err(CircuitOpen::new("db", Duration::from_secs(2)).into());
/// // An open breaker is retried after its `retry_after` only when `retry_rejections` is set.
/// assert_eq!(Defaults.verdict(&open, false), Verdict::Done);
/// assert_eq!(Defaults.verdict(&open, true), Verdict::Retry { after: Some(Duration::from_secs(2)) });
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Return this result.
    Done,
    /// Try again; `after` overrides the backoff when set.
    Retry {
        /// The delay the result asks for (a rejection's `retry_after`), if any.
        after: Option<Duration>,
    },
}

/// Decides what a result means for a retry; see [`Defaults`] and [`Classified`].
///
/// # Examples
///
/// ```
/// use palisade::retry::{Classified, RetryPredicate, Verdict};
/// use palisade::Outcome;
///
/// let only_503 = Classified(|r: &Result<u16, ()>| if r == &Ok(503) { Outcome::Failure } else { Outcome::Success });
/// assert_eq!(only_503.verdict(&Ok(503), false), Verdict::Retry { after: None });
/// assert_eq!(only_503.verdict(&Err(()), false), Verdict::Done);
/// ```
pub trait RetryPredicate<R, E> {
    /// The verdict on `result`; `retry_rejections` is the config's flag.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::{Defaults, RetryPredicate, Verdict};
    /// use palisade::{Error, Rejected, error::Elapsed};
    /// use std::time::Duration;
    ///
    /// let io: Result<(), Error<&str>> = Err(Error::Inner("reset"));
    /// assert_eq!(Defaults.verdict(&io, false), Verdict::Retry { after: None });
    /// let timed_out: Result<(), Rejected> = Err(Elapsed::new("db", Duration::from_secs(1)).into());
    /// assert_eq!(Defaults.verdict(&timed_out, false), Verdict::Retry { after: None });
    /// assert_eq!(Defaults.verdict(&Ok::<_, Rejected>(()), false), Verdict::Done);
    /// ```
    fn verdict(&self, result: &Result<R, E>, retry_rejections: bool) -> Verdict;
}

/// The default: [`DefaultClassifier`]'s failures are retried; an inner breaker's or
/// bulkhead's rejection is retried after its `retry_after` only with
/// [`retry_rejections`](RetryConfigBuilder::retry_rejections).
///
/// # Examples
///
/// ```
/// use palisade::retry::{Defaults, RetryPredicate, Verdict};
/// use palisade::{Rejected, error::{BulkheadFull, FullCause}};
///
/// // A full bulkhead below is load shedding: not retried by default.
/// let full: Result<(), Rejected> = Err(BulkheadFull::new("db", 4, FullCause::QueueFull).into());
/// assert_eq!(Defaults.verdict(&full, false), Verdict::Done);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults;

impl<R, E: AsRejected> RetryPredicate<R, E> for Defaults {
    #[inline]
    fn verdict(&self, result: &Result<R, E>, retry_rejections: bool) -> Verdict {
        match DefaultClassifier.classify(result) {
            Outcome::Success => Verdict::Done,
            Outcome::Failure => Verdict::Retry { after: None },
            Outcome::Ignore => match result.as_ref().err().and_then(AsRejected::as_rejected) {
                Some(rejected) if retry_rejections && !rejected.is_timeout() => Verdict::Retry {
                    after: rejected.retry_after(),
                },
                _ => Verdict::Done,
            },
        }
    }
}

/// The default rules grade results as [`DefaultClassifier`] does, for a breaker that shares a
/// [`Pipeline`](crate::pipeline::Pipeline)'s rules with its retry.
impl<R, E: AsRejected> Classifier<R, E> for Defaults {
    #[inline]
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        DefaultClassifier.classify(result)
    }
}

/// Retries what a [`Classifier`] calls a failure; made by
/// [`RunFuture::classify`](future::RunFuture::classify) and
/// [`PipelineBuilder::classify`](crate::pipeline::PipelineBuilder::classify).
///
/// # Examples
///
/// ```
/// use palisade::retry::{Classified, RetryPredicate, Verdict};
/// use palisade::{AllErrors, Rejected, error::{BulkheadFull, FullCause}};
///
/// // Every `Err` is a failure for `AllErrors`, so rejections are retried too.
/// let full: Result<(), Rejected> = Err(BulkheadFull::new("db", 4, FullCause::QueueFull).into());
/// assert_eq!(Classified(AllErrors).verdict(&full, false), Verdict::Retry { after: None });
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Classified<Cl>(pub Cl);

impl<R, E, Cl: Classifier<R, E>> RetryPredicate<R, E> for Classified<Cl> {
    #[inline]
    fn verdict(&self, result: &Result<R, E>, _: bool) -> Verdict {
        match self.0.classify(result) {
            Outcome::Failure => Verdict::Retry { after: None },
            Outcome::Success | Outcome::Ignore => Verdict::Done,
        }
    }
}

/// Grades results as the classifier inside does.
impl<R, E, Cl: Classifier<R, E>> Classifier<R, E> for Classified<Cl> {
    #[inline]
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        self.0.classify(result)
    }
}

/// A predicate borrowed, for a policy that lends its own to each call's retry.
impl<R, E, P: RetryPredicate<R, E>> RetryPredicate<R, E> for crate::classify::ByRef<'_, P> {
    #[inline]
    fn verdict(&self, result: &Result<R, E>, retry_rejections: bool) -> Verdict {
        self.0.verdict(result, retry_rejections)
    }
}
