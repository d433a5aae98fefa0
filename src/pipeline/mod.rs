//! Pipeline: several policies around one call, in the order that makes them work together.
//!
//! # Order
//!
//! [`Pipeline::builder`] takes any subset of a [`Retry`], a [`CircuitBreaker`], a
//! [`RateLimiter`], a [`Bulkhead`] and a [`Timeout`], in any order, and always runs them the
//! same way, with [`run`](Pipeline::run) for closures or as one tower layer with `layer()`
//! (feature `tower`), outermost first:
//!
//! ```text
//! retry (total deadline, budget)
//!   └─ circuit breaker        every attempt is counted, and an open circuit stops the retries
//!        └─ rate limiter      every attempt takes its own token (or waits its turn)
//!             └─ bulkhead     every attempt waits for its own slot
//!                  └─ timeout every attempt gets its own time, cut to the deadline's rest
//!                       └─ call
//! ```
//!
//! Retry outside the breaker means an open circuit is a rejection the retry does not retry
//! (by default), instead of a retry storm against a dependency known to be down; the breaker
//! outside the bulkhead means load shedding below does not trip it; the timeout inside the
//! bulkhead means time spent waiting for a slot is not charged to the call.
//!
//! The rate limiter sits between the breaker and the bulkhead:
//! - **inside the breaker**, so an attempt the breaker refuses takes no token: a quota is not
//!   spent on calls that are never made. And a limited attempt is not a failure of the
//!   dependency: the breaker's classifier ignores [`Rejected::RateLimited`] (the
//!   [`DefaultClassifier`] ignores every rejection but a timeout; a classifier of your own
//!   should do the same);
//! - **outside the bulkhead**, so an attempt waiting for its turn holds no slot: slots go to
//!   calls that may run now;
//! - **outside the timeout**, so the wait for a token is not charged to the call;
//! - **inside the retry**, so each attempt takes its own token: retries spend the quota too.
//!   A limited attempt is not retried by default; with
//!   [`retry_rejections`](crate::retry::RetryConfigBuilder::retry_rejections) it is, after
//!   the limiter's `retry_after`.
//!
//! With a `max_wait`, an attempt waits for its turn (see the
//! [rate limiter](crate::rate_limiter)); one whose turn is further away is refused at once.
//!
//! A [`Fallback`] goes around the whole pipeline: give it to the builder
//! ([`fallback`](PipelineBuilder::fallback)) and chain its alternatives on `run`'s future
//! (`pipeline.run(..).or_cached().or_value(..)`); with tower, put
//! [`Fallback::layer`](crate::fallback::Fallback::layer) above `pipeline.layer()`.
//!
//! # A custom order
//!
//! Another order can be asked for by name, with
//! [`build_in_order`](PipelineBuilder::build_in_order): say which policy goes outside which. A
//! call runs through the same [`RunFuture`] in either order, with no allocation and no lock:
//! in the recommended order straight through, in a custom one reading the order at each
//! level, which costs a little more per call. With tower, stack the layers by hand in any
//! order you like.
//!
//! # Deadline
//!
//! When the retry has a total [`deadline`](crate::retry::RetryConfigBuilder::deadline), each
//! attempt's timeout is cut to the time left, so the last attempt cannot run past it, and so
//! is a rate limiter's wait for a turn: a turn that would not come before the deadline, with
//! the timer's [`resolution`](crate::timer::Timer::resolution) to spare (a sleep may end that
//! late), is refused at once with [`Rejected::RateLimited`], taking no token, rather than
//! spent on an attempt left no time to make its call. The retry never waits a delay
//! that uses up the time left (it returns the last result instead), so attempts start with
//! time to spare. An attempt the deadline cuts short (its cut timeout runs out) says nothing
//! about the dependency: the breaker does not count it. An attempt left with no time at all
//! is not made, and fails as a timeout of zero: when a late timer woke the retry at the
//! deadline, no policy is asked; when the attempt waited for its turn or a bulkhead slot
//! until the deadline, the call is not started and the breaker does not count it.
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
//! counting nothing), its wait for a rate limiter's turn (giving the turn back, as the
//! limiter's own [`acquire`](RateLimiter::acquire) does) or the retry's sleep (giving back
//! the budget token of the retry that did not start). A token taken by an attempt that went
//! ahead is spent, whatever became of the attempt.
//!
//! # Send
//!
//! [`run`](Pipeline::run) returns a [`RunFuture`], and the tower service
//! ([`PipelineService`], feature `tower`) a [`ResponseFuture`](future::ResponseFuture): named
//! types, `Send` when the closure and the futures it makes are (or the inner service and its
//! future), in the recommended order and in a custom one, so a pipeline can be awaited in a
//! spawned task or an axum handler; a call that is not `Send` still runs, on one thread.
//!
//! # Clone semantics
//!
//! A pipeline holds clones of the handles it was given: it shares their state (breaker,
//! bucket, slots, budget) with every other clone of them.

mod config;
mod custom;
pub mod future;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "tower")]
mod service;

pub use config::{NoFallback, PipelineBuilder};
pub use custom::Stage;
#[cfg(feature = "tower")]
pub use layer::PipelineLayer;
#[cfg(feature = "tower")]
pub use service::PipelineService;

use std::fmt;
use std::future::Future;

use self::custom::Order;
use self::future::RunFuture;
use crate::bulkhead::Bulkhead;
use crate::circuit_breaker::CircuitBreaker;
use crate::classify::{Classifier, DefaultClassifier};
use crate::clock::{Clock, DefaultClock};
use crate::error::{AsRejected, Rejected};
use crate::fallback::Fallback;
use crate::rate_limiter::RateLimiter;
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
    policies: Policies<T, C, P>,
    fallback: Fb,
}

/// What one call of a pipeline runs through: the handles, the order, the classifier. Apart
/// from the fallback, so that a call's future does not name the fallback's type.
#[derive(Clone)]
pub(crate) struct Policies<T, C, P> {
    retry: Option<Retry<T, C>>,
    breaker: Option<CircuitBreaker<C>>,
    limiter: Option<RateLimiter<T, C>>,
    bulkhead: Option<Bulkhead<T>>,
    timeout: Option<Timeout<T>>,
    clock: C,
    // As given to `build_in_order`; `None` for the recommended order.
    custom: Option<Order>,
    // The configured policies in that order: the levels of a call (set by `resolve`).
    order: Order,
    // What a result means, for the retry and the breaker alike.
    classifier: P,
}

impl<T, C, P> Policies<T, C, P> {
    fn has(&self, stage: Stage) -> bool {
        match stage {
            Stage::Retry => self.retry.is_some(),
            Stage::CircuitBreaker => self.breaker.is_some(),
            Stage::RateLimiter => self.limiter.is_some(),
            Stage::Bulkhead => self.bulkhead.is_some(),
            Stage::Timeout => self.timeout.is_some(),
        }
    }

    /// The same policies, with the levels of a call worked out from what is configured.
    fn resolve(mut self) -> Self {
        let order = self.custom.unwrap_or(Order::RECOMMENDED);
        self.order = order.filter(|stage| self.has(stage));
        self
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
        let p = self.policies;
        Pipeline {
            policies: Policies {
                retry: p.retry,
                breaker: p.breaker,
                limiter: p.limiter,
                bulkhead: p.bulkhead,
                timeout: p.timeout,
                clock: p.clock,
                custom: p.custom,
                order: p.order,
                classifier,
            },
            fallback: self.fallback,
        }
    }

    /// The clock the deadline is read on.
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn clock(&self) -> &C {
        &self.policies.clock
    }

    /// Whether the policies run in a [`build_in_order`](PipelineBuilder::build_in_order).
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn is_custom_order(&self) -> bool {
        self.policies.custom.is_some()
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
            policies: Policies {
                retry: None,
                ..self.policies.clone()
            }
            .resolve(),
            fallback: self.fallback.clone(),
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
        self.policies.retry.as_ref()
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
        self.policies.breaker.as_ref()
    }

    /// The rate limiter, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// let pipeline = Pipeline::builder()
    ///     .rate_limiter(RateLimiter::new(RateLimiter::builder().rate(50, Duration::from_secs(60)).build()?))
    ///     .build();
    /// assert_eq!(pipeline.rate_limiter().map(|l| l.config().count()), Some(50));
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn rate_limiter(&self) -> Option<&RateLimiter<T, C>> {
        self.policies.limiter.as_ref()
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
        self.policies.bulkhead.as_ref()
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
        self.policies.timeout.as_ref()
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
    pub fn run<M, F, R, E>(&self, make: M) -> RunFuture<'_, M, F, T, C, P>
    where
        M: FnMut() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected> + AsRejected,
        P: Classifier<R, E>,
    {
        RunFuture::new(&self.policies, make, self.policies.order, None)
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
    pub fn run<M, F, E>(
        &self,
        make: M,
    ) -> crate::fallback::future::RunFuture<'_, RunFuture<'_, M, F, T, C, P>, V, C>
    where
        M: FnMut() -> F,
        F: Future<Output = Result<V, E>>,
        E: From<Rejected> + AsRejected,
        P: Classifier<V, E>,
    {
        let call = RunFuture::new(&self.policies, make, self.policies.order, None);
        crate::fallback::future::RunFuture::new(&self.fallback, call)
    }
}

#[cfg(feature = "tower")]
impl<T: Clone, C: Clock + Clone, Fb, P: Clone> Pipeline<T, C, Fb, P> {
    /// The pipeline's policies as one tower layer, in the same order, with the pipeline's
    /// classifier. A fallback given to the builder is not part of it: put
    /// [`Fallback::layer`](crate::fallback::Fallback::layer), with its alternatives, above
    /// it. Chain [`cloner`](PipelineLayer::cloner) and [`hint`](PipelineLayer::hint) for
    /// requests that are not `Clone` and responses that say when to retry.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::{bulkhead::Bulkhead, retry::Retry, timeout::Timeout};
    /// use std::time::Duration;
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let pipeline = Pipeline::builder()
    ///     .retry(Retry::new(Retry::builder().build()?))
    ///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(8).build()?))
    ///     .timeout(Timeout::new(Timeout::builder().duration(Duration::from_secs(2)).build()?))
    ///     .build();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer())
    ///     .service_fn(|name: &'static str| async move { Ok::<_, BoxError>(format!("hello {name}")) });
    /// assert_eq!(svc.ready().await?.call("tower").await?, "hello tower");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn layer(&self) -> PipelineLayer<T, C, P> {
        PipelineLayer::new(&self.policies)
    }
}

impl<T, C: Clock, Fb, P> fmt::Debug for Pipeline<T, C, Fb, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.policies;
        f.debug_struct("Pipeline")
            .field("retry", &p.retry.as_ref().map(Retry::name))
            .field(
                "circuit_breaker",
                &p.breaker.as_ref().map(CircuitBreaker::name),
            )
            .field("rate_limiter", &p.limiter.as_ref().map(RateLimiter::name))
            .field("bulkhead", &p.bulkhead.as_ref().map(Bulkhead::name))
            .field("timeout", &p.timeout.as_ref().map(|t| t.name()))
            .field("order", &p.order.stages().collect::<Vec<_>>())
            .finish()
    }
}
