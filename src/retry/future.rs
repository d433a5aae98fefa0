//! The futures of [`Retry::run`](super::Retry::run) ([`RunFuture`]) and of
//! [`RetryService`](super::RetryService) ([`ResponseFuture`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::Retry;
use super::attempts::{Attempts, Next, Verdict};
use super::policy::{Hint, NoHint, NoNotify, Notify};
use crate::classify::{Classifier, DefaultClassifier};
use crate::clock::Clock;
use crate::timer::Timer;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Start,
        Attempt {
            #[pin]
            fut: F,
        },
        // The sleep itself is in `Attempts`, boxed: only a retry sleeps, and a timer's sleep
        // (88 bytes for tokio's) would more than double the future every first-attempt
        // success builds and moves.
        Sleep,
    }
}

pin_project! {
    /// The future returned by [`Retry::run`](super::Retry::run): makes attempts until one is
    /// final, then resolves to its result, unchanged.
    ///
    /// Before it is first polled, [`classify`](Self::classify), [`hint`](Self::hint) and
    /// [`on_retry`](Self::on_retry) adjust it; nothing happens until it is polled.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Error, retry::Retry};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
    /// let calls = AtomicU32::new(0);
    /// let out: Result<u32, Error<&str>> = retry
    ///     .run(|| async {
    ///         match calls.fetch_add(1, Ordering::Relaxed) {
    ///             0 => Err(Error::Inner("reset")),
    ///             n => Ok(n),
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(out, Ok(1), "the second attempt succeeded");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RunFuture<'a, M, F, T, C, Cl, H, N>
    where
        T: Timer,
    {
        retry: &'a Retry<T, C>,
        make: M,
        classifier: Cl,
        hint: H,
        notify: N,
        // No field's drop depends on another's: any order would do.
        attempts: Attempts<T::Sleep>,
        #[pin]
        state: State<F>,
    }
}

impl<'a, M, F, T: Timer, C> RunFuture<'a, M, F, T, C, DefaultClassifier, NoHint, NoNotify> {
    pub(super) fn new(retry: &'a Retry<T, C>, make: M) -> Self {
        RunFuture {
            retry,
            make,
            classifier: DefaultClassifier,
            hint: NoHint,
            notify: NoNotify,
            attempts: Attempts::new(),
            state: State::Start,
        }
    }
}

impl<'a, M, F, T: Timer, C, Cl, H, N> RunFuture<'a, M, F, T, C, Cl, H, N> {
    /// Decides what is retried with `classifier` instead of the [`DefaultClassifier`]: what
    /// it calls a [`Failure`](crate::Outcome::Failure) is retried, a success or an ignored
    /// result is returned (an ignored rejection is retried only with `retry_rejections`, and
    /// only when the classifier's [`rejection`](Classifier::rejection) reports it).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Error, Outcome, retry::Retry};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(Retry::builder().max_attempts(3).build()?);
    /// let attempts = AtomicU32::new(0);
    /// // A 404 is final: retrying will not make the item appear.
    /// let out: Result<u16, Error<u16>> = retry
    ///     .run(|| async {
    ///         attempts.fetch_add(1, Ordering::Relaxed);
    ///         Err(Error::Inner(404))
    ///     })
    ///     .classify(|r: &Result<u16, Error<u16>>| match r {
    ///         Err(Error::Inner(404)) => Outcome::Success,
    ///         Ok(_) => Outcome::Success,
    ///         Err(_) => Outcome::Failure,
    ///     })
    ///     .await;
    /// assert_eq!(out, Err(Error::Inner(404)));
    /// assert_eq!(attempts.load(Ordering::Relaxed), 1);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> RunFuture<'a, M, F, T, C, Cl2, H, N> {
        RunFuture {
            retry: self.retry,
            make: self.make,
            classifier,
            hint: self.hint,
            notify: self.notify,
            attempts: self.attempts,
            state: self.state,
        }
    }

    /// Takes the delay before a retry from the result when `hint` returns one (capped by the
    /// config's `max_hint`), instead of the backoff. A hint at least as long as the time left
    /// before the deadline ends the call with its result instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::retry::Retry;
    /// use std::time::Duration;
    ///
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(Retry::builder().max_attempts(2).build()?);
    /// let start = tokio::time::Instant::now();
    /// // The server answers "busy, come back in 3 s": (status, retry-after seconds).
    /// let out: Result<u16, palisade::Error<(u16, u64)>> = retry
    ///     .run(|| async { Err(palisade::Error::Inner((503, 3))) })
    ///     .hint(|r: &Result<u16, palisade::Error<(u16, u64)>>| match r {
    ///         Err(palisade::Error::Inner((_, secs))) => Some(Duration::from_secs(*secs)),
    ///         _ => None,
    ///     })
    ///     .await;
    /// assert!(out.is_err());
    /// assert_eq!(start.elapsed(), Duration::from_secs(3));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    pub fn hint<H2>(self, hint: H2) -> RunFuture<'a, M, F, T, C, Cl, H2, N> {
        RunFuture {
            retry: self.retry,
            make: self.make,
            classifier: self.classifier,
            hint,
            notify: self.notify,
            attempts: self.attempts,
            state: self.state,
        }
    }

    /// Calls `notify` before each retry with the result being retried, its attempt number
    /// and the delay before the next attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Error, retry::{Backoff, Retry}};
    /// use std::sync::Mutex;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let retry = Retry::new(
    ///     Retry::builder().max_attempts(3).backoff(Backoff::constant(Duration::from_millis(100))).build()?,
    /// );
    /// let seen = Mutex::new(Vec::new());
    /// let _: Result<(), Error<&str>> = retry
    ///     .run(|| async { Err(Error::Inner("reset")) })
    ///     .on_retry(|_: &Result<(), Error<&str>>, attempt: u32, delay: Duration| {
    ///         seen.lock().unwrap().push((attempt, delay));
    ///     })
    ///     .await;
    /// let every = Duration::from_millis(100);
    /// assert_eq!(*seen.lock().unwrap(), [(1, every), (2, every)]);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn on_retry<N2>(self, notify: N2) -> RunFuture<'a, M, F, T, C, Cl, H, N2> {
        RunFuture {
            retry: self.retry,
            make: self.make,
            classifier: self.classifier,
            hint: self.hint,
            notify,
            attempts: self.attempts,
            state: self.state,
        }
    }
}

impl<M, F, T, C, Cl, H, N, R, E> Future for RunFuture<'_, M, F, T, C, Cl, H, N>
where
    M: FnMut(u32) -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer,
    C: Clock,
    Cl: Classifier<R, E>,
    H: Hint<R, E>,
    N: Notify<R, E>,
{
    type Output = Result<R, E>;

    /// The happy path inline (a first attempt that succeeds), everything else out of line.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.as_mut().project();
        if let StateProj::Start = this.state.as_mut().project() {
            start_attempt(this.retry, this.attempts, this.make, this.state.as_mut());
        }
        if let StateProj::Attempt { fut } = this.state.as_mut().project() {
            let out = ready!(fut.poll(cx));
            let verdict = Verdict::of(&*this.classifier, &out, this.retry.retry_rejections());
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

impl<M, F, T, C, Cl, H, N, R, E> RunFuture<'_, M, F, T, C, Cl, H, N>
where
    M: FnMut(u32) -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer,
    C: Clock,
    Cl: Classifier<R, E>,
    H: Hint<R, E>,
    N: Notify<R, E>,
{
    /// After an attempt: its result to return, or `None` with the next attempt under way.
    ///
    /// The finished attempt stays in place when its result is returned: moving to `Done`
    /// would run the whole state's drop glue on every call. Polling again after that is a
    /// caller's contract breach, which the finished attempt itself answers.
    #[inline(never)]
    fn settle(self: Pin<&mut Self>, out: Result<R, E>, verdict: Verdict) -> Option<Result<R, E>> {
        let mut this = self.project();
        let shared = &*this.retry;
        let hint = match verdict {
            Verdict::Retry { after: None } => this.hint.hint(&out),
            _ => None,
        };
        match shared.next(this.attempts, verdict, out.is_err(), hint, true) {
            Next::Return => Some(out),
            Next::RetryAfter(delay) => {
                this.notify.notify(&out, this.attempts.made(), delay);
                drop(out);
                if delay.is_zero() {
                    start_attempt(shared, this.attempts, this.make, this.state);
                } else {
                    this.attempts.sleep(shared.timer.sleep(delay));
                    this.state.set(State::Sleep);
                }
                None
            }
        }
    }

    #[inline(never)]
    fn poll_retrying(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Start => unreachable!("poll starts the first attempt itself"),
                StateProj::Attempt { fut } => {
                    let out = ready!(fut.poll(cx));
                    let verdict =
                        Verdict::of(&*this.classifier, &out, this.retry.retry_rejections());
                    if let Some(out) = self.as_mut().settle(out, verdict) {
                        return Poll::Ready(out);
                    }
                }
                StateProj::Sleep => {
                    ready!(this.attempts.poll_sleep(cx));
                    start_attempt(this.retry, this.attempts, this.make, this.state.as_mut());
                }
            }
        }
    }
}

/// Counts the next attempt and makes its future.
#[inline]
fn start_attempt<M, F, T: Timer, C: Clock>(
    retry: &Retry<T, C>,
    attempts: &mut Attempts<T::Sleep>,
    make: &mut M,
    mut state: Pin<&mut State<F>>,
) where
    M: FnMut(u32) -> F,
{
    let n = retry.begin(attempts);
    state.set(State::Attempt { fut: make(n) });
}

impl<M, F, T: Timer, C, Cl, H, N> std::fmt::Debug for RunFuture<'_, M, F, T, C, Cl, H, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture")
            .field("policy", &self.retry.name())
            .field("attempts", &self.attempts.made())
            .finish_non_exhaustive()
    }
}

// ===== the tower response future =====

#[cfg(feature = "tower")]
pub use self::tower_future::ResponseFuture;

#[cfg(feature = "tower")]
mod tower_future {
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use pin_project_lite::pin_project;
    use tower::Service;

    use crate::classify::{Classifier, DefaultClassifier};
    use crate::clock::{Clock, DefaultClock};
    use crate::retry::Retry;
    use crate::retry::attempts::{Attempts, Next, Verdict};
    use crate::retry::policy::{CloneRequest, Hint, NoHint, RequestCloner};
    #[cfg(feature = "tokio")]
    use crate::timer::DefaultTimer;
    use crate::timer::Timer;

    pin_project! {
        #[project = StateProj]
        enum State<F> {
            Calling {
                #[pin]
                fut: F,
            },
            // The sleep itself is in `Attempts`, boxed: only a retry sleeps, and a timer's
            // sleep would double the size (and the cost of moving) of every response future.
            Sleeping,
            Readying,
            Done,
        }
    }

    // Without the `tokio` feature `DefaultTimer` is not a `Timer`, and a parameter's default
    // must meet its bounds: the timer parameter then has no default.
    macro_rules! response_future {
        ($($timer:tt)*) => {
            pin_project! {
                /// The response future of [`RetryService`](crate::retry::RetryService): makes
                /// attempts until one is final, then resolves to its result, unchanged.
                ///
                /// # Examples
                ///
                /// ```
                /// use palisade::retry::{Retry, RetryService, future::ResponseFuture};
                /// use tower::{BoxError, Layer, Service, ServiceExt};
                ///
                /// // The type is nameable, here in a function's signature.
                /// fn send<S>(svc: &mut RetryService<S>, x: u32) -> ResponseFuture<S, u32>
                /// where
                ///     S: Service<u32, Response = u32, Error = BoxError> + Clone,
                /// {
                ///     svc.call(x)
                /// }
                ///
                /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
                /// # async fn main() -> Result<(), BoxError> {
                /// let retry = Retry::new(Retry::builder().build()?);
                /// let mut svc = retry.layer().layer(tower::service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
                /// svc.ready().await?;
                /// assert_eq!(send(&mut svc, 7).await?, 7);
                /// # Ok(())
                /// # }
                /// ```
                #[must_use = "futures do nothing unless polled"]
                pub struct ResponseFuture<
                    S,
                    Req,
                    $($timer)*,
                    C = DefaultClock,
                    Cl = DefaultClassifier,
                    RC = CloneRequest,
                    H = NoHint,
                >
                where
                    S: Service<Req>,
                    T: Timer,
                {
                    svc: S,
                    retry: Retry<T, C>,
                    classifier: Cl,
                    cloner: RC,
                    hint: H,
                    // A copy of the request for the next attempt; None once it could not be made.
                    req: Option<Req>,
                    // No field's drop depends on another's: any order would do.
                    attempts: Attempts<T::Sleep>,
                    #[pin]
                    state: State<S::Future>,
                }
            }
        };
    }

    #[cfg(feature = "tokio")]
    response_future!(T = DefaultTimer);
    #[cfg(not(feature = "tokio"))]
    response_future!(T);

    impl<S, Req, T, C, Cl, RC, H> ResponseFuture<S, Req, T, C, Cl, RC, H>
    where
        S: Service<Req>,
        T: Timer,
        C: Clock,
    {
        /// The future of a call whose first attempt `svc` (the instance made ready) has
        /// started as `fut`, counted in `attempts`; `req` is the copy for the next attempt.
        #[inline]
        #[allow(clippy::too_many_arguments)]
        pub(in crate::retry) fn first(
            svc: S,
            fut: S::Future,
            retry: Retry<T, C>,
            attempts: Attempts<T::Sleep>,
            classifier: Cl,
            cloner: RC,
            hint: H,
            req: Option<Req>,
        ) -> Self {
            ResponseFuture {
                attempts,
                svc,
                retry,
                classifier,
                cloner,
                hint,
                req,
                state: State::Calling { fut },
            }
        }
    }

    impl<S, Req, T, C, Cl, RC, H> Future for ResponseFuture<S, Req, T, C, Cl, RC, H>
    where
        S: Service<Req>,
        T: Timer,
        C: Clock,
        Cl: Classifier<S::Response, S::Error>,
        RC: RequestCloner<Req>,
        H: Hint<S::Response, S::Error>,
    {
        type Output = Result<S::Response, S::Error>;

        /// The happy path inline (a first attempt that succeeds), everything else out of
        /// line, so that the common case adds a few instructions to the caller's poll.
        #[inline]
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut this = self.as_mut().project();
            if let StateProj::Calling { fut } = this.state.as_mut().project() {
                let out = ready!(fut.poll(cx));
                let verdict = Verdict::of(&*this.classifier, &out, this.retry.retry_rejections());
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

    impl<S, Req, T, C, Cl, RC, H> ResponseFuture<S, Req, T, C, Cl, RC, H>
    where
        S: Service<Req>,
        T: Timer,
        C: Clock,
        Cl: Classifier<S::Response, S::Error>,
        RC: RequestCloner<Req>,
        H: Hint<S::Response, S::Error>,
    {
        /// After an attempt: its result to return, or `None` with the next attempt
        /// scheduled.
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
            let retry = &*this.retry;
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
                        let verdict =
                            Verdict::of(&*this.classifier, &out, this.retry.retry_rejections());
                        if let Some(out) = self.as_mut().settle(out, verdict) {
                            return Poll::Ready(out);
                        }
                    }
                    StateProj::Sleeping => {
                        ready!(this.attempts.poll_sleep(cx));
                        this.state.set(State::Readying);
                    }
                    StateProj::Readying => {
                        // Readiness again before every retry: the instance may have changed
                        // state since the last attempt (a pool emptied, a connection dropped).
                        if let Err(e) = ready!(this.svc.poll_ready(cx)) {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                        let Some(req) = this.req.take() else {
                            unreachable!("a retry is only scheduled with a copy of the request");
                        };
                        // Copied before the retry is counted and its token spent: a cloner
                        // that panics leaves the retry unmade, and the dropped call gives the
                        // token back.
                        *this.req = this.cloner.try_clone(&req);
                        this.retry.begin(this.attempts);
                        this.state.set(State::Calling {
                            fut: this.svc.call(req),
                        });
                    }
                    StateProj::Done => panic!("retry response future polled after completion"),
                }
            }
        }
    }

    impl<S: Service<Req>, Req, T: Timer, C, Cl, RC, H> fmt::Debug
        for ResponseFuture<S, Req, T, C, Cl, RC, H>
    {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ResponseFuture")
                .field("attempts", &self.attempts.made())
                .finish_non_exhaustive()
        }
    }
}
