use std::fmt;
use std::task::{Context, Poll};

use tower::Service;

use super::Fallback;
use super::chain::{NoSteps, Steps};
use super::future::ResponseFuture;
use crate::classify::{AllErrors, Classifier};
use crate::clock::DefaultClock;

/// A tower service with a fallback chain; made by [`FallbackLayer`](super::FallbackLayer).
///
/// Readiness is the inner service's: the alternatives are polled for readiness only when
/// used. Each call keeps a copy of the request (and of the layer's alternatives) for the
/// alternatives.
///
/// # Panics
///
/// `call` without readiness panics if the inner service does.
///
/// # Examples
///
/// ```
/// use palisade::fallback::{Fallback, FallbackService};
/// use tower::{BoxError, Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let fallback = Fallback::new(Fallback::builder().build()?);
/// let primary = tower::service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) });
/// let mut svc: FallbackService<_, u32> = fallback.layer().layer(primary);
/// assert_eq!(svc.ready().await?.call(1).await?, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FallbackService<S, T, C = DefaultClock, Cl = AllErrors, St = NoSteps> {
    inner: S,
    fallback: Fallback<T, C>,
    classifier: Cl,
    steps: St,
}

impl<S, T, C, Cl, St> FallbackService<S, T, C, Cl, St> {
    pub(crate) fn new(inner: S, fallback: Fallback<T, C>, classifier: Cl, steps: St) -> Self {
        FallbackService {
            inner,
            fallback,
            classifier,
            steps,
        }
    }

    /// The fallback whose cache and counters this service uses.
    pub fn fallback(&self) -> &Fallback<T, C> {
        &self.fallback
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, T, C, Cl, St> Service<Req> for FallbackService<S, T, C, Cl, St>
where
    S: Service<Req, Response = T>,
    Req: Clone,
    Cl: Classifier<T, S::Error> + Clone,
    St: Steps<Req, T, S::Error, C, Cl> + Clone,
{
    type Response = T;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Req, T, C, Cl, St>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let copy = req.clone();
        ResponseFuture::new(
            self.inner.call(req),
            copy,
            self.fallback.clone(),
            self.classifier.clone(),
            self.steps.clone(),
        )
    }
}

impl<S: fmt::Debug, T, C, Cl, St> fmt::Debug for FallbackService<S, T, C, Cl, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackService")
            .field("inner", &self.inner)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}
