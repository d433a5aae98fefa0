//! The futures of a rate limiter: waiting for a turn, and running a call once it has one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::RateLimiter;
use super::shared::Turn;
use crate::clock::Clock;
use crate::error::Rejected;
use crate::timer::Timer;

pin_project! {
    /// Where a wait for a turn stands.
    #[project = WaitProj]
    #[project_replace = WaitReplace]
    enum Wait<S> {
        // Not asked yet; the turn may be at most `max_wait_ns` away: the limiter's
        // `max_wait`, or less for a caller with a deadline (a pipeline's). Kept here, not
        // beside `wait`, so that it costs the future no room.
        Start { max_wait_ns: u64 },
        // The TAT was moved to `tat` for this caller, and its sleep is being made: a timer
        // that panics unwinds through the drop, which gives the turn back.
        Reserved { tat: u64 },
        // Its turn comes when `sleep` ends.
        Waiting { tat: u64, #[pin] sleep: S },
        Done,
    }
}

pin_project! {
    /// The future returned by [`RateLimiter::acquire`] and
    /// [`acquire_n`](RateLimiter::acquire_n): resolves when the call may go, or to
    /// [`Rejected::RateLimited`] at once when its turn is further away than the limiter's
    /// `max_wait` (or its cost above the burst).
    ///
    /// Dropped while it waits, it gives its turn back if nobody took a later one since (see
    /// the [module docs](super#cancellation)).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RateLimiter::new(
    ///     RateLimiter::builder()
    ///         .rate(10, Duration::from_secs(1))
    ///         .burst(1)
    ///         .max_wait(Duration::from_secs(1))
    ///         .build()?,
    /// );
    /// limiter.acquire().await?;
    /// let start = tokio::time::Instant::now();
    /// limiter.acquire().await?; // waits for the next token, 100 ms later
    /// assert_eq!(start.elapsed(), Duration::from_millis(100));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct Acquire<'a, T, C>
    where
        T: Timer,
    {
        limiter: &'a RateLimiter<T, C>,
        cost: u32,
        #[pin]
        wait: Wait<T::Sleep>,
    }

    impl<T, C> PinnedDrop for Acquire<'_, T, C>
    where
        T: Timer,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            match this.wait.project() {
                WaitProj::Reserved { tat } | WaitProj::Waiting { tat, .. } => {
                    this.limiter.shared.leave(*tat, *this.cost);
                }
                WaitProj::Start { .. } | WaitProj::Done => {}
            }
        }
    }
}

impl<'a, T: Timer, C> Acquire<'a, T, C> {
    pub(super) fn new(limiter: &'a RateLimiter<T, C>, cost: u32) -> Self {
        Self::within(limiter, cost, limiter.shared.max_wait_ns)
    }

    /// A wait for a turn no further away than `max_wait_ns` (at most the limiter's own
    /// `max_wait`): a pipeline's turn that would come after its retry's deadline is refused
    /// at once, and takes nothing.
    pub(crate) fn within(limiter: &'a RateLimiter<T, C>, cost: u32, max_wait_ns: u64) -> Self {
        Acquire {
            limiter,
            cost,
            wait: Wait::Start {
                max_wait_ns: max_wait_ns.min(limiter.shared.max_wait_ns),
            },
        }
    }
}

impl<T: Timer, C: Clock> Acquire<'_, T, C> {
    /// The wait without tokio's budget: the run futures (this module's and the pipeline's)
    /// poll this, since they go on to await the call.
    #[inline]
    pub(crate) fn poll_turn(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Rejected>> {
        let mut this = self.project();
        if let WaitProj::Start { max_wait_ns } = this.wait.as_mut().project() {
            let max_wait_ns = *max_wait_ns;
            let limiter = *this.limiter;
            match limiter.shared.take(&limiter.clock, *this.cost, max_wait_ns) {
                Turn::Now { .. } => {
                    this.wait.set(Wait::Done);
                    limiter.shared.admitted();
                    return Poll::Ready(Ok(()));
                }
                Turn::Refused(refusal) => {
                    this.wait.set(Wait::Done);
                    return Poll::Ready(Err(limiter.shared.refuse(refusal)));
                }
                Turn::Later { tat, wait } => {
                    // The turn is recorded before the timer (user code) runs.
                    this.wait.set(Wait::Reserved { tat });
                    let sleep = limiter.timer.sleep(wait);
                    this.wait.set(Wait::Waiting { tat, sleep });
                }
            }
        }
        match this.wait.as_mut().project() {
            WaitProj::Waiting { sleep, .. } => {
                ready!(sleep.poll(cx));
                // The turn is taken: nothing to give back from here on.
                this.wait.set(Wait::Done);
                this.limiter.shared.admitted();
                Poll::Ready(Ok(()))
            }
            _ => panic!("rate limiter acquire polled after completion"),
        }
    }
}

/// A turn handed out at once (or a refusal) completes without awaiting anything, so it
/// takes a unit of tokio's budget, as the bulkhead's `acquire` does (see `crate::coop`).
impl<T: Timer, C: Clock> Future for Acquire<'_, T, C> {
    type Output = Result<(), Rejected>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let budget = ready!(crate::coop::poll_proceed(cx));
        let out = ready!(self.poll_turn(cx));
        budget.made_progress();
        Poll::Ready(out)
    }
}

pin_project! {
    /// The future returned by [`RateLimiter::run`] and [`run_once`](RateLimiter::run_once):
    /// waits for a turn if the limiter lets calls wait, then makes the call.
    ///
    /// Resolves to the call's output, or to `Err(E::from(Rejected::RateLimited(..)))`: the
    /// call was then never made.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, rate_limiter::RateLimiter};
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(1)).build()?);
    /// assert_eq!(limiter.run(|| async { Ok::<_, Rejected>(7) }).await, Ok(7));
    /// let second = limiter.run(|| async { Ok::<_, Rejected>(8) }).await;
    /// assert!(second.is_err_and(|e| e.retry_after().is_some()));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RunFuture<'a, M, F, T, C>
    where
        T: Timer,
    {
        #[pin]
        acquire: Acquire<'a, T, C>,
        make: Option<M>,
        #[pin]
        call: Call<F>,
    }
}

impl<'a, M, F, T: Timer, C> RunFuture<'a, M, F, T, C> {
    pub(super) fn new(limiter: &'a RateLimiter<T, C>, make: M) -> Self {
        RunFuture {
            acquire: Acquire::new(limiter, 1),
            make: Some(make),
            call: Call::Start,
        }
    }
}

impl<M, F, T, C, R, E> Future for RunFuture<'_, M, F, T, C>
where
    M: FnOnce() -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer,
    C: Clock,
    E: From<Rejected>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let CallProj::Start = this.call.as_mut().project() {
            match ready!(this.acquire.poll_turn(cx)) {
                Ok(()) => {
                    let make = this
                        .make
                        .take()
                        .expect("rate limiter run future polled after completion");
                    this.call.set(Call::Called { fut: make() });
                }
                Err(error) => this.call.set(Call::Rejected { error }),
            }
        }
        this.call.poll_made(cx)
    }
}

pin_project! {
    /// Where the call of either surface is: not made yet (a run future before its turn),
    /// made, refused, or done.
    #[project = CallProj]
    #[project_replace = CallReplace]
    enum Call<F> {
        Start,
        Called { #[pin] fut: F },
        Rejected { error: Rejected },
        Done,
    }
}

impl<F, R, E> Call<F>
where
    F: Future<Output = Result<R, E>>,
    E: From<Rejected>,
{
    /// Polls a call that was made or refused.
    #[inline]
    fn poll_made(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        match self.as_mut().project() {
            CallProj::Called { fut } => fut.poll(cx),
            CallProj::Rejected { .. } => refuse(self, cx),
            CallProj::Start | CallProj::Done => {
                panic!("rate limiter future polled after completion")
            }
        }
    }
}

/// A refusal completes without awaiting anything: it takes a unit of tokio's budget, out
/// of line. With the budget spent, the refusal (already counted and reported) stays in
/// `call` for the next poll, and the task yields first.
#[cold]
#[inline(never)]
fn refuse<F, R, E: From<Rejected>>(
    call: Pin<&mut Call<F>>,
    cx: &mut Context<'_>,
) -> Poll<Result<R, E>> {
    ready!(crate::coop::poll_proceed(cx)).made_progress();
    let CallReplace::Rejected { error } = call.project_replace(Call::Done) else {
        unreachable!("the call was just refused");
    };
    Poll::Ready(Err(E::from(error)))
}

#[cfg(feature = "tower")]
pin_project! {
    /// The response future of [`RateLimiterService`](super::RateLimiterService): the inner
    /// call, or the rejection.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::rate_limiter::RateLimiter;
    /// use std::time::Duration;
    /// use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
    ///
    /// # #[cfg(all(feature = "tokio", feature = "tower"))]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let limiter = RateLimiter::new(RateLimiter::builder().rate(1, Duration::from_secs(60)).build()?);
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(limiter.layer())
    ///     .service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 2) });
    /// assert_eq!(svc.ready().await?.call(21).await?, 42);
    /// assert!(svc.ready().await?.call(21).await.is_err(), "one a minute");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio", feature = "tower")))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        call: Call<F>,
    }
}

#[cfg(feature = "tower")]
impl<F> ResponseFuture<F> {
    pub(super) fn called(fut: F) -> Self {
        ResponseFuture {
            call: Call::Called { fut },
        }
    }

    pub(super) fn rejected(error: Rejected) -> Self {
        ResponseFuture {
            call: Call::Rejected { error },
        }
    }
}

#[cfg(feature = "tower")]
impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: From<Rejected>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().call.poll_made(cx)
    }
}

#[cfg(feature = "tower")]
impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.call {
            Call::Start => "Start",
            Call::Called { .. } => "Called",
            Call::Rejected { .. } => "Rejected",
            Call::Done => "Done",
        };
        f.debug_struct("ResponseFuture")
            .field("call", &state)
            .finish()
    }
}

impl<T: Timer, C> std::fmt::Debug for Acquire<'_, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acquire")
            .field("policy", &self.limiter.shared.telemetry.name())
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl<M, F, T: Timer, C> std::fmt::Debug for RunFuture<'_, M, F, T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture")
            .field("acquire", &self.acquire)
            .finish_non_exhaustive()
    }
}
