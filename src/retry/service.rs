use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::Service;

use super::future::{Hint, NoHint};
use super::layer::{CloneRequest, RequestCloner, RetryHandle};
use super::{Attempts, Defaults, Next, Retry, RetryPredicate, Verdict};
use crate::timer::Timer;

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
/// use palisade::retry::{Retry, RetryService};
///
/// let retry = Retry::new(Retry::builder().build()?);
/// let svc = RetryService::new(
///     tower::service_fn(|x: u32| async move { Ok::<_, palisade::Error<&str>>(x) }),
///     retry,
///     palisade::retry::Defaults,
///     palisade::retry::CloneRequest,
///     palisade::retry::future::NoHint,
/// );
/// # let _ = svc;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryService<S, R = Retry, P = Defaults, RC = CloneRequest, H = NoHint> {
    inner: S,
    retry: R,
    predicate: P,
    cloner: RC,
    hint: H,
}

impl<S, R, P, RC, H> RetryService<S, R, P, RC, H> {
    /// Wraps `inner`; `retry` is a [`Retry`] or a `&'static Retry` (see [`RetryHandle`]).
    pub fn new(inner: S, retry: R, predicate: P, cloner: RC, hint: H) -> Self {
        RetryService {
            inner,
            retry,
            predicate,
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

impl<S: fmt::Debug, R: fmt::Debug, P, RC, H> fmt::Debug for RetryService<S, R, P, RC, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryService")
            .field("inner", &self.inner)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl<S, Req, R, P, RC, H> Service<Req> for RetryService<S, R, P, RC, H>
where
    S: Service<Req> + Clone,
    R: RetryHandle,
    P: RetryPredicate<S::Response, S::Error> + Clone,
    RC: RequestCloner<Req> + Clone,
    H: Hint<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, R, P, RC, H>;

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
        let attempts = self.retry.handle().first_attempt();
        let fut = svc.call(req);
        ResponseFuture {
            svc,
            retry: self.retry.clone(),
            predicate: self.predicate.clone(),
            cloner: self.cloner.clone(),
            hint: self.hint.clone(),
            req: next_req,
            attempts,
            state: State::Calling { fut },
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            fut: F,
        },
        // The sleep itself is in `Attempts`, boxed: only a retry sleeps, and a timer's sleep
        // would double the size (and the cost of moving) of every response future.
        Sleeping,
        Readying,
        Done,
    }
}

pin_project! {
    /// The response future of [`RetryService`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, Req, R, P, RC, H>
    where
        S: Service<Req>,
        R: RetryHandle,
    {
        svc: S,
        retry: R,
        predicate: P,
        cloner: RC,
        hint: H,
        // A copy of the request for the next attempt; None once it could not be made.
        req: Option<Req>,
        // Before `state`: fields drop in order, and a drop that cannot unwind first leaves the
        // future's drop glue no cleanup path, which keeps it small enough to inline.
        attempts: Attempts<<R::Timer as Timer>::Sleep>,
        #[pin]
        state: State<S::Future>,
    }
}

impl<S, Req, R, P, RC, H> Future for ResponseFuture<S, Req, R, P, RC, H>
where
    S: Service<Req>,
    R: RetryHandle,
    P: RetryPredicate<S::Response, S::Error>,
    RC: RequestCloner<Req>,
    H: Hint<S::Response, S::Error>,
{
    type Output = Result<S::Response, S::Error>;

    /// The happy path inline (a first attempt that succeeds), everything else out of line, so
    /// that the common case adds a few instructions to the caller's poll and no frame.
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.as_mut().project();
        if let StateProj::Calling { fut } = this.state.as_mut().project() {
            let out = ready!(fut.poll(cx));
            let verdict = this
                .predicate
                .verdict(&out, this.retry.handle().retry_rejections());
            if this.attempts.first_success(verdict, out.is_err()) {
                return Poll::Ready(out);
            }
            if let Some(out) = self.as_mut().settle(out, verdict) {
                return Poll::Ready(out);
            }
        }
        self.poll_retrying(cx)
    }
}

impl<S, Req, R, P, RC, H> ResponseFuture<S, Req, R, P, RC, H>
where
    S: Service<Req>,
    R: RetryHandle,
    P: RetryPredicate<S::Response, S::Error>,
    RC: RequestCloner<Req>,
    H: Hint<S::Response, S::Error>,
{
    /// After an attempt: its result to return, or `None` with the next attempt scheduled.
    ///
    /// The finished attempt stays in place when its result is returned, as tower's retry
    /// leaves it: moving to `Done` would run the whole state's drop glue on every call.
    /// Polling again after that is a caller's contract breach, which the finished attempt
    /// itself answers.
    #[inline(never)]
    fn settle(
        self: Pin<&mut Self>,
        out: Result<S::Response, S::Error>,
        verdict: Verdict,
    ) -> Option<Result<S::Response, S::Error>> {
        let mut this = self.project();
        let hint = match verdict {
            Verdict::Retry { after: None } => this.hint.hint(&out),
            _ => None,
        };
        let cloneable = this.req.is_some();
        let retry = this.retry.handle();
        match retry.next(this.attempts, verdict, out.is_err(), hint, cloneable) {
            Next::Return => return Some(out),
            Next::RetryAfter(delay) if delay.is_zero() => this.state.set(State::Readying),
            Next::RetryAfter(delay) => {
                this.attempts.sleep(retry.timer.sleep(delay));
                this.state.set(State::Sleeping);
            }
        }
        None
    }

    #[inline(never)]
    fn poll_retrying(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, S::Error>> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    let out = ready!(fut.poll(cx));
                    let verdict = this
                        .predicate
                        .verdict(&out, this.retry.handle().retry_rejections());
                    if let Some(out) = self.as_mut().settle(out, verdict) {
                        return Poll::Ready(out);
                    }
                }
                StateProj::Sleeping => {
                    ready!(this.attempts.poll_sleep(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    // Readiness again before every retry: the instance may have changed state
                    // since the last attempt (a pool emptied, a connection dropped).
                    if let Err(e) = ready!(this.svc.poll_ready(cx)) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                    let Some(req) = this.req.take() else {
                        unreachable!("a retry is only scheduled with a copy of the request");
                    };
                    // Copied before the retry is counted and its token spent: a cloner that
                    // panics leaves the retry unmade, and the dropped call gives the token back.
                    *this.req = this.cloner.try_clone(&req);
                    this.retry.handle().begin(this.attempts);
                    this.state.set(State::Calling {
                        fut: this.svc.call(req),
                    });
                }
                StateProj::Done => panic!("retry response future polled after completion"),
            }
        }
    }
}

impl<S: Service<Req>, Req, R: RetryHandle, P, RC, H> fmt::Debug
    for ResponseFuture<S, Req, R, P, RC, H>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts.made())
            .finish_non_exhaustive()
    }
}
