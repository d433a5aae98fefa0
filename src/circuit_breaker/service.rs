use std::task::{Context, Poll};

use tower::Service;

use super::future::ResponseFuture;
use super::{CircuitBreaker, OwnedCallPermit};
use crate::classify::{Classifier, DefaultClassifier};
use crate::clock::{Clock, DefaultClock};
use crate::error::Rejected;

/// A tower service guarded by a circuit breaker; made by
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// `poll_ready` asks the breaker first. A refusal is not a readiness error (tower treats those
/// as fatal) and does not wait for the inner service: `poll_ready` returns `Ready(Ok(()))` at
/// once and the next `call` returns a future that fails with [`Rejected::CircuitOpen`] without
/// calling the inner service, as tower's `load_shed` sheds. An admitted call then waits for
/// the inner service; while it waits no permit is held (it is asked for again on the next
/// poll), so a pending inner service never blocks a half-open probe slot. A refusal is never
/// kept across polls either: each `poll_ready` asks again, so a service polled before the
/// break ended is admitted once it has (a service polled twice before its call is counted
/// as refused twice). The permit taken in the last `poll_ready` moves into the response
/// future; a clone of the service starts without one.
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
    type Future = ResponseFuture<S::Future, C, Cl>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if let Some(Ok(_)) = self.permit {
            return Poll::Ready(Ok(()));
        }
        // Asked afresh on every poll: a refusal holds nothing and goes stale (the break ends,
        // the retry-after shrinks), and a permit is never held across a wait for the inner
        // service (a probe slot would be blocked, a closed permit could outlive a trip).
        match self.breaker.try_acquire_owned() {
            Err(rejected) => {
                // Nothing to wait for: the call fails at once, whatever the inner readiness.
                self.permit = Some(Err(rejected));
                Poll::Ready(Ok(()))
            }
            Ok(permit) => match self.inner.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.permit = Some(Ok(permit));
                    Poll::Ready(Ok(()))
                }
                // The permit drops unrecorded: it counts as nothing.
                Poll::Ready(Err(e)) => {
                    self.permit = None;
                    Poll::Ready(Err(e))
                }
                Poll::Pending => {
                    self.permit = None;
                    Poll::Pending
                }
            },
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admission = match self.permit.take() {
            Some(Ok(permit)) => Ok((self.inner.call(req), permit)),
            Some(Err(rejected)) => Err(rejected),
            None => panic!("CircuitBreakerService: poll_ready must be called before call"),
        };
        ResponseFuture::new(admission, self.classifier.clone())
    }
}
