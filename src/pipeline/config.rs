//! [`PipelineBuilder`]: collects the policies of a [`Pipeline`], in any order, and checks a
//! custom order against them.

use std::fmt;

use super::custom::Order;
use super::{Pipeline, Policies, Stage};
use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::CircuitBreaker;
use crate::classify::DefaultClassifier;
use crate::clock::{Clock, DefaultClock};
use crate::error::ConfigError;
use crate::fallback::Fallback;
use crate::rate_limiter::RateLimiter;
use crate::retry::Retry;
use crate::timeout::Timeout;
use crate::timer::DefaultTimer;

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
                policies: Policies {
                    retry: None,
                    breaker: None,
                    limiter: None,
                    bulkhead: None,
                    timeout: None,
                    clock,
                    custom: None,
                    order: Order::RECOMMENDED.filter(|_| false),
                    classifier: DefaultClassifier,
                },
                fallback: NoFallback,
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
        PipelineBuilder {
            pipeline: Pipeline {
                policies: self.pipeline.policies,
                fallback,
            },
        }
    }
}

impl<T, C, Fb, P> PipelineBuilder<T, C, Fb, P> {
    /// What a result means for the whole pipeline: the retry retries what `classifier`
    /// calls a [`Failure`](crate::Outcome::Failure), and the breaker counts it, so an `Ok(503)` can
    /// be a failure for both. Default: the [`DefaultClassifier`].
    ///
    /// With a classifier of your own, the retry retries what it calls a failure and nothing
    /// else, as [`RunFuture::classify`](crate::retry::future::RunFuture::classify) does (the
    /// retry's `retry_rejections` applies to the rejections it reports through
    /// [`Classifier::rejection`](crate::Classifier::rejection), which the default does). An
    /// attempt the retry deadline cut short is never counted by the breaker, whatever the
    /// classifier says.
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
        self.pipeline.policies.retry = Some(retry);
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
        self.pipeline.policies.breaker = Some(breaker);
        self
    }

    /// A turn of the rate limiter for each attempt: inside the breaker (an attempt the
    /// breaker refuses takes no token) and outside the bulkhead (an attempt waiting for its
    /// turn holds no slot). With a `max_wait`, an attempt waits for its turn, within what is
    /// left of the retry's deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(60)).build()?);
    /// let pipeline = Pipeline::builder().rate_limiter(limiter.clone()).build();
    /// // The pipeline holds a clone: the same bucket.
    /// limiter.try_acquire()?;
    /// assert!(pipeline.rate_limiter().unwrap().try_acquire().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rate_limiter(mut self, limiter: RateLimiter<T, C>) -> Self {
        self.pipeline.policies.limiter = Some(limiter);
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
        self.pipeline.policies.bulkhead = Some(bulkhead);
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
        self.pipeline.policies.timeout = Some(timeout);
        self
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
        Pipeline {
            policies: self.pipeline.policies.resolve(),
            fallback: self.pipeline.fallback,
        }
    }

    /// The pipeline, running its policies in `order`, outermost first, instead of the
    /// recommended order.
    ///
    /// It ends the builder, so the order is checked against every policy the pipeline will
    /// have: a policy cannot be added after it and be left out of the order.
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
    ///     .build_in_order(&[Stage::Bulkhead, Stage::Retry])?;
    /// # let _ = pipeline;
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn build_in_order(self, order: &[Stage]) -> Result<Pipeline<T, C, Fb, P>, ConfigError> {
        let p = &self.pipeline.policies;
        let order = check_order(order, |stage| p.has(stage))?;
        let mut pipeline = self.pipeline;
        pipeline.policies.custom = Some(order);
        Ok(PipelineBuilder { pipeline }.build())
    }
}

/// A custom order, checked against the configured policies (`configured` says which are).
fn check_order(stages: &[Stage], configured: impl Fn(Stage) -> bool) -> Result<Order, ConfigError> {
    for (i, stage) in stages.iter().enumerate() {
        if stages[..i].contains(stage) {
            return Err(ConfigError::new(
                "order",
                "must name each stage at most once",
                stages,
            ));
        }
    }
    if let Some(missing) = Order::RECOMMENDED
        .stages()
        .find(|&stage| configured(stage) && !stages.contains(&stage))
    {
        return Err(ConfigError::new(
            "order",
            format!("must name every configured policy ({missing:?} is missing)"),
            stages,
        ));
    }
    Ok(Order::new(stages))
}
