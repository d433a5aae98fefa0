use std::task::{Context, Poll, ready};

use tower::Service;

use super::future::ResponseFuture;
use super::{CircuitBreaker, OwnedCallPermit};
use crate::classify::{Classifier, DefaultClassifier};
use crate::clock::{Clock, DefaultClock};
use crate::error::Rejected;

/// A tower service guarded by a circuit breaker; made by
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// `poll_ready` waits for the inner service, then asks the breaker. A refusal is not a
/// readiness error (tower treats those as fatal): `poll_ready` returns `Ready(Ok(()))` and the
/// next `call` returns a future that fails with [`Rejected::CircuitOpen`] without calling the
/// inner service. The permit taken in `poll_ready` moves into the response future; a clone of
/// the service starts without one.
///
/// # Panics
///
/// `call` panics if `poll_ready` did not return `Ready(Ok(()))` since the last `call`.
///
/// # Examples
///
/// ```
/// use palisade::circuit_breaker::{CircuitBreaker, CircuitBreakerService};
///
/// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
/// let svc = CircuitBreakerService::new(
///     tower::service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }),
///     breaker,
///     palisade::DefaultClassifier,
/// );
/// # let _ = svc;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct CircuitBreakerService<S, C: Clock = DefaultClock, Cl = DefaultClassifier> {
    inner: S,
    breaker: CircuitBreaker<C>,
    classifier: Cl,
    permit: Option<Result<OwnedCallPermit<C>, Rejected>>,
}

impl<S: Clone, C: Clock, Cl: Clone> Clone for CircuitBreakerService<S, C, Cl> {
    fn clone(&self) -> Self {
        CircuitBreakerService {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            // A clone must earn its own permit in its own poll_ready.
            permit: None,
        }
    }
}

impl<S, C: Clock, Cl> CircuitBreakerService<S, C, Cl> {
    /// Wraps `inner`; `classifier` decides what each result means.
    pub fn new(inner: S, breaker: CircuitBreaker<C>, classifier: Cl) -> Self {
        CircuitBreakerService {
            inner,
            breaker,
            classifier,
            permit: None,
        }
    }

    /// The breaker guarding this service.
    pub fn breaker(&self) -> &CircuitBreaker<C> {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service, releasing any permit held.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, C, Cl> Service<Req> for CircuitBreakerService<S, C, Cl>
where
    S: Service<Req>,
    S::Error: From<Rejected>,
    C: Clock,
    Cl: Classifier<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, OwnedCallPermit<C>, Cl>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.permit.is_none() {
            // Inner readiness first, so no probe slot is held while the inner service waits.
            ready!(self.inner.poll_ready(cx))?;
            self.permit = Some(self.breaker.try_acquire_owned());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.permit.take() {
            Some(Ok(permit)) => {
                ResponseFuture::admitted(self.inner.call(req), permit, self.classifier.clone())
            }
            Some(Err(rejected)) => ResponseFuture::rejected(rejected, self.classifier.clone()),
            None => panic!("CircuitBreakerService: poll_ready must be called before call"),
        }
    }
}
