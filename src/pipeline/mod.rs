//! Pipeline: several policies around one call, in the order that makes them work together.
//!
//! # Order
//!
//! [`Pipeline::builder`] takes any subset of a [`Retry`], a [`CircuitBreaker`], a [`Bulkhead`]
//! and a [`Timeout`], in any order, and always runs them the same way, with
//! [`run`](Pipeline::run) for closures or as one tower layer with `layer()` (feature `tower`),
//! outermost first:
//!
//! ```text
//! retry (total deadline, budget)
//!   └─ circuit breaker        every attempt is counted, and an open circuit stops the retries
//!        └─ bulkhead          every attempt waits for its own slot
//!             └─ timeout      every attempt gets its own time, cut to the deadline's rest
//!                  └─ call
//! ```
//!
//! Retry outside the breaker means an open circuit is a rejection the retry does not retry
//! (by default), instead of a retry storm against a dependency known to be down; the breaker
//! outside the bulkhead means load shedding below does not trip it; the timeout inside the
//! bulkhead means time spent waiting for a slot is not charged to the call. A
//! [`Fallback`] goes around the whole pipeline: give it to the builder
//! ([`fallback`](PipelineBuilder::fallback)) and chain its alternatives on `run`'s future
//! (`pipeline.run(..).or_cached().or_value(..)`); with tower, put
//! [`Fallback::layer`](crate::fallback::Fallback::layer) above `pipeline.layer()`.
//!
//! # A custom order
//!
//! Another order can be asked for by name, with
//! [`custom_order`](PipelineBuilder::custom_order): say which policy goes outside which. It
//! costs a heap allocation per call (the nesting is decided at run time), so the
//! recommended order stays the fast default. With tower, stack the layers by hand in any
//! order you like.
//!
//! # Deadline
//!
//! When the retry has a total [`deadline`](crate::retry::RetryConfigBuilder::deadline), each
//! attempt's timeout is cut to the time left, so the last attempt cannot run past it. The
//! retry never waits a delay that uses up the time left (it returns the last result
//! instead), so attempts start with time to spare. An attempt the deadline cuts short (its
//! cut timeout runs out) says nothing about the dependency: the breaker does not count it.
//! An attempt left with no time at all (it waited for a bulkhead slot until the deadline, or
//! a late timer woke the retry at the deadline) is not made: the breaker is not asked, the
//! call is not started, and it fails as a timeout of zero.
//!
//! # Errors
//!
//! The caller's error type comes out unchanged: every policy turns its refusals into `E` with
//! `From<Rejected>`.
//!
//! # Examples
//!
//! ```
//! use palisade::pipeline::Pipeline;
//! use palisade::{Rejected, circuit_breaker::CircuitBreaker, retry::Retry, timeout::{Timeout, TimeoutConfig}};
//! use std::time::Duration;
//!
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade::ConfigError> {
//! let pipeline = Pipeline::builder()
//!     .timeout(Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?))
//!     .retry(Retry::new(Retry::builder().max_attempts(3).build()?))
//!     .circuit_breaker(CircuitBreaker::new(CircuitBreaker::builder().build()?))
//!     .build();
//! let out: Result<u32, Rejected> = pipeline.run(|| async { Ok(7) }).await;
//! assert_eq!(out, Ok(7));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))] fn main() {}
//! ```
//!
//! # Cancellation
//!
//! Dropping the future drops the attempt in flight (releasing its slot and breaker permit,
//! counting nothing) or the retry's sleep (giving back the budget token of the retry that
//! did not start).
//!
//! # Send
//!
//! The futures of [`run`](Pipeline::run) are `Send` when the closure and the futures it
//! makes are, in the recommended order and in a custom one, so a pipeline can be awaited in
//! a spawned task or an axum handler; a call that is not `Send` still runs, on one thread.
//!
//! # Clone semantics
//!
//! A pipeline holds clones of the handles it was given: it shares their state (breaker, slots,
//! budget) with every other clone of them.

mod custom;
#[cfg(feature = "tower")]
mod layer;

#[cfg(feature = "tower")]
pub use layer::{Either, EitherFuture, PipelineLayer, PipelineService, Slotted, Stacked};

use std::fmt;
use std::future::Future;
use std::sync::PoisonError;
use std::time::Duration;

use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::CircuitBreaker;
use crate::classify::ByRef;
use crate::classify::{Classifier, DefaultClassifier, Outcome};
use crate::clock::{Clock, DefaultClock, Ticks};
use crate::error::{AsRejected, ConfigError, Elapsed, Rejected};
use crate::fallback::Fallback;
use crate::fallback::future::RunFuture;
use crate::retry::Retry;
use crate::timeout::Timeout;
use crate::timer::{DefaultTimer, Timer};

/// Policies run around a call in the recommended order; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use palisade::pipeline::Pipeline;
///
/// let empty: Pipeline = Pipeline::builder().build();
/// assert!(empty.retry().is_none());
/// ```
#[derive(Clone)]
pub struct Pipeline<T = DefaultTimer, C = DefaultClock, Fb = NoFallback, P = DefaultClassifier> {
    retry: Option<Retry<T, C>>,
    breaker: Option<CircuitBreaker<C>>,
    bulkhead: Option<Bulkhead<T>>,
    timeout: Option<Timeout<T>>,
    clock: C,
    // Outermost first; `None` for the recommended order.
    custom: Option<Vec<Stage>>,
    fallback: Fb,
    // What a result means, for the retry and the breaker alike.
    classifier: P,
}

/// A pipeline without a fallback (the default).
///
/// # Examples
///
/// ```
/// use palisade::pipeline::{NoFallback, Pipeline};
/// use palisade::{classify::DefaultClassifier, clock::DefaultClock, timer::DefaultTimer};
///
/// // The third type parameter of a pipeline built without `fallback`.
/// let pipeline: Pipeline<DefaultTimer, DefaultClock, NoFallback, DefaultClassifier> = Pipeline::builder().build();
/// # let _ = pipeline;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFallback;

/// A policy's place in a [`custom_order`](PipelineBuilder::custom_order).
///
/// # Examples
///
/// ```
/// use palisade::pipeline::{Pipeline, Stage};
/// use palisade::{bulkhead::Bulkhead, retry::Retry};
///
/// let builder = Pipeline::builder()
///     .retry(Retry::new(Retry::builder().build()?))
///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(4).build()?));
/// // Every configured policy must be named, once.
/// let missing = builder.custom_order(&[Stage::Bulkhead]).unwrap_err();
/// assert_eq!(missing.field(), "order");
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The [`Retry`].
    Retry,
    /// The [`CircuitBreaker`].
    CircuitBreaker,
    /// The [`Bulkhead`].
    Bulkhead,
    /// The [`Timeout`].
    Timeout,
}

/// Collects the policies of a [`Pipeline`], in any order.
///
/// # Examples
///
/// ```
/// use palisade::pipeline::Pipeline;
/// use palisade::bulkhead::Bulkhead;
///
/// let pipeline = Pipeline::builder()
///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(4).build()?))
///     .build();
/// assert!(pipeline.bulkhead().is_some());
/// # Ok::<(), palisade::ConfigError>(())
/// ```
pub struct PipelineBuilder<
    T = DefaultTimer,
    C = DefaultClock,
    Fb = NoFallback,
    P = DefaultClassifier,
> {
    pipeline: Pipeline<T, C, Fb, P>,
}

impl<T, C: Clock, Fb, P> fmt::Debug for PipelineBuilder<T, C, Fb, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("pipeline", &self.pipeline)
            .finish()
    }
}

impl Pipeline {
    /// A builder with no policies, reading the [`DefaultClock`] for the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::timeout::Timeout;
    /// use std::time::Duration;
    ///
    /// let pipeline = Pipeline::builder()
    ///     .timeout(Timeout::new(Timeout::builder().duration(Duration::from_secs(2)).build()?))
    ///     .build();
    /// assert_eq!(pipeline.timeout().map(|t| t.duration()), Some(Duration::from_secs(2)));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::with_clock(DefaultClock::default())
    }
}

impl<T, C> PipelineBuilder<T, C> {
    /// A builder with no policies, reading `clock` for the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use palisade::clock::MonotonicClock;
    /// use palisade::pipeline::PipelineBuilder;
    ///
    /// let clock = MonotonicClock::new();
    /// let pipeline = PipelineBuilder::with_clock(clock)
    ///     .circuit_breaker(CircuitBreaker::with_clock(CircuitBreaker::builder().build()?, clock))
    ///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(8).build()?))
    ///     .build();
    /// assert!(pipeline.circuit_breaker().is_some());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn with_clock(clock: C) -> Self {
        PipelineBuilder {
            pipeline: Pipeline {
                retry: None,
                breaker: None,
                bulkhead: None,
                timeout: None,
                clock,
                custom: None,
                fallback: NoFallback,
                classifier: DefaultClassifier,
            },
        }
    }
}

impl<T, C, P> PipelineBuilder<T, C, NoFallback, P> {
    /// A fallback around everything: [`Pipeline::run`] then returns the fallback chain's
    /// primary future, on which to chain the alternatives (`.or_cached()`, `.or_value(..)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use palisade::pipeline::Pipeline;
    /// use palisade::retry::Retry;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let pipeline = Pipeline::builder()
    ///     .retry(Retry::new(Retry::builder().build()?))
    ///     .fallback(Fallback::new(Fallback::builder().build()?))
    ///     .build();
    /// let out: Result<String, palisade::Rejected> = pipeline
    ///     .run(|| async { Err(palisade::error::Elapsed::new("db", std::time::Duration::from_secs(1)).into()) })
    ///     .or_value("default".to_string())
    ///     .await;
    /// assert_eq!(out.as_deref(), Ok("default"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn fallback<V>(self, fallback: Fallback<V, C>) -> PipelineBuilder<T, C, Fallback<V, C>, P> {
        let p = self.pipeline;
        PipelineBuilder {
            pipeline: Pipeline {
                retry: p.retry,
                breaker: p.breaker,
                bulkhead: p.bulkhead,
                timeout: p.timeout,
                clock: p.clock,
                custom: p.custom,
                fallback,
                classifier: p.classifier,
            },
        }
    }
}

impl<T, C, Fb, P> PipelineBuilder<T, C, Fb, P> {
    /// What a result means for the whole pipeline: the retry retries what `classifier`
    /// calls a [`Failure`](Outcome::Failure), and the breaker counts it, so an `Ok(503)` can
    /// be a failure for both. Default: the [`DefaultClassifier`].
    ///
    /// With a classifier of your own, the retry retries what it calls a failure and nothing
    /// else, as [`RunFuture::classify`](crate::retry::future::RunFuture::classify) does (the
    /// retry's `retry_rejections` applies to the rejections it reports through
    /// [`Classifier::rejection`], which the default does). An attempt the retry
    /// deadline cut short is never counted by the breaker, whatever the classifier says.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::{Outcome, Rejected, circuit_breaker::CircuitBreaker};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().consecutive_failures(1).build()?);
    /// let pipeline = Pipeline::builder()
    ///     .circuit_breaker(breaker.clone())
    ///     .classify(|r: &Result<u16, Rejected>| match r {
    ///         Ok(status) if *status >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .build();
    /// assert_eq!(pipeline.run(|| async { Ok(503) }).await, Ok(503));
    /// assert!(breaker.try_acquire().is_err(), "the 503 opened the breaker");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> PipelineBuilder<T, C, Fb, Cl2> {
        PipelineBuilder {
            pipeline: self.pipeline.classify(classifier),
        }
    }

    /// Retries around everything else; its deadline, if any, bounds the whole run.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::retry::Retry;
    ///
    /// let pipeline = Pipeline::builder()
    ///     .retry(Retry::new(Retry::builder().max_attempts(3).build()?))
    ///     .build();
    /// assert_eq!(pipeline.retry().map(|r| r.config().max_attempts()), Some(3));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn retry(mut self, retry: Retry<T, C>) -> Self {
        self.pipeline.retry = Some(retry);
        self
    }

    /// A breaker around each attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use palisade::pipeline::Pipeline;
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().name("search").build()?);
    /// let pipeline = Pipeline::builder().circuit_breaker(breaker.clone()).build();
    /// // The pipeline holds a clone: the same breaker.
    /// breaker.isolate();
    /// assert!(pipeline.circuit_breaker().unwrap().try_acquire().is_err());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker<C>) -> Self {
        self.pipeline.breaker = Some(breaker);
        self
    }

    /// A bulkhead slot for each attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use palisade::pipeline::Pipeline;
    ///
    /// let pipeline = Pipeline::builder()
    ///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(16).build()?))
    ///     .build();
    /// assert_eq!(pipeline.bulkhead().map(|b| b.metrics().max_concurrent), Some(16));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn bulkhead(mut self, bulkhead: Bulkhead<T>) -> Self {
        self.pipeline.bulkhead = Some(bulkhead);
        self
    }

    /// A timeout on each attempt, cut to the retry deadline's rest.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::{Rejected, timeout::Timeout};
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let pipeline = Pipeline::builder()
    ///     .timeout(Timeout::new(Timeout::builder().duration(Duration::from_millis(100)).build()?))
    ///     .build();
    /// let slow: Result<(), Rejected> = pipeline
    ///     .run(|| async {
    ///         tokio::time::sleep(Duration::from_secs(1)).await;
    ///         Ok(())
    ///     })
    ///     .await;
    /// assert!(slow.is_err_and(|r| r.is_timeout()));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn timeout(mut self, timeout: Timeout<T>) -> Self {
        self.pipeline.timeout = Some(timeout);
        self
    }

    /// Runs the policies in `order`, outermost first, instead of the recommended order.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `order` when a stage appears twice, or when a configured
    /// policy is missing from it (it would silently do nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::{Pipeline, Stage};
    /// use palisade::{bulkhead::Bulkhead, retry::Retry};
    ///
    /// // Each retry attempt waits for a slot of its own (the default), or, here, one slot is
    /// // held across all the attempts of a call.
    /// let pipeline = Pipeline::builder()
    ///     .retry(Retry::new(Retry::builder().build()?))
    ///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(4).build()?))
    ///     .custom_order(&[Stage::Bulkhead, Stage::Retry])?
    ///     .build();
    /// # let _ = pipeline;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn custom_order(mut self, order: &[Stage]) -> Result<Self, ConfigError> {
        for (i, stage) in order.iter().enumerate() {
            if order[..i].contains(stage) {
                return Err(ConfigError::new(
                    "order",
                    "must name each stage at most once",
                    order,
                ));
            }
        }
        let p = &self.pipeline;
        let configured = [
            (p.retry.is_some(), Stage::Retry),
            (p.breaker.is_some(), Stage::CircuitBreaker),
            (p.bulkhead.is_some(), Stage::Bulkhead),
            (p.timeout.is_some(), Stage::Timeout),
        ];
        if let Some((_, missing)) = configured
            .iter()
            .find(|(set, stage)| *set && !order.contains(stage))
        {
            return Err(ConfigError::new(
                "order",
                format!("must name every configured policy ({missing:?} is missing)"),
                order,
            ));
        }
        self.pipeline.custom = Some(order.to_vec());
        Ok(self)
    }

    /// The pipeline; the order of the calls above does not matter.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::{bulkhead::Bulkhead, retry::Retry};
    ///
    /// // Given in any order, run in the recommended one (retry outside the bulkhead).
    /// let pipeline = Pipeline::builder()
    ///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(4).build()?))
    ///     .retry(Retry::new(Retry::builder().build()?))
    ///     .build();
    /// assert!(pipeline.retry().is_some() && pipeline.bulkhead().is_some());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn build(self) -> Pipeline<T, C, Fb, P> {
        self.pipeline
    }
}

impl<T, C, Fb, P> Pipeline<T, C, Fb, P> {
    /// The same policies with `classifier` deciding what a result means; see
    /// [`PipelineBuilder::classify`]. For a pipeline that comes built, such as a
    /// [`Preset`](crate::presets::Preset)'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::presets::Preset;
    /// use palisade::{Outcome, Rejected};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # fn main() -> Result<(), palisade::ConfigError> {
    /// let pipeline = Preset::external_api()
    ///     .build("payments")?
    ///     .classify(|r: &Result<u16, Rejected>| match r {
    ///         Ok(status) if *status >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     });
    /// # let _ = pipeline;
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> Pipeline<T, C, Fb, Cl2> {
        Pipeline {
            retry: self.retry,
            breaker: self.breaker,
            bulkhead: self.bulkhead,
            timeout: self.timeout,
            clock: self.clock,
            custom: self.custom,
            fallback: self.fallback,
            classifier,
        }
    }

    /// The clock the deadline is read on.
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn clock(&self) -> &C {
        &self.clock
    }

    /// Whether the policies run in a [`custom_order`](PipelineBuilder::custom_order).
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn is_custom_order(&self) -> bool {
        self.custom.is_some()
    }

    /// The same policies without the retry, for a request that cannot be sent twice.
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn without_retry(&self) -> Self
    where
        T: Clone,
        C: Clone,
        Fb: Clone,
        P: Clone,
    {
        Pipeline {
            retry: None,
            ..self.clone()
        }
    }

    /// The retry, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::retry::Retry;
    ///
    /// let pipeline = Pipeline::builder().retry(Retry::new(Retry::builder().name("api").build()?)).build();
    /// assert_eq!(pipeline.retry().map(|r| r.name()), Some("api"));
    /// assert!(Pipeline::builder().build().retry().is_none());
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn retry(&self) -> Option<&Retry<T, C>> {
        self.retry.as_ref()
    }

    /// The circuit breaker, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::{CircuitBreaker, CircuitState};
    /// use palisade::pipeline::Pipeline;
    ///
    /// let pipeline = Pipeline::builder()
    ///     .circuit_breaker(CircuitBreaker::new(CircuitBreaker::builder().build()?))
    ///     .build();
    /// assert_eq!(pipeline.circuit_breaker().map(|b| b.state()), Some(CircuitState::Closed));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn circuit_breaker(&self) -> Option<&CircuitBreaker<C>> {
        self.breaker.as_ref()
    }

    /// The bulkhead, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::bulkhead::Bulkhead;
    /// use palisade::pipeline::Pipeline;
    ///
    /// let pipeline = Pipeline::builder()
    ///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(2).build()?))
    ///     .build();
    /// let bulkhead = pipeline.bulkhead().unwrap();
    /// bulkhead.set_max_concurrent(4)?;
    /// assert_eq!(bulkhead.metrics().available, 4);
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn bulkhead(&self) -> Option<&Bulkhead<T>> {
        self.bulkhead.as_ref()
    }

    /// The timeout, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::timeout::Timeout;
    /// use std::time::Duration;
    ///
    /// let pipeline = Pipeline::builder()
    ///     .timeout(Timeout::new(Timeout::builder().duration(Duration::from_millis(500)).build()?))
    ///     .build();
    /// assert_eq!(pipeline.timeout().unwrap().duration(), Duration::from_millis(500));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn timeout(&self) -> Option<&Timeout<T>> {
        self.timeout.as_ref()
    }
}

impl<T, C, P> Pipeline<T, C, NoFallback, P>
where
    T: Timer + Clone,
    C: Clock,
{
    /// Runs the future made by `make` through every policy of the pipeline; `make` is called
    /// once per attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::{Rejected, bulkhead::Bulkhead};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let pipeline = Pipeline::builder()
    ///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?))
    ///     .build();
    /// let out: Result<&str, Rejected> = pipeline.run(|| async { Ok("done") }).await;
    /// assert_eq!(out, Ok("done"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the attempt in flight or the retry's sleep; see the module
    /// docs.
    pub async fn run<M, F, R, E>(&self, make: M) -> Result<R, E>
    where
        M: FnMut() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected> + AsRejected,
        P: Classifier<R, E>,
    {
        self.run_policies(make).await
    }
}

impl<T, C, V, P> Pipeline<T, C, Fallback<V, C>, P>
where
    T: Timer + Clone,
    C: Clock,
{
    /// Runs the future made by `make` through every policy, inside the fallback: chain the
    /// fallback's alternatives on the returned future (see
    /// [`PipelineBuilder::fallback`]).
    ///
    /// # Cancel safety
    ///
    /// As for a pipeline without a fallback.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::fallback::Fallback;
    /// use palisade::pipeline::Pipeline;
    /// use palisade::{Rejected, bulkhead::Bulkhead};
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
    /// let pipeline = Pipeline::builder()
    ///     .bulkhead(bulkhead.clone())
    ///     .fallback(Fallback::new(Fallback::builder().cache_max_age(Duration::from_secs(60)).build()?))
    ///     .build();
    /// let fresh: Result<u32, Rejected> = pipeline.run(|| async { Ok(5) }).or_cached().await;
    /// assert_eq!(fresh, Ok(5));
    /// // The bulkhead is full: the fallback serves the last good answer.
    /// let _held = bulkhead.try_acquire().unwrap();
    /// let cached: Result<u32, Rejected> = pipeline.run(|| async { Ok(6) }).or_cached().await;
    /// assert_eq!(cached, Ok(5));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn run<'a, M, F, E>(
        &'a self,
        make: M,
    ) -> RunFuture<'a, impl Future<Output = Result<V, E>> + 'a, V, C>
    where
        M: FnMut() -> F + 'a,
        F: Future<Output = Result<V, E>> + 'a,
        E: From<Rejected> + AsRejected + 'a,
        V: 'a,
        P: Classifier<V, E>,
    {
        RunFuture::new(&self.fallback, self.run_policies(make))
    }
}

impl<T, C, Fb, P> Pipeline<T, C, Fb, P>
where
    T: Timer + Clone,
    C: Clock,
{
    async fn run_policies<M, F, R, E>(&self, mut make: M) -> Result<R, E>
    where
        M: FnMut() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected> + AsRejected,
        P: Classifier<R, E>,
    {
        // The clock is only read when a deadline needs it.
        let deadline = self.retry.as_ref().and_then(|r| r.config().deadline());
        // Each attempt calls `make` only once it is admitted (breaker closed, slot held): a
        // refused attempt never runs the caller's code. The lock lets every attempt's future
        // reach `make` through a shared reference, and keeps this future `Send` when `make`
        // is (a `RefCell` is not `Sync`); attempts are sequential, so it is never contended.
        let make = std::sync::Mutex::new(&mut make);
        let make_one = || (make.lock().unwrap_or_else(PoisonError::into_inner))();
        if let Some(order) = &self.custom {
            // Boxed once per call: four levels, each the size of the largest policy's future,
            // would otherwise make every call's future larger, the recommended order's too.
            return Box::pin(self.run_custom(order, &make_one, deadline)).await;
        }
        match &self.retry {
            Some(retry) => {
                let mut started = None;
                retry
                    .run_with_attempt(|n| {
                        // Read after the retry's own reading at its first attempt: the time
                        // left here is then never less than the retry's, so an attempt it
                        // starts with time left has time left here too.
                        if n == 1 && deadline.is_some() {
                            started = Some(self.clock.now());
                        }
                        self.attempt(make_one, started)
                    })
                    .classify(ByRef(&self.classifier))
                    .await
            }
            None => self.attempt(make_one, None).await,
        }
    }

    /// The time the current attempt may take: the timeout, cut to the deadline's rest.
    fn attempt_time(&self, timeout: &Timeout<T>, started: Option<Ticks>) -> Duration {
        let deadline = self.retry.as_ref().and_then(|r| r.config().deadline());
        match (deadline, started) {
            (Some(deadline), Some(started)) => {
                let spent = self.clock.now().saturating_duration_since(started);
                timeout.duration().min(deadline.saturating_sub(spent))
            }
            _ => timeout.duration(),
        }
    }

    /// The call under `timeout` for `time`; the flag says whether the deadline, not the
    /// timeout's own duration, ended it (`time` was cut and ran out, or there was none).
    async fn timed<G, F, R, E>(
        &self,
        timeout: &Timeout<T>,
        time: Duration,
        make: G,
    ) -> (Result<R, E>, bool)
    where
        G: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected>,
    {
        if time.is_zero() {
            // The deadline has passed: a call with no time is not started.
            let elapsed = Elapsed::new(timeout.name(), time);
            return (Err(E::from(Rejected::Timeout(elapsed))), true);
        }
        let mut answered = false;
        let call = async {
            let out = make().await;
            answered = true;
            out
        };
        let out = timeout.run_once_for(call, time).await;
        (out, !answered && time < timeout.duration())
    }

    /// One attempt: breaker, then bulkhead, then timeout, around the call `make` makes.
    ///
    /// An attempt that the retry deadline cuts short (its timeout cut to the time left, and
    /// run out) or leaves no time at all says nothing about the dependency: the breaker does
    /// not count it, and an attempt with no time left does not ask the breaker at all.
    /// `started` is the clock at the retry's first attempt, when it has a deadline.
    pub(crate) async fn attempt<G, F, R, E>(&self, make: G, started: Option<Ticks>) -> Result<R, E>
    where
        G: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected> + AsRejected,
        P: Classifier<R, E>,
    {
        if let Some(t) = &self.timeout {
            if started.is_some() && self.attempt_time(t, started).is_zero() {
                return self.timed(t, Duration::ZERO, make).await.0;
            }
        }
        // The timeout is computed when the attempt starts, after any wait for a slot. The
        // bulkhead passes the timeout's verdict out in its `Ok`; its own rejection is `Err`.
        let timed = || async move {
            Ok::<_, E>(match &self.timeout {
                Some(t) => self.timed(t, self.attempt_time(t, started), make).await,
                None => (make().await, false),
            })
        };
        let slotted = || async move {
            let out = match &self.bulkhead {
                Some(b) => b.run(timed).await,
                None => timed().await,
            };
            out.unwrap_or_else(|full: E| (Err(full), false))
        };
        match &self.breaker {
            Some(cb) => {
                let permit = match cb.try_acquire() {
                    Ok(permit) => permit,
                    Err(open) => return Err(E::from(open)),
                };
                let (out, was_cut) = slotted().await;
                permit.record(match was_cut {
                    true => Outcome::Ignore,
                    false => self.classifier.classify(&out),
                });
                out
            }
            None => slotted().await.0,
        }
    }
}

impl<T, C: Clock, Fb, P> fmt::Debug for Pipeline<T, C, Fb, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("retry", &self.retry.as_ref().map(Retry::name))
            .field(
                "circuit_breaker",
                &self.breaker.as_ref().map(CircuitBreaker::name),
            )
            .field("bulkhead", &self.bulkhead.as_ref().map(Bulkhead::name))
            .field("timeout", &self.timeout.as_ref().map(|t| t.name()))
            .finish()
    }
}
