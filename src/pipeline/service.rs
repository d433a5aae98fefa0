//! [`PipelineService`]: the configured policies' tower services around `S`, in the
//! pipeline's order.

use std::fmt;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::future::{EitherFuture, ResponseFuture};
use crate::bulkhead::BulkheadService;
use crate::circuit_breaker::CircuitBreakerService;
use crate::classify::{Classifier, DefaultClassifier};
use crate::clock::{Clock, DefaultClock};
use crate::error::Rejected;
use crate::rate_limiter::RateLimiterService;
use crate::retry::{CloneRequest, Hint, NoHint, RequestCloner, RetryService};
use crate::timeout::{ConfiguredDuration, TimeoutService};
use crate::timer::{DefaultTimer, Timer};

/// The service a [`PipelineLayer`](super::PipelineLayer) makes: the configured policies
/// around `S`, outermost first retry, circuit breaker, rate limiter, bulkhead, timeout.
///
/// `T`, `C` and `P` are the pipeline's timer, clock and classifier (see
/// [`PipelineLayer::classify`](super::PipelineLayer::classify)); `RC` copies requests for the
/// retry and `H` takes delays from responses. With the defaults, the pipeline of a
/// [`Pipeline::builder`](super::Pipeline::builder) around `S` is a `PipelineService<S>`.
///
/// # Examples
///
/// ```
/// use palisade::pipeline::{Pipeline, PipelineService};
/// use palisade::{bulkhead::Bulkhead, retry::Retry};
/// use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
///
/// // A function can return the wrapped service by name.
/// fn guarded<S: Clone>(pipeline: &Pipeline, inner: S) -> PipelineService<S> {
///     pipeline.layer().layer(inner)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let pipeline = Pipeline::builder()
///     .retry(Retry::new(Retry::builder().build()?))
///     .bulkhead(Bulkhead::new(Bulkhead::builder().max_concurrent(8).build()?))
///     .build();
/// let mut svc = guarded(&pipeline, service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) }));
/// assert_eq!(svc.ready().await?.call(21).await?, 42);
/// assert_eq!(svc.get_mut().call(1).await?, 2, "the inner service, without the policies");
/// # Ok(())
/// # }
/// ```
pub struct PipelineService<
    S,
    T = DefaultTimer,
    C: Clock = DefaultClock,
    P = DefaultClassifier,
    RC = CloneRequest,
    H = NoHint,
> {
    inner: Stack<S, T, C, P, RC, H>,
}

// ===== the stack =====

/// A level of the stack: the policy's service around the rest, or the rest alone when the
/// policy is not configured.
#[derive(Debug, Clone)]
pub(crate) enum Either<A, B> {
    With(A),
    Without(B),
}

pub(crate) type Timed<S, T> = Either<TimeoutService<S, T, ConfiguredDuration>, S>;
pub(crate) type Slotted<S, T> = Either<BulkheadService<Timed<S, T>, T>, Timed<S, T>>;
pub(crate) type Limited<S, T, C> = Either<RateLimiterService<Slotted<S, T>, T, C>, Slotted<S, T>>;
pub(crate) type Guarded<S, T, C, P> =
    Either<CircuitBreakerService<Limited<S, T, C>, C, P>, Limited<S, T, C>>;
pub(crate) type Stack<S, T, C, P, RC, H> =
    Either<RetryService<Guarded<S, T, C, P>, T, C, P, RC, H>, Guarded<S, T, C, P>>;

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
            Either::With(a) => EitherFuture::With { fut: a.call(req) },
            Either::Without(b) => EitherFuture::Without { fut: b.call(req) },
        }
    }
}

/// `layer` around `inner`, or `inner` alone.
pub(crate) fn wrap<L: Layer<S>, S>(layer: Option<&L>, inner: S) -> Either<L::Service, S> {
    match layer {
        Some(layer) => Either::With(layer.layer(inner)),
        None => Either::Without(inner),
    }
}

/// Reaches through every level to the inner service.
macro_rules! through {
    ($svc:expr, $get:ident) => {
        match $svc {
            Either::With(s) => s.$get(),
            Either::Without(s) => s,
        }
    };
}

// ===== impl PipelineService =====

impl<S, T, C: Clock, P, RC, H> PipelineService<S, T, C, P, RC, H> {
    pub(super) fn new(inner: Stack<S, T, C, P, RC, H>) -> Self {
        PipelineService { inner }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        let guarded = through!(&self.inner, get_ref);
        let limited = through!(guarded, get_ref);
        let slotted = through!(limited, get_ref);
        let timed = through!(slotted, get_ref);
        through!(timed, get_ref)
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        let guarded = through!(&mut self.inner, get_mut);
        let limited = through!(guarded, get_mut);
        let slotted = through!(limited, get_mut);
        let timed = through!(slotted, get_mut);
        through!(timed, get_mut)
    }

    /// The inner service, without the policies.
    pub fn into_inner(self) -> S {
        let guarded = through!(self.inner, into_inner);
        let limited = through!(guarded, into_inner);
        let slotted = through!(limited, into_inner);
        let timed = through!(slotted, into_inner);
        through!(timed, into_inner)
    }
}

impl<S, Req, T, C, P, RC, H> Service<Req> for PipelineService<S, T, C, P, RC, H>
where
    S: Service<Req> + Clone,
    S::Error: From<Rejected>,
    T: Timer + Clone,
    T::Sleep: Send + Sync + 'static,
    C: Clock + Clone,
    P: Classifier<S::Response, S::Error> + Clone,
    RC: RequestCloner<Req> + Clone,
    H: Hint<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, T, C, P, RC, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(req))
    }
}

impl<S, T, C, P, RC, H> Clone for PipelineService<S, T, C, P, RC, H>
where
    S: Clone,
    T: Clone,
    C: Clock + Clone,
    P: Clone,
    RC: Clone,
    H: Clone,
{
    fn clone(&self) -> Self {
        PipelineService {
            inner: self.inner.clone(),
        }
    }
}

impl<S: fmt::Debug, T, C: Clock, P, RC, H> fmt::Debug for PipelineService<S, T, C, P, RC, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineService")
            .field("inner", self.get_ref())
            .finish_non_exhaustive()
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
    T: Timer + Clone,
    T::Sleep: Send + Sync + 'static,
    C: Clock + Clone,
{
    svc
}
