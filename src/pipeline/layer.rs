//! [`PipelineLayer`]: a pipeline's policies as one tower layer, in the pipeline's order.

use tower::Layer;

use super::Policies;
use super::service::{PipelineService, wrap};
use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::classify::DefaultClassifier;
use crate::clock::{Clock, DefaultClock};
use crate::rate_limiter::RateLimiterLayer;
use crate::retry::{CloneRequest, NoHint, RetryLayer};
use crate::timeout::TimeoutLayer;
use crate::timer::{DefaultTimer, Timer};

/// A pipeline's policies as one tower layer, in the pipeline's order; from
/// [`Pipeline::layer`](super::Pipeline::layer).
///
/// Each attempt's timeout is the configured one: a retry deadline is not visible to separate
/// tower layers, so unlike [`Pipeline::run`](super::Pipeline::run) the layer does not cut the last attempt's
/// timeout to it, nor a rate limiter's wait for a turn (which is the limiter's `max_wait` at
/// most, in `poll_ready`).
///
/// # Examples
///
/// ```
/// use palisade::pipeline::Pipeline;
/// use palisade::{bulkhead::Bulkhead, retry::Retry};
/// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let pipeline = Pipeline::builder()
///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(8).build()?))
///     .retry(Retry::new(Retry::builder().build()?))
///     .build();
/// let mut svc = ServiceBuilder::new()
///     .layer(pipeline.layer())
///     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) });
/// assert_eq!(svc.ready().await?.call(1).await?, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PipelineLayer<
    T = DefaultTimer,
    C: Clock = DefaultClock,
    P = DefaultClassifier,
    RC = CloneRequest,
    H = NoHint,
> {
    retry: Option<RetryLayer<T, C, P, RC, H>>,
    breaker: Option<CircuitBreakerLayer<C, P>>,
    limiter: Option<RateLimiterLayer<T, C>>,
    bulkhead: Option<BulkheadLayer<T>>,
    timeout: Option<TimeoutLayer<T>>,
}

impl<T: Clone, C: Clock + Clone, P: Clone> PipelineLayer<T, C, P> {
    pub(super) fn new(p: &Policies<T, C, P>) -> Self {
        PipelineLayer {
            retry: p
                .retry
                .as_ref()
                .map(|r| r.layer().classify(p.classifier.clone())),
            breaker: p
                .breaker
                .as_ref()
                .map(|b| b.layer().classify(p.classifier.clone())),
            limiter: p.limiter.as_ref().map(|l| l.layer()),
            bulkhead: p.bulkhead.as_ref().map(|b| b.layer()),
            timeout: p.timeout.as_ref().map(|t| t.layer()),
        }
    }
}

impl<T, C: Clock, P, RC, H> PipelineLayer<T, C, P, RC, H> {
    /// What a result means to the retry and the breaker alike: the retry retries what
    /// `classifier` calls a [`Failure`](crate::Outcome::Failure) and the breaker counts it,
    /// so an `Ok(503)` can be a failure for both.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::pipeline::Pipeline;
    /// use palisade::{Outcome, retry::Retry};
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let pipeline = Pipeline::builder().retry(Retry::new(Retry::builder().build()?)).build();
    /// let calls = std::sync::atomic::AtomicU32::new(0);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(pipeline.layer().classify(|r: &Result<u16, BoxError>| match r {
    ///         Ok(status) if *status >= 500 => Outcome::Failure,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     }))
    ///     .service_fn(|_: ()| {
    ///         let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ///         async move { Ok::<_, BoxError>(if n == 0 { 503 } else { 200 }) }
    ///     });
    /// assert_eq!(svc.ready().await?.call(()).await?, 200, "the 503 was retried");
    /// # Ok(())
    /// # }
    /// ```
    pub fn classify<Cl: Clone>(self, classifier: Cl) -> PipelineLayer<T, C, Cl, RC, H> {
        PipelineLayer {
            retry: self.retry.map(|r| r.classify(classifier.clone())),
            breaker: self.breaker.map(|b| b.classify(classifier)),
            limiter: self.limiter,
            bulkhead: self.bulkhead,
            timeout: self.timeout,
        }
    }

    /// Copies requests for the retry with `cloner` instead of `Clone` (see
    /// [`RetryLayer::cloner`]); for `http::Request` with a body, or reqwest's `try_clone`.
    pub fn cloner<RC2>(self, cloner: RC2) -> PipelineLayer<T, C, P, RC2, H> {
        PipelineLayer {
            retry: self.retry.map(|r| r.cloner(cloner)),
            breaker: self.breaker,
            limiter: self.limiter,
            bulkhead: self.bulkhead,
            timeout: self.timeout,
        }
    }

    /// Takes the retry's delays from responses when `hint` returns one (a `Retry-After`;
    /// see [`RetryLayer::hint`]).
    pub fn hint<H2>(self, hint: H2) -> PipelineLayer<T, C, P, RC, H2> {
        PipelineLayer {
            retry: self.retry.map(|r| r.hint(hint)),
            breaker: self.breaker,
            limiter: self.limiter,
            bulkhead: self.bulkhead,
            timeout: self.timeout,
        }
    }
}

impl<S, T, C, P, RC, H> Layer<S> for PipelineLayer<T, C, P, RC, H>
where
    S: Clone,
    T: Timer + Clone,
    C: Clock + Clone,
    P: Clone,
    RC: Clone,
    H: Clone,
{
    type Service = PipelineService<S, T, C, P, RC, H>;

    fn layer(&self, inner: S) -> Self::Service {
        let timed = wrap(self.timeout.as_ref(), inner);
        let slotted = wrap(self.bulkhead.as_ref(), timed);
        let limited = wrap(self.limiter.as_ref(), slotted);
        let guarded = wrap(self.breaker.as_ref(), limited);
        PipelineService::new(wrap(self.retry.as_ref(), guarded))
    }
}
