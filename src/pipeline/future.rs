//! The futures of a [`Pipeline`](super::Pipeline): [`RunFuture`] from
//! [`run`](super::Pipeline::run), and [`ResponseFuture`] from the tower service (feature
//! `tower`).

use std::future::{Future, Pending, pending};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

use super::Policies;
use super::custom::{Order, Stage};
use crate::bulkhead::BulkheadPermit;
use crate::bulkhead::future::Acquire;
use crate::circuit_breaker::CallPermit;
use crate::classify::{Classifier, DefaultClassifier, Outcome};
use crate::clock::{Clock, DefaultClock, Ticks};
use crate::error::{AsRejected, Elapsed, Rejected};
use crate::retry::{Attempts, Next, Retry, Verdict};
use crate::timeout::Timeout;
#[cfg(feature = "tokio")]
use crate::timer::DefaultTimer;
use crate::timer::Timer;

/// A timeout armed over the levels inside it: the timeout's own future around a call that
/// never ends, so that when it fires the timeout counts and reports it as its own future does.
type ArmedTimeout<T> = crate::timeout::future::RunFuture<Pending<Result<(), Rejected>>, T>;

// Without the `tokio` feature `DefaultTimer` is not a `Timer`, and a parameter's default must
// meet its bounds: the timer parameter then has no default.
macro_rules! run_future {
    ($($timer:tt)*) => {
        pin_project! {
            /// The future returned by [`Pipeline::run`](super::Pipeline::run): the pipeline's
            /// policies around the futures `make` makes, resolving to the last attempt's result or
            /// to a policy's refusal, as `E`.
            ///
            /// `T`, `C` and `P` are the pipeline's timer, clock and classifier; with the defaults,
            /// a call of a [`Pipeline`](super::Pipeline) is a `RunFuture<'_, M, F>`. It is `Send`
            /// when `M` and `F` are (and the pipeline's handles, as they are by default).
            ///
            /// # Examples
            ///
            /// ```
            /// use palisade::pipeline::{Pipeline, future::RunFuture};
            /// use palisade::{Rejected, retry::Retry};
            /// use std::future::{Ready, ready};
            ///
            /// type Answer = Ready<Result<u32, Rejected>>;
            ///
            /// fn answer() -> Answer {
            ///     ready(Ok(42))
            /// }
            ///
            /// // A function can return the call's future by name.
            /// # #[cfg(feature = "tokio")]
            /// fn lookup(pipeline: &Pipeline) -> RunFuture<'_, fn() -> Answer, Answer> {
            ///     pipeline.run(answer as fn() -> Answer)
            /// }
            ///
            /// # #[cfg(feature = "tokio")]
            /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
            /// # async fn main() -> Result<(), palisade::ConfigError> {
            /// let pipeline = Pipeline::builder().retry(Retry::new(Retry::builder().build()?)).build();
            /// assert_eq!(lookup(&pipeline).await, Ok(42));
            /// # Ok(())
            /// # }
            /// # #[cfg(not(feature = "tokio"))] fn main() {}
            /// ```
            ///
            /// # Cancel safety
            ///
            /// Dropping it drops the attempt in flight (giving back its bulkhead slot, and its
            /// breaker permit without counting anything) or the retry's sleep (giving back the
            /// budget token of the retry that did not start).
            #[project = RunProj]
            #[must_use = "futures do nothing unless polled"]
            pub struct RunFuture<'a, M, F, $($timer)*, C = DefaultClock, P = DefaultClassifier>
            where
                T: Timer,
                C: Clock,
            {
                // No lock and no shared cell: the levels are not futures of their own that borrow
                // what they share, but steps of this one state machine. What they share (`make`,
                // `started`, `cut`) are plain fields, reached in `poll` through the one
                // `Pin<&mut Self>`, so this future is `Send` exactly when its fields are.
                policies: &'a Policies<T, C, P>,
                make: M,
                // The levels of this call: the pipeline's, or those of one attempt.
                order: Order,
                // The clock at the retry's first attempt, when the retry has a deadline.
                started: Option<Ticks>,
                // The deadline, not the timeout's own duration, ended the attempt (the timeout was
                // cut to the time left and ran out, or there was none): the breaker ignores it.
                // Reset when the breaker admits an attempt.
                cut: bool,
                // Whether the armed timer's time is less than the timeout's own duration.
                timer_cut: bool,
                attempts: Attempts<T::Sleep>,
                permit: Option<CallPermit<'a, C>>,
                slot: Option<BulkheadPermit<'a>>,
                #[pin]
                timer: Option<ArmedTimeout<T>>,
                #[pin]
                active: Active<F, Acquire<'a, T>>,
            }
        }
    };
}

#[cfg(feature = "tokio")]
run_future!(T = DefaultTimer);
#[cfg(not(feature = "tokio"))]
run_future!(T);

pin_project! {
    /// What the call waits on: one thing at a time, at the innermost level reached.
    #[project = ActiveProj]
    enum Active<F, A> {
        Start,
        Acquiring { #[pin] fut: A },
        Calling { #[pin] fut: F },
        // The sleep is in `attempts`.
        Sleeping,
        // Between levels, and once done.
        Idle,
    }
}

/// What the driver does next.
enum Step<R, E> {
    /// Starts a level: a policy, or the call when past the last one.
    Enter(u8),
    /// A level's result, for the level outside it (or the caller, from level 0).
    Exit(u8, Result<R, E>),
    /// Polls what the call waits on.
    Poll,
}

impl<'a, M, F, T: Timer, C: Clock, P> RunFuture<'a, M, F, T, C, P> {
    pub(super) fn new(
        policies: &'a Policies<T, C, P>,
        make: M,
        order: Order,
        started: Option<Ticks>,
    ) -> Self {
        RunFuture {
            policies,
            make,
            order,
            started,
            cut: false,
            timer_cut: false,
            attempts: Attempts::new(),
            permit: None,
            slot: None,
            timer: None,
            active: Active::Start,
        }
    }
}

impl<M, F, T, C, P, R, E> Future for RunFuture<'_, M, F, T, C, P>
where
    M: FnMut() -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer + Clone,
    C: Clock,
    E: From<Rejected> + AsRejected,
    P: Classifier<R, E>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut step = match this.active.as_mut().project() {
            ActiveProj::Start => this.start(),
            _ => Step::Poll,
        };
        loop {
            step = match step {
                Step::Enter(level) => this.enter(level),
                Step::Exit(0, out) => {
                    this.active.set(Active::Idle);
                    return Poll::Ready(out);
                }
                Step::Exit(level, out) => this.exit(level - 1, out),
                Step::Poll => match this.poll_active(cx) {
                    Poll::Ready(step) => step,
                    // The levels inside go first, so a result ready at the deadline wins.
                    Poll::Pending => ready!(this.poll_timer(cx)),
                },
            };
        }
    }
}

impl<'a, M, F, T, C, P, R, E> RunProj<'_, 'a, M, F, T, C, P>
where
    M: FnMut() -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer + Clone,
    C: Clock,
    E: From<Rejected> + AsRejected,
    P: Classifier<R, E>,
{
    /// The first step: with no retry in this call's order (one attempt for a caller who
    /// retries itself), the attempt begins here.
    fn start(&mut self) -> Step<R, E> {
        if self.order.level(Stage::Retry).is_none() {
            if let Some(step) = self.out_of_time(0) {
                return step;
            }
        }
        Step::Enter(0)
    }

    fn enter(&mut self, level: u8) -> Step<R, E> {
        let p: &'a Policies<T, C, P> = self.policies;
        match self.order.at(level) {
            None => {
                let call = (self.make)();
                self.active.set(Active::Calling { fut: call });
                Step::Poll
            }
            Some(Stage::Retry) => self.begin_attempt(level),
            Some(Stage::CircuitBreaker) => match p.breaker().try_acquire() {
                Ok(permit) => {
                    *self.permit = Some(permit);
                    *self.cut = false;
                    Step::Enter(level + 1)
                }
                Err(open) => Step::Exit(level, Err(E::from(open))),
            },
            Some(Stage::Bulkhead) => {
                let acquire = p.bulkhead().acquire();
                self.active.set(Active::Acquiring { fut: acquire });
                Step::Poll
            }
            Some(Stage::Timeout) => {
                // Computed as the level starts: after any wait for a slot outside it.
                let timeout = p.timeout();
                let time = p.attempt_time(timeout, *self.started);
                if time.is_zero() {
                    *self.cut = true;
                    return Step::Exit(level, Err(no_time(timeout)));
                }
                *self.timer_cut = time < timeout.duration();
                self.timer.set(Some(timeout.run_once_for(pending(), time)));
                Step::Enter(level + 1)
            }
        }
    }

    /// The retry at `level` starts an attempt: the first, or the next after its delay.
    fn begin_attempt(&mut self, level: u8) -> Step<R, E> {
        let p: &'a Policies<T, C, P> = self.policies;
        if p.retry().begin(self.attempts) == 1 && p.deadline().is_some() {
            // Read after the retry's own reading at its first attempt: the time left here
            // is then never less than the retry's, so an attempt it starts with time left
            // has time left here too.
            *self.started = Some(p.clock.now());
        }
        match self.out_of_time(level + 1) {
            Some(step) => step,
            None => Step::Enter(level + 1),
        }
    }

    /// An attempt beginning at `level` with a timeout inside it and no time left before the
    /// deadline (a late timer woke the retry at the deadline) is not made: no breaker is
    /// asked, no slot taken, and it fails at once as a timeout of zero.
    fn out_of_time(&mut self, level: u8) -> Option<Step<R, E>> {
        let p: &'a Policies<T, C, P> = self.policies;
        let started = (*self.started)?;
        let timeout = p.timeout.as_ref()?;
        if self.order.level(Stage::Timeout)? < level
            || !p.attempt_time(timeout, Some(started)).is_zero()
        {
            return None;
        }
        *self.cut = true;
        Some(Step::Exit(level, Err(no_time(timeout))))
    }

    /// The policy at `level` takes the result of the levels inside it.
    fn exit(&mut self, level: u8, out: Result<R, E>) -> Step<R, E> {
        let p: &'a Policies<T, C, P> = self.policies;
        match self.order.at(level) {
            Some(Stage::Retry) => return self.after_attempt(level, out),
            Some(Stage::CircuitBreaker) => {
                if let Some(permit) = self.permit.take() {
                    permit.record(match *self.cut {
                        true => Outcome::Ignore,
                        false => p.classifier.classify(&out),
                    });
                }
            }
            // The slot goes back as soon as the levels inside are done.
            Some(Stage::Bulkhead) => *self.slot = None,
            Some(Stage::Timeout) => self.timer.set(None),
            None => unreachable!("nothing is outside the call but the policies"),
        }
        Step::Exit(level, out)
    }

    /// The retry at `level` decides what follows an attempt, as its own future does.
    fn after_attempt(&mut self, level: u8, out: Result<R, E>) -> Step<R, E> {
        let p: &'a Policies<T, C, P> = self.policies;
        let retry = p.retry();
        let verdict = Verdict::of(&p.classifier, &out, retry.retry_rejections());
        if self.attempts.first_success(verdict, out.is_err()) {
            return Step::Exit(level, out);
        }
        match retry.next(self.attempts, verdict, out.is_err(), None, true) {
            Next::Return => Step::Exit(level, out),
            Next::RetryAfter(delay) => {
                drop(out);
                if delay.is_zero() {
                    return self.begin_attempt(level);
                }
                self.attempts.sleep(retry.timer().sleep(delay));
                self.active.set(Active::Sleeping);
                Step::Poll
            }
        }
    }

    /// Polls what the call waits on; ready with the next step once it is done.
    fn poll_active(&mut self, cx: &mut Context<'_>) -> Poll<Step<R, E>> {
        let step = match self.active.as_mut().project() {
            ActiveProj::Calling { fut } => {
                let out = ready!(fut.poll(cx));
                Step::Exit(self.order.call(), out)
            }
            ActiveProj::Acquiring { fut } => {
                let slot = ready!(fut.poll(cx));
                let level = self.level(Stage::Bulkhead);
                match slot {
                    Ok(permit) => {
                        *self.slot = Some(permit);
                        Step::Enter(level + 1)
                    }
                    Err(full) => Step::Exit(level, Err(E::from(full))),
                }
            }
            ActiveProj::Sleeping => {
                ready!(self.attempts.poll_sleep(cx));
                self.active.set(Active::Idle);
                return Poll::Ready(self.begin_attempt(self.level(Stage::Retry)));
            }
            ActiveProj::Start | ActiveProj::Idle => {
                panic!("palisade::pipeline::RunFuture polled after completion")
            }
        };
        // Done with at once: a finished call is dropped before any policy counts it.
        self.active.set(Active::Idle);
        Poll::Ready(step)
    }

    /// Polls the armed timeout, if any; when it fires, what the levels inside it hold is
    /// dropped, innermost first, and its level fails with the timeout's error.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Step<R, E>> {
        let Some(timer) = self.timer.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let Err(elapsed) = ready!(timer.poll(cx)) else {
            unreachable!("the timer's inner future never finishes");
        };
        self.timer.set(None);
        let level = self.level(Stage::Timeout);
        self.active.set(Active::Idle);
        for stage in self.order.inside(level).rev() {
            match stage {
                Stage::Retry => *self.attempts = Attempts::new(),
                Stage::Bulkhead => *self.slot = None,
                Stage::CircuitBreaker => *self.permit = None,
                Stage::Timeout => {}
            }
        }
        *self.cut = *self.timer_cut;
        Poll::Ready(Step::Exit(level, Err(E::from(elapsed))))
    }

    fn level(&self, stage: Stage) -> u8 {
        match self.order.level(stage) {
            Some(level) => level,
            None => unreachable!("only a policy in the order waits"),
        }
    }
}

#[cfg(feature = "reqwest-middleware")]
impl<T: Timer + Clone, C: Clock, Fb, P> super::Pipeline<T, C, Fb, P> {
    /// One attempt through every policy but the retry, for the reqwest middleware, which
    /// keeps the retry's count itself; `started` is the clock at the retry's first attempt
    /// when the retry has a deadline.
    pub(crate) fn attempt<G, F, R, E>(
        &self,
        make: G,
        started: Option<Ticks>,
    ) -> RunFuture<'_, impl FnMut() -> F, F, T, C, P>
    where
        G: FnOnce() -> F,
        F: Future<Output = Result<R, E>>,
    {
        let mut make = Some(make);
        let once = move || {
            (make
                .take()
                .expect("an attempt without a retry is made once"))()
        };
        let order = self.policies.order.filter(|stage| stage != Stage::Retry);
        RunFuture::new(&self.policies, once, order, started)
    }
}

/// The error of an attempt with no time left.
fn no_time<T, E: From<Rejected>>(timeout: &Timeout<T>) -> E {
    E::from(Rejected::Timeout(Elapsed::new(
        timeout.name(),
        Duration::ZERO,
    )))
}

impl<T, C: Clock, P> Policies<T, C, P> {
    fn retry(&self) -> &Retry<T, C> {
        match &self.retry {
            Some(retry) => retry,
            None => unreachable!("the order holds the configured policies only"),
        }
    }

    fn breaker(&self) -> &crate::circuit_breaker::CircuitBreaker<C> {
        match &self.breaker {
            Some(breaker) => breaker,
            None => unreachable!("the order holds the configured policies only"),
        }
    }

    fn bulkhead(&self) -> &crate::bulkhead::Bulkhead<T> {
        match &self.bulkhead {
            Some(bulkhead) => bulkhead,
            None => unreachable!("the order holds the configured policies only"),
        }
    }

    fn timeout(&self) -> &Timeout<T> {
        match &self.timeout {
            Some(timeout) => timeout,
            None => unreachable!("the order holds the configured policies only"),
        }
    }

    fn deadline(&self) -> Option<Duration> {
        self.retry.as_ref().and_then(|r| r.config().deadline())
    }

    /// The time an attempt may take: the timeout, cut to the deadline's rest once the
    /// retry's first attempt has `started`.
    fn attempt_time(&self, timeout: &Timeout<T>, started: Option<Ticks>) -> Duration {
        match (self.deadline(), started) {
            (Some(deadline), Some(started)) => {
                let spent = self.clock.now().saturating_duration_since(started);
                timeout.duration().min(deadline.saturating_sub(spent))
            }
            _ => timeout.duration(),
        }
    }
}

impl<M, F, T: Timer, C: Clock, P> std::fmt::Debug for RunFuture<'_, M, F, T, C, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture")
            .field("order", &self.order.stages().collect::<Vec<_>>())
            .field("attempts", &self.attempts.made())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tower")]
pub(crate) use tower_future::EitherFuture;
#[cfg(feature = "tower")]
pub use tower_future::ResponseFuture;

#[cfg(feature = "tower")]
mod tower_future {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use pin_project_lite::pin_project;
    use tower::Service;

    use super::super::service::Stack;
    use crate::classify::Classifier;
    use crate::classify::DefaultClassifier;
    use crate::clock::{Clock, DefaultClock};
    use crate::error::Rejected;
    use crate::retry::{CloneRequest, Hint, NoHint, RequestCloner};
    #[cfg(feature = "tokio")]
    use crate::timer::DefaultTimer;
    use crate::timer::Timer;

    // As for `RunFuture`: no default timer without `tokio`.
    macro_rules! response_future {
        ($($timer:tt)*) => {
            pin_project! {
                /// The response future of [`PipelineService`](super::super::PipelineService): the
                /// configured policies' futures around the inner service's.
                ///
                /// Its bounds are those under which a `PipelineService<S, ..>` is a
                /// `Service<Req>`; the defaults match those of the service.
                ///
                /// # Examples
                ///
                /// ```
                /// use palisade::pipeline::{Pipeline, PipelineService, future::ResponseFuture};
                /// use palisade::retry::Retry;
                /// use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
                ///
                /// # #[tokio::main(flavor = "current_thread")]
                /// # async fn main() -> Result<(), BoxError> {
                /// let pipeline = Pipeline::builder().retry(Retry::new(Retry::builder().build()?)).build();
                /// let inner = service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) });
                /// let mut svc: PipelineService<_> = pipeline.layer().layer(inner);
                /// let call: ResponseFuture<_, u32> = svc.ready().await?.call(1);
                /// assert_eq!(call.await?, 2);
                /// # Ok(())
                /// # }
                /// ```
                #[must_use = "futures do nothing unless polled"]
                pub struct ResponseFuture<
                    S,
                    Req,
                    $($timer)*,
                    C = DefaultClock,
                    P = DefaultClassifier,
                    RC = CloneRequest,
                    H = NoHint,
                >
                where
                    S: Service<Req>,
                    S: Clone,
                    S::Error: From<Rejected>,
                    T: Timer,
                    T: Clone,
                    T::Sleep: Send,
                    T::Sleep: Sync,
                    T::Sleep: 'static,
                    C: Clock,
                    C: Clone,
                    P: Classifier<S::Response, S::Error>,
                    P: Clone,
                    RC: RequestCloner<Req>,
                    RC: Clone,
                    H: Hint<S::Response, S::Error>,
                    H: Clone,
                {
                    #[pin]
                    inner: <Stack<S, T, C, P, RC, H> as Service<Req>>::Future,
                }
            }
        };
    }

    #[cfg(feature = "tokio")]
    response_future!(T = DefaultTimer);
    #[cfg(not(feature = "tokio"))]
    response_future!(T);

    impl<S, Req, T, C, P, RC, H> ResponseFuture<S, Req, T, C, P, RC, H>
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
        pub(crate) fn new(inner: <Stack<S, T, C, P, RC, H> as Service<Req>>::Future) -> Self {
            ResponseFuture { inner }
        }
    }

    impl<S, Req, T, C, P, RC, H> Future for ResponseFuture<S, Req, T, C, P, RC, H>
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
        type Output = Result<S::Response, S::Error>;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.project().inner.poll(cx)
        }
    }

    impl<S, Req, T, C, P, RC, H> std::fmt::Debug for ResponseFuture<S, Req, T, C, P, RC, H>
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
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ResponseFuture").finish_non_exhaustive()
        }
    }

    pin_project! {
        /// The response future of a level of the stack: the policy's, or the inner one's
        /// when the policy is not configured.
        #[project = EitherProj]
        pub(crate) enum EitherFuture<A, B> {
            With { #[pin] fut: A },
            Without { #[pin] fut: B },
        }
    }

    impl<A, B, O> Future for EitherFuture<A, B>
    where
        A: Future<Output = O>,
        B: Future<Output = O>,
    {
        type Output = O;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
            match self.project() {
                EitherProj::With { fut } => fut.poll(cx),
                EitherProj::Without { fut } => fut.poll(cx),
            }
        }
    }
}
