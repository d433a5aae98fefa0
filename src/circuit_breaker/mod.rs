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
//! Outcomes come from a [`Classifier`](crate::Classifier), by default
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
pub mod future;
#[cfg(feature = "tower")]
mod layer;
mod permit;
#[cfg(feature = "tower")]
mod service;
mod state;
mod transitions;
mod window;

#[cfg(all(test, loom))]
mod loom;

pub use config::{
    CircuitBreakerConfig, CircuitBreakerConfigBuilder, DEFAULT_BREAK_DURATION,
    DEFAULT_BREAK_GROWTH_FACTOR, DEFAULT_BUCKETS, DEFAULT_CONSECUTIVE_FAILURES,
    DEFAULT_FAILURE_RATIO, DEFAULT_MAX_WAIT_IN_HALF_OPEN, DEFAULT_MINIMUM_CALLS, DEFAULT_NAME,
    DEFAULT_PERMITTED_IN_HALF_OPEN, MAX_BUCKETS, MAX_DURATION, MAX_WINDOW_SIZE, SlowCalls,
    TripModel,
};
#[cfg(feature = "tower")]
pub use layer::CircuitBreakerLayer;
pub use permit::{CallPermit, OwnedCallPermit, Permit};
#[cfg(feature = "tower")]
pub use service::CircuitBreakerService;
pub use state::CircuitState;

use std::fmt;
use std::future::Future;

use crate::classify::{DefaultClassifier, Outcome};
use crate::clock::{Clock, DefaultClock};
use crate::counter::StripedCounter;
use crate::error::{CircuitOpen, Rejected};
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::telemetry::{EventKind, PolicyKind, Telemetry};

use self::future::RunFuture;
use self::state::{Admission, AtomicState, Epoch, Now, Phase, Tally, Timing, Word};
use self::transitions::Transitions;
use self::window::{CountRing, Sample, TimeRing, Window};

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

pub(crate) struct Shared<C> {
    state: AtomicState,
    // Successes and failures of the current half-open period: epoch << 32 | failures << 16 |
    // successes. Touched only by probes.
    tally: AtomicU64,
    window: Window,
    timing: Timing,
    slow_threshold_ns: Option<u64>,
    clock: C,
    // The clock's resolution, read once: deadlines start this much after a reading.
    resolution_ns: u64,
    telemetry: Telemetry,
    transitions: Transitions,
    // Striped: every rejecting thread writes it, and a shared line would serialise the
    // threads of an open breaker (and evict the state word every admission reads).
    rejected: StripedCounter,
    config: CircuitBreakerConfig,
}

/// A rejection as the cold admission paths hand it back: the retry-after in whole
/// milliseconds, or [`Refusal::ISOLATED`] for none.
///
/// Eight bytes, so that `Result<Ticket, Refusal>` fits in two registers and the inlined caller
/// builds the [`Rejected`] where it returns it. A `Result<Ticket, Rejected>` comes back through
/// memory in narrow stores that the caller then copies in wide loads, which the CPU cannot
/// forward from its store buffer: the stall cost a third of an open breaker's rejection.
#[derive(Debug, Clone, Copy)]
struct Refusal(u64);

impl Refusal {
    const ISOLATED: u64 = u64::MAX;
}

/// What a permit remembers about its admission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    phase: Phase,
    epoch: Epoch,
    // Clock reading at admission, only taken when slow calls are detected.
    start_ns: u64,
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
        let slow = config.slow_rule();
        let window = match config.model {
            TripModel::ConsecutiveFailures(threshold) => Window::Consecutive {
                threshold,
                failures: crate::sync::AtomicU32::new(0),
                slow: slow.map(|s| (CountRing::new(s.min_calls), s)),
            },
            TripModel::CountWindow { size, .. } => Window::Count {
                ring: CountRing::new(size),
                rule: config.rule().expect("window models have a rule"),
                slow,
            },
            TripModel::TimeWindow {
                duration, buckets, ..
            }
            | TripModel::FailuresWithin {
                duration, buckets, ..
            } => Window::Time {
                ring: TimeRing::new(buckets, duration.as_nanos() as u64 / u64::from(buckets)),
                rule: config.rule().expect("window models have a rule"),
                slow,
            },
        };
        let telemetry = config.telemetry.clone();
        let breaker = CircuitBreaker {
            shared: Arc::new(Shared {
                state: AtomicState::new(),
                tally: AtomicU64::new(0),
                window,
                timing: config.timing(),
                slow_threshold_ns: config.slow.map(|s| s.threshold().as_nanos() as u64),
                resolution_ns: crate::clock::saturating_nanos(clock.resolution()),
                clock,
                telemetry: config.telemetry.clone(),
                transitions: Transitions::new(),
                rejected: StripedCounter::new(),
                config,
            }),
        };
        telemetry.created(PolicyKind::CircuitBreaker);
        breaker
    }

    /// Asks to make a call: a permit if the breaker admits it, the rejection otherwise.
    ///
    /// Record the call's outcome with the permit; dropping it unrecorded counts as nothing.
    ///
    /// # Errors
    ///
    /// [`Rejected::CircuitOpen`] while open, isolated, or half-open with every probe slot
    /// taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// match breaker.try_acquire() {
    ///     Ok(permit) => permit.success(),
    ///     Err(rejected) => println!("not now: {rejected}"),
    /// }
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<CallPermit<'_, C>, Rejected> {
        self.shared
            .admit()
            .map(|ticket| CallPermit::new(self, ticket))
    }

    /// [`try_acquire`](Self::try_acquire) with a permit that owns a handle to the breaker, for
    /// permits that must outlive the borrow (spawned tasks, `'static` futures).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// let permit = breaker.try_acquire_owned()?;
    /// std::thread::spawn(move || permit.success()).join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedCallPermit<C>, Rejected> {
        self.shared
            .admit()
            .map(|ticket| OwnedCallPermit::new(self.clone(), ticket))
    }

    /// Runs the future made by `make` if the breaker admits it, and records its outcome with
    /// the [`DefaultClassifier`] (chain [`classify`](future::ResponseFuture::classify) on the
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
            Ok(permit) => RunFuture::admitted(make(), permit, DefaultClassifier),
            Err(rejected) => RunFuture::rejected(rejected, DefaultClassifier),
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
        let now_ns = shared.clock.now().as_nanos();
        let counts = shared.window.counts(now_ns);
        let ratio = |part: u32| {
            if counts.calls == 0 {
                0.0
            } else {
                (f64::from(part) / f64::from(counts.calls)).min(1.0)
            }
        };
        CircuitBreakerMetrics {
            state: self.state(),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            failure_ratio: ratio(counts.failures),
            slow_ratio: ratio(counts.slow),
            rejected: shared.rejected.sum(),
        }
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

impl<C> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.telemetry.name())
            .field("word", &self.shared.state.load())
            .finish_non_exhaustive()
    }
}

/// A snapshot of a breaker, from [`CircuitBreaker::metrics`].
///
/// The window's counts can lag concurrent calls by a few (see the window's docs). For the
/// consecutive model, `calls` and `failures` are the current run of failures.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreaker, CircuitBreakerMetrics};
///
/// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
/// breaker.try_acquire()?.success();
/// breaker.try_acquire()?.failure();
/// let m: CircuitBreakerMetrics = breaker.metrics();
/// // The default model counts failures in a row: the success ended the previous run.
/// assert_eq!((m.calls, m.failures), (1, 1));
/// assert_eq!(m.failure_ratio, 1.0);
/// assert_eq!(m.rejected, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerMetrics {
    /// The state as of the last call.
    pub state: CircuitState,
    /// Calls in the window.
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// `failures / calls`, 0 for an empty window.
    pub failure_ratio: f64,
    /// `slow_calls / calls`, 0 for an empty window.
    pub slow_ratio: f64,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
}

// ===== impl Shared =====

const TALLY_EPOCH_SHIFT: u32 = 32;

fn tally_word(epoch: Epoch, t: Tally) -> u64 {
    (u64::from(epoch) << TALLY_EPOCH_SHIFT)
        | (u64::from(t.failures.min(0xffff)) << 16)
        | u64::from(t.successes.min(0xffff))
}

impl<C: Clock> Shared<C> {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.clock.now().as_nanos()
    }

    /// A clock reading `now_ns` as the transitions use it, against the word loaded last.
    #[inline]
    fn at(&self, now_ns: u64) -> Now {
        Now::new(now_ns, self.resolution_ns, self.state.since_ms())
    }

    // Always inlined: the closed path is a few instructions, and out of line the
    // `Result<Ticket, Rejected>` would come back through memory into a wide copy that stalls
    // (see `Refusal`); one build with a single codegen unit left it out of line and an open
    // reject went from 5.5 to 10.9 ns.
    #[inline(always)]
    fn admit(&self) -> Result<Ticket, Rejected> {
        let w = self.state.load();
        // The closed fast path: no clock unless slow calls are timed, no write.
        if w.state() == CircuitState::Closed || w.state() == CircuitState::Disabled {
            let phase = if w.state() == CircuitState::Closed {
                Phase::Closed
            } else {
                Phase::Disabled
            };
            let start_ns = match (phase, self.slow_threshold_ns) {
                (Phase::Closed, Some(_)) => self.now_ns(),
                _ => 0,
            };
            return Ok(Ticket {
                phase,
                epoch: w.epoch(),
                start_ns,
            });
        }
        self.admit_not_closed(w)
            .map_err(|refusal| self.rejection(refusal))
    }

    /// Open, half-open or isolated. An open breaker whose break is surely not over rejects on
    /// the clock's lagging reading alone; everything else takes the exact reading.
    #[inline(never)]
    fn admit_not_closed(&self, w: Word) -> Result<Ticket, Refusal> {
        if w.state() == CircuitState::Open {
            let recent_ns = self.clock.now_lagging().as_nanos();
            let max_lag = self.clock.max_lag();
            // The exact reading in ms is at most this much past the lagging one in ms.
            let lag_ms = crate::clock::saturating_nanos(max_lag).div_ceil(1_000_000);
            let since_ms = self.state.since_ms();
            if let Some(left_ms) = state::surely_open(w, recent_ns / 1_000_000, lag_ms, since_ms) {
                // Counted from the lagging reading: at most `lag_ms` longer than the exact
                // time left, so a caller who waits that long finds the break over.
                return Err(self.refuse(Some(left_ms)));
            }
            if max_lag.is_zero() {
                return self.admit_slow(recent_ns);
            }
        }
        self.admit_slow(self.now_ns())
    }

    // Out of line so that the rejection above, the common case while open, keeps a small
    // frame.
    #[cold]
    #[inline(never)]
    fn admit_slow(&self, now_ns: u64) -> Result<Ticket, Refusal> {
        loop {
            // The tally before the word: see `reset_tally`.
            let tally = self.tally.load(Ordering::Acquire);
            let current = self.state.load();
            let now = self.at(now_ns);
            let decision = state::admit(current, now, &self.timing);
            let next = match decision {
                Admission::Admit { next, .. } | Admission::Reject { next, .. } => next,
            };
            let moves = next.is_some_and(|next| next.epoch() != current.epoch());
            if let Some(next) = next {
                // A transition: its report queues in the order of the CASes (see
                // `transitions`), so the lock is held across the CAS.
                let mut queue = if moves {
                    self.transitions.queue(&self.telemetry)
                } else {
                    None
                };
                if moves && next.state() == CircuitState::HalfOpen {
                    self.reset_tally(tally, next.epoch());
                }
                if next.deadline() != current.deadline() || next.state() != current.state() {
                    // A new deadline, counted from `now.start_ms` or from one this reading has
                    // reached (a re-open after the half-open wait ran out). Only then: a raise
                    // over a deadline left as it was would hide how long it has stood.
                    self.state.raise_since(now.start_ms);
                }
                if self.state.cas(current, next).is_err() {
                    continue;
                }
                if let Some(queue) = &mut queue {
                    queue.push(current, next);
                }
            }
            return match decision {
                Admission::Admit { phase, epoch, .. } => {
                    let ticket = Ticket {
                        phase,
                        epoch,
                        start_ns: now_ns,
                    };
                    if moves {
                        // This caller holds a probe slot already: if a listener panics while
                        // hearing of the transition, the slot goes back.
                        let guard = ReleaseOnUnwind(self, ticket);
                        self.transitions.deliver(&self.telemetry);
                        std::mem::forget(guard);
                    }
                    Ok(ticket)
                }
                Admission::Reject { retry_after_ms, .. } => {
                    if moves {
                        self.transitions.deliver(&self.telemetry);
                    }
                    Err(self.refuse(retry_after_ms))
                }
            };
        }
    }

    /// Starts the tally of the half-open period `epoch` empty, whatever an earlier period
    /// with the same (wrapped) epoch left in it.
    ///
    /// Called before the compare-and-swap that opens the period, with the tally loaded before
    /// the word that CAS replaces. The reset is itself a compare-and-swap from that value, so
    /// a thread that lost the race for the transition cannot wipe the results of probes the
    /// winner has already admitted: those results changed the tally, and the reset fails.
    fn reset_tally(&self, seen: u64, epoch: Epoch) {
        let empty = tally_word(
            epoch,
            Tally {
                successes: 0,
                failures: 0,
            },
        );
        // AcqRel: published to the probes by the word's CAS that follows.
        let _ = self
            .tally
            .compare_exchange(seen, empty, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Counts and reports a rejection decided on a cold path.
    #[inline]
    fn refuse(&self, retry_after_ms: Option<u64>) -> Refusal {
        let refusal = Refusal(retry_after_ms.unwrap_or(Refusal::ISOLATED));
        self.rejected.incr();
        self.telemetry
            .emit(|| EventKind::Rejected(self.rejection(refusal)));
        refusal
    }

    #[inline]
    fn rejection(&self, refusal: Refusal) -> Rejected {
        let open = match refusal.0 {
            Refusal::ISOLATED => CircuitOpen::isolated(self.telemetry.name()),
            ms => CircuitOpen::new(self.telemetry.name(), std::time::Duration::from_millis(ms)),
        };
        Rejected::CircuitOpen(open)
    }

    /// The state a call arriving now would find.
    fn observed_state(&self) -> CircuitState {
        let w = self.state.load();
        match w.state() {
            CircuitState::Open | CircuitState::HalfOpen => {
                state::observed(w, self.at(self.now_ns()), &self.timing)
            }
            other => other,
        }
    }

    /// Records the outcome of the call admitted with `ticket`.
    #[inline]
    pub(crate) fn finish(&self, ticket: Ticket, outcome: Outcome) {
        match ticket.phase {
            Phase::Disabled => {}
            Phase::Closed => {
                if outcome == Outcome::Ignore {
                    return;
                }
                let now_ns = if self.slow_threshold_ns.is_some() || self.window.needs_clock() {
                    self.now_ns()
                } else {
                    0
                };
                let sample = Sample {
                    failure: outcome == Outcome::Failure,
                    slow: self.is_slow(ticket, now_ns),
                };
                let w = self.state.load();
                if w.state() != CircuitState::Closed || w.epoch() != ticket.epoch {
                    // A result from before a transition: it says nothing about this period.
                    return;
                }
                let tripped = if self.window.record(sample, now_ns) {
                    self.trip(ticket.epoch)
                } else {
                    None
                };
                // The sample is counted and the trip made before any listener hears of them;
                // the trip's report is delivered after this event, even if it panics.
                let _deliver = tripped.map(|_| DeliverOnDrop(self));
                self.telemetry.emit(|| EventKind::CallRecorded {
                    failure: sample.failure,
                    slow: sample.slow,
                });
            }
            Phase::Probe => self.finish_probe(ticket, outcome),
        }
    }

    #[inline]
    fn is_slow(&self, ticket: Ticket, now_ns: u64) -> bool {
        self.slow_threshold_ns
            .is_some_and(|threshold| now_ns.saturating_sub(ticket.start_ns) >= threshold)
    }

    /// Opens the closed breaker admitted in `epoch`, if it still is; the transition made, to
    /// report once the caller's own state change is complete.
    #[cold]
    fn trip(&self, epoch: Epoch) -> Option<(Word, Word)> {
        let now_ns = self.now_ns();
        let current = self.state.load();
        let now = self.at(now_ns);
        self.transition(current, |w| {
            let next = state::trip(w, epoch, now, &self.timing)?;
            self.state.raise_since(now.start_ms);
            Some(next)
        })
    }

    #[cold]
    fn finish_probe(&self, ticket: Ticket, outcome: Outcome) {
        if outcome == Outcome::Ignore {
            return self.release(ticket);
        }
        let now_ns = self.now_ns();
        let slow = self.is_slow(ticket, now_ns);
        let failed = outcome == Outcome::Failure || slow;
        let current = self.state.load();
        if current.state() != CircuitState::HalfOpen || current.epoch() != ticket.epoch {
            return;
        }
        let tally = self.add_to_tally(ticket.epoch, failed);
        if tally.successes >= self.timing.success_threshold {
            // Before the CAS that closes: the new closed period must start empty, and no
            // current permit writes the window while half-open.
            self.window.clear();
        }
        let now = self.at(now_ns);
        let settled = self.transition(current, |w| {
            let next = state::settle_probe(w, ticket.epoch, tally, now, &self.timing)?;
            if next.state() == CircuitState::Open {
                // A re-open, with a break counted from `now.start_ms`.
                self.state.raise_since(now.start_ms);
            }
            Some(next)
        });
        // The probe slot is back and the verdict made before any listener hears of it.
        let _deliver = settled.map(|_| DeliverOnDrop(self));
        self.telemetry.emit(|| EventKind::CallRecorded {
            failure: failed,
            slow,
        });
    }

    fn add_to_tally(&self, epoch: Epoch, failed: bool) -> Tally {
        // AcqRel/Acquire: probes of one period must see each other's counts to settle it once.
        let mut current = self.tally.load(Ordering::Acquire);
        loop {
            let mut tally = if (current >> TALLY_EPOCH_SHIFT) as Epoch == epoch {
                Tally {
                    successes: (current & 0xffff) as u32,
                    failures: ((current >> 16) & 0xffff) as u32,
                }
            } else {
                // Defensive: `reset_tally` starts every period at its epoch.
                Tally {
                    successes: 0,
                    failures: 0,
                }
            };
            if failed {
                tally.failures += 1;
            } else {
                tally.successes += 1;
            }
            match self.tally.compare_exchange_weak(
                current,
                tally_word(epoch, tally),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return tally,
                Err(actual) => current = actual,
            }
        }
    }

    /// Ends the call admitted with `ticket` without a result.
    #[inline]
    pub(crate) fn release(&self, ticket: Ticket) {
        if ticket.phase != Phase::Probe {
            // A closed or disabled permit holds nothing.
            return;
        }
        let current = self.state.load();
        self.state
            .update(current, |w| state::release_probe(w, ticket.epoch));
    }

    fn force(&self, to: CircuitState) {
        let current = self.state.load();
        if self.transition(current, |w| state::force(w, to)).is_some() {
            self.transitions.deliver(&self.telemetry);
        }
    }

    /// [`AtomicState::update`] for a CAS that may make a transition: with a listener, under
    /// the lock of the report queue, which gets the transition's report (see `transitions`).
    /// The caller delivers the queue once its own state change is complete.
    fn transition(
        &self,
        current: Word,
        f: impl FnMut(Word) -> Option<Word>,
    ) -> Option<(Word, Word)> {
        let Some(mut queue) = self.transitions.queue(&self.telemetry) else {
            return self.state.update(current, f);
        };
        let done = self.state.update(current, f);
        if let Some((from, to)) = done {
            queue.push(from, to);
        }
        done
    }
}

/// Delivers the queued state changes when dropped: after the events of the call that made the
/// transition, and even if a listener panics on one of those.
struct DeliverOnDrop<'a, C: Clock>(&'a Shared<C>);

impl<C: Clock> Drop for DeliverOnDrop<'_, C> {
    fn drop(&mut self) {
        self.0.transitions.deliver(&self.0.telemetry);
    }
}

/// Releases a probe's slot if a listener unwinds before its permit exists.
struct ReleaseOnUnwind<'a, C: Clock>(&'a Shared<C>, Ticket);

impl<C: Clock> Drop for ReleaseOnUnwind<'_, C> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_cold_admission_result_fits_in_two_registers() {
        // See `Refusal`: larger, it comes back through memory and stalls the caller's copy.
        assert_eq!(std::mem::size_of::<Result<Ticket, Refusal>>(), 16);
    }
}
