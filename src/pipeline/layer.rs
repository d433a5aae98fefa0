//! The pipeline as one tower layer: the same policies, in the same order.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::Pipeline;
use crate::bulkhead::{BulkheadLayer, BulkheadService};
use crate::circuit_breaker::{CircuitBreakerLayer, CircuitBreakerService};
use crate::classify::DefaultClassifier;
use crate::clock::Clock;
use crate::error::Rejected;
use crate::retry::{CloneRequest, NoHint, RetryLayer, RetryService};
use crate::timeout::{ConfiguredDuration, TimeoutLayer, TimeoutService};
use crate::timer::Timer;

/// A service that is either `A` (a policy is configured) or `B` (it is not).
#[derive(Debug, Clone)]
pub enum Either<A, B> {
    /// The policy's service.
    With(A),
    /// The inner service, untouched.
    Without(B),
}

impl<A, B, Req> Service<Req> for Either<A, B>
where
    A: Service<Req>,
    B: Service<Req, Response = A::Response, Error = A::Error>,
{
    type Response = A::Response;
    type Error = A::Error;
    type Future = EitherFuture<A::Future, B::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), A::Error>> {
        match self {
            Either::With(a) => a.poll_ready(cx),
            Either::Without(b) => b.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Either::With(a) => EitherFuture {
                inner: Inner::With { fut: a.call(req) },
            },
            Either::Without(b) => EitherFuture {
                inner: Inner::Without { fut: b.call(req) },
            },
        }
    }
}

pin_project! {
    /// The response future of [`Either`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct EitherFuture<A, B> {
        #[pin]
        inner: Inner<A, B>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<A, B> {
        With { #[pin] fut: A },
        Without { #[pin] fut: B },
    }
}

impl<A, B, T> Future for EitherFuture<A, B>
where
    A: Future<Output = T>,
    B: Future<Output = T>,
{
    type Output = T;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project().inner.project() {
            InnerProj::With { fut } => fut.poll(cx),
            InnerProj::Without { fut } => fut.poll(cx),
        }
    }
}

fn wrap<L: Layer<S>, S>(layer: Option<&L>, inner: S) -> Either<L::Service, S> {
    match layer {
        Some(layer) => Either::With(layer.layer(inner)),
        None => Either::Without(inner),
    }
}

/// The service a [`PipelineLayer`] makes: the configured policies around `S`, outermost
/// first retry, circuit breaker, bulkhead, timeout.
///
/// `P` is what a result means to the retry and the breaker alike (the [`DefaultClassifier`],
/// or the one given to [`PipelineLayer::classify`]); `RC` copies requests for the retry and
/// `H` takes delays from responses.
pub type PipelineService<S, T, C, P = DefaultClassifier, RC = CloneRequest, H = NoHint> =
    Either<RetryService<Stacked<S, T, C, P>, T, C, P, RC, H>, Stacked<S, T, C, P>>;

/// The breaker, bulkhead and timeout part of a [`PipelineService`].
pub type Stacked<S, T, C, P = DefaultClassifier> =
    Either<CircuitBreakerService<Slotted<S, T>, C, P>, Slotted<S, T>>;

/// The bulkhead and timeout part of a [`PipelineService`].
pub type Slotted<S, T> = Either<
    BulkheadService<Either<TimeoutService<S, T, ConfiguredDuration>, S>, T>,
    Either<TimeoutService<S, T, ConfiguredDuration>, S>,
>;

/// A pipeline's policies as one tower layer, in the pipeline's order; from
/// [`Pipeline::layer`].
///
/// Each attempt's timeout is the configured one: a retry deadline is not visible to separate
/// tower layers, so unlike [`Pipeline::run`] the layer does not cut the last attempt's
/// timeout to it.
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
pub struct PipelineLayer<T, C: Clock, P = DefaultClassifier, RC = CloneRequest, H = NoHint> {
    retry: Option<RetryLayer<T, C, P, RC, H>>,
    breaker: Option<CircuitBreakerLayer<C, P>>,
    bulkhead: Option<BulkheadLayer<T>>,
    timeout: Option<TimeoutLayer<T>>,
}

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
        PipelineLayer {
            retry: self
                .retry
                .as_ref()
                .map(|r| r.layer().classify(self.classifier.clone())),
            breaker: self
                .breaker
                .as_ref()
                .map(|b| b.layer().classify(self.classifier.clone())),
            bulkhead: self.bulkhead.as_ref().map(|b| b.layer()),
            timeout: self.timeout.as_ref().map(|t| t.layer()),
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
        let guarded = wrap(self.breaker.as_ref(), slotted);
        wrap(self.retry.as_ref(), guarded)
    }
}

/// A compile-time reminder of the contract: every layer keeps the inner error type.
#[allow(dead_code)]
fn _error_type_is_kept<S, Req, T, C>(
    svc: PipelineService<S, T, C>,
) -> impl Service<Req, Error = S::Error>
where
    S: Service<Req> + Clone,
    S::Error: From<Rejected> + crate::AsRejected,
    Req: Clone,
    T: Timer + Clone + Send + Sync,
    T::Sleep: Send + Sync + 'static,
    C: Clock + Clone,
{
    svc
}
