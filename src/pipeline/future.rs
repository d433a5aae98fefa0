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
use crate::rate_limiter::future::Acquire as Turn;
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
            /// breaker permit without counting anything), its wait for a rate limiter's turn
            /// (giving the turn back, as the limiter's own `acquire` does) or the retry's sleep
            /// (giving back the budget token of the retry that did not start).
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
                // Whether the timeout's time is less than its own duration.
                timer_cut: bool,
                attempts: Attempts<T::Sleep>,
                permit: Option<CallPermit<'a, C>>,
                slot: Option<BulkheadPermit<'a>>,
                #[pin]
                timer: Timing<ArmedTimeout<T>>,
                #[pin]
                active: Active<F, Acquire<'a, T>, Turn<'a, T, C>>,
            }
        }
    };
}

#[cfg(feature = "tokio")]
run_future!(T = DefaultTimer);
#[cfg(not(feature = "tokio"))]
run_future!(T);

pin_project! {
    /// The timeout's level, while the call is inside it.
    #[project = TimingProj]
    #[project_replace = TimingReplace]
    enum Timing<A> {
        Off,
        // Entered, with the time it gives the levels inside. The timeout's own future is
        // built only when something inside has to wait, at the poll that would have been its
        // first (its clock starts there either way): a call ready at once never builds it.
        Due { time: Duration },
        Armed { #[pin] fut: A },
    }
}

pin_project! {
    /// What the call waits on: one thing at a time, at the innermost level reached.
    #[project = ActiveProj]
    enum Active<F, A, L> {
        Start,
        // Waiting for a rate limiter's turn (it is given back if dropped meanwhile).
        Limiting { #[pin] fut: L },
        Acquiring { #[pin] fut: A },
        Calling { #[pin] fut: F },
        // The sleep is in `attempts`.
        Sleeping,
        // A refusal held back until the task's budget allows it (see `Step::Refused`).
        Refused { level: u8, refusal: Rejected },
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
    /// A level refused the attempt at once: its result, once the task's budget allows.
    Refused(u8, Rejected),
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
            timer: Timing::Off,
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_levels(cx)
    }
}

impl<M, F, T, C, P, R, E> RunFuture<'_, M, F, T, C, P>
where
    M: FnMut() -> F,
    F: Future<Output = Result<R, E>>,
    T: Timer + Clone,
    C: Clock,
    E: From<Rejected> + AsRejected,
    P: Classifier<R, E>,
{
    #[inline]
    fn poll_levels(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        let mut this = self.project();
        // The recommended order needs no reading of the order between its levels: it runs
        // them straight through, and hands over to the driver below at the first turn off
        // the happy path (a refusal, a wait for a slot, a retry).
        if this.order.is_recommended() {
            match this.active.as_mut().project() {
                ActiveProj::Start => return this.straight(cx),
                ActiveProj::Calling { .. } => return this.poll_call(cx),
                _ => {}
            }
        }
        let step = match this.active.as_mut().project() {
            ActiveProj::Start => this.start(),
            _ => Step::Poll,
        };
        this.drive(step, cx)
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
    /// Takes steps until the call is done or waits, reading the order at each level.
    fn drive(&mut self, mut step: Step<R, E>, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        loop {
            step = match step {
                Step::Enter(level) => self.enter(level),
                Step::Exit(0, out) => {
                    self.active.set(Active::Idle);
                    return Poll::Ready(out);
                }
                Step::Exit(level, out) => self.exit(level, out),
                Step::Refused(level, refusal) => match self.refuse(level, refusal, cx) {
                    Some(step) => step,
                    None => return Poll::Pending,
                },
                Step::Poll => match self.poll_active(cx) {
                    Poll::Ready(step) => step,
                    // The levels inside go first, so a result ready at the deadline wins.
                    Poll::Pending => ready!(self.poll_timer(cx)),
                },
            };
        }
    }

    /// A level's refusal, which completes without awaiting anything, takes a unit of tokio's
    /// budget (see `crate::coop`), so that a loop over refused calls still yields to its
    /// runtime. With the budget spent, the refusal (already counted and reported) waits for
    /// the next poll: `None`. Out of line: refusals are off the happy path.
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, level: u8, refusal: Rejected, cx: &mut Context<'_>) -> Option<Step<R, E>> {
        match crate::coop::poll_proceed(cx) {
            Poll::Ready(budget) => {
                budget.made_progress();
                Some(Step::Exit(level, Err(E::from(refusal))))
            }
            Poll::Pending => {
                self.active.set(Active::Refused { level, refusal });
                None
            }
        }
    }

    /// The first attempt in the recommended order (or what is left of it): the steps of
    /// [`enter`](Self::enter) for each level, outermost first, then the call, polled at
    /// once. A level that refuses, or a slot to wait for, goes on in [`drive`](Self::drive).
    // What it calls (`count_attempt`, `admit`, `take_slot`, `set_timeout`, `poll_call`) is
    // `#[inline(always)]`: left to the compiler, each stayed a call of its own that passed
    // its verdict back through memory. Inlined, `pipeline_run_5` (callgrind, benches/icount.sh)
    // went from 552 to 411 instructions a call: about 25 each for the three policies, 9 for
    // the retry's count, 46 for `poll_call`.
    #[inline]
    fn straight(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        let order = *self.order;
        // Where the attempt begins: below the retry (level 0), if there is one.
        let mut begins = 0;
        if order.has(Stage::Retry) {
            self.count_attempt();
            begins = 1;
        }
        if let Some(step) = self.out_of_time(begins) {
            return self.drive(step, cx);
        }
        if order.has(Stage::CircuitBreaker) {
            if let Err(open) = self.admit() {
                let level = self.level(Stage::CircuitBreaker);
                return self.drive(Step::Refused(level, open), cx);
            }
        }
        if order.has(Stage::RateLimiter) {
            match self.take_turn() {
                Some(Ok(())) => {}
                Some(Err(limited)) => {
                    let level = self.level(Stage::RateLimiter);
                    return self.drive(Step::Refused(level, limited), cx);
                }
                None => return self.drive(Step::Poll, cx),
            }
        }
        if order.has(Stage::Bulkhead) {
            match self.take_slot() {
                Some(Ok(())) => {}
                Some(Err(full)) => {
                    let level = self.level(Stage::Bulkhead);
                    return self.drive(Step::Refused(level, full), cx);
                }
                None => return self.drive(Step::Poll, cx),
            }
        }
        if order.has(Stage::Timeout) {
            if let Err(no_time) = self.set_timeout() {
                let level = self.level(Stage::Timeout);
                return self.drive(Step::Exit(level, Err(no_time)), cx);
            }
        }
        let call = (self.make)();
        self.active.set(Active::Calling { fut: call });
        self.poll_call(cx)
    }

    /// Polls the call of an attempt in the recommended order; once it is done, the steps of
    /// [`exit`](Self::exit) for each level, innermost first, up to a retry that retries.
    // Always inlined, as are the helpers `straight` calls: see there.
    #[inline(always)]
    fn poll_call(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        let ActiveProj::Calling { fut } = self.active.as_mut().project() else {
            unreachable!("only a call in flight is polled here");
        };
        let out = match fut.poll(cx) {
            Poll::Ready(out) => out,
            Poll::Pending => {
                let step = ready!(self.poll_timer(cx));
                return self.drive(step, cx);
            }
        };
        // Done with at once: a finished call is dropped before any policy counts it.
        self.active.set(Active::Idle);
        self.end_timeout();
        *self.slot = None;
        self.record(&out);
        if self.order.has(Stage::Retry) {
            let verdict = self.verdict(&out);
            if !self.attempts.first_success(verdict, out.is_err()) {
                let step = self.after_attempt(0, out, verdict);
                return self.drive(step, cx);
            }
        }
        Poll::Ready(out)
    }

    /// The first step: with no retry in this call's order (one attempt for a caller who
    /// retries itself), the attempt begins here.
    fn start(&mut self) -> Step<R, E> {
        if !self.order.has(Stage::Retry) {
            if let Some(step) = self.out_of_time(0) {
                return step;
            }
        }
        Step::Enter(0)
    }

    /// Starts `level` and the levels inside it, outermost first, until the call is made (and
    /// is to be polled), or a level waits or refuses. Entered again, the retry's level starts
    /// the next attempt.
    fn enter(&mut self, mut level: u8) -> Step<R, E> {
        loop {
            let refused = match self.order.at(level) {
                None => {
                    let call = (self.make)();
                    self.active.set(Active::Calling { fut: call });
                    return Step::Poll;
                }
                Some(Stage::Retry) => {
                    self.count_attempt();
                    match self.out_of_time(level + 1) {
                        Some(step) => return step,
                        None => Ok(()),
                    }
                }
                Some(Stage::CircuitBreaker) => match self.admit() {
                    Ok(()) => Ok(()),
                    Err(open) => return Step::Refused(level, open),
                },
                Some(Stage::RateLimiter) => match self.take_turn() {
                    Some(Ok(())) => Ok(()),
                    Some(Err(limited)) => return Step::Refused(level, limited),
                    None => return Step::Poll,
                },
                Some(Stage::Bulkhead) => match self.take_slot() {
                    Some(Ok(())) => Ok(()),
                    Some(Err(full)) => return Step::Refused(level, full),
                    None => return Step::Poll,
                },
                Some(Stage::Timeout) => self.set_timeout(),
            };
            if let Err(refusal) = refused {
                return Step::Exit(level, Err(refusal));
            }
            level += 1;
        }
    }

    /// The retry counts an attempt; its first starts the deadline.
    // Always inlined: see `straight`.
    #[inline(always)]
    fn count_attempt(&mut self) {
        let p: &'a Policies<T, C, P> = self.policies;
        if p.retry().begin(self.attempts) == 1 && p.deadline().is_some() {
            // Read after the retry's own reading at its first attempt: the time left here
            // is then never less than the retry's, so an attempt it starts with time left
            // has time left here too.
            *self.started = Some(p.clock.now());
        }
    }

    /// The breaker admits the attempt, or refuses it.
    // Always inlined: see `straight`.
    #[inline(always)]
    fn admit(&mut self) -> Result<(), Rejected> {
        let permit = self.policies.breaker().try_acquire()?;
        *self.permit = Some(permit);
        *self.cut = false;
        Ok(())
    }

    /// The rate limiter gives the attempt a token or refuses it, at once; `None` when the
    /// attempt may wait for its turn (polled as `Limiting`). The wait is cut to what is left
    /// of the retry's deadline, less the timer's resolution: a turn that would come at or
    /// after the deadline, or so close to it that the sleep for it may end there, is refused
    /// at once, and takes nothing.
    // Always inlined: see `straight`.
    #[inline(always)]
    fn take_turn(&mut self) -> Option<Result<(), Rejected>> {
        let p: &'a Policies<T, C, P> = self.policies;
        let limiter = p.limiter();
        if limiter.config().max_wait().is_zero() {
            return Some(limiter.try_acquire());
        }
        let max_wait = match (*self.started, p.deadline()) {
            (Some(started), Some(deadline)) => {
                let spent = p.clock.now().saturating_duration_since(started);
                // As the retry's own delays (`retry::attempts::out_of_time`): a sleep ends up
                // to a tick late, and a turn taken for an attempt woken with no time left
                // would be spent on a call that is not made (the timeout inside it fails at
                // once), so the turn must come strictly before the deadline less that tick.
                let spare = deadline
                    .saturating_sub(spent)
                    .saturating_sub(p.retry().timer().resolution());
                crate::clock::saturating_nanos(spare).saturating_sub(1)
            }
            _ => u64::MAX,
        };
        self.active.set(Active::Limiting {
            fut: Turn::within(limiter, 1, max_wait),
        });
        None
    }

    /// The bulkhead gives the attempt a slot or refuses it, at once; `None` when the attempt
    /// waits in line for one (polled as `Acquiring`).
    // Always inlined: see `straight`.
    #[inline(always)]
    fn take_slot(&mut self) -> Option<Result<(), Rejected>> {
        let bulkhead = self.policies.bulkhead();
        if bulkhead.config().max_queue() > 0 {
            self.active.set(Active::Acquiring {
                fut: bulkhead.acquire(),
            });
            return None;
        }
        // With no line to wait in, a free slot or a refusal is all that acquiring comes to,
        // reported the same way.
        Some(match bulkhead.try_acquire() {
            Ok(permit) => {
                *self.slot = Some(permit);
                Ok(())
            }
            Err(full) => Err(full),
        })
    }

    /// The timeout's level starts: its time is worked out now, after any wait for a slot
    /// outside it. With no time left, it fails at once.
    // Always inlined: see `straight`.
    #[inline(always)]
    fn set_timeout(&mut self) -> Result<(), E> {
        let p: &'a Policies<T, C, P> = self.policies;
        let timeout = p.timeout();
        let time = p.attempt_time(timeout, *self.started);
        if time.is_zero() {
            *self.cut = true;
            return Err(no_time(timeout));
        }
        *self.timer_cut = time < timeout.duration();
        // `project_replace`, not `set`: `set` called the old state's drop glue out of line, at
        // every change of state (about 40 of a call's 600 instructions, by callgrind).
        self.timer.as_mut().project_replace(Timing::Due { time });
        Ok(())
    }

    /// The timeout's level ends.
    #[inline]
    fn end_timeout(&mut self) {
        self.timer.as_mut().project_replace(Timing::Off);
    }

    /// An attempt beginning at `level` with a timeout inside it and no time left before the
    /// deadline (a late timer woke the retry at the deadline) is not made: no breaker is
    /// asked, no slot taken, and it fails at once as a timeout of zero.
    #[inline]
    fn out_of_time(&mut self, level: u8) -> Option<Step<R, E>> {
        let started = (*self.started)?;
        self.out_of_time_since(level, started)
    }

    /// [`out_of_time`](Self::out_of_time) once the deadline has `started`: out of line, as
    /// only a call with a deadline gets here.
    #[inline(never)]
    fn out_of_time_since(&mut self, level: u8, started: Ticks) -> Option<Step<R, E>> {
        let p: &'a Policies<T, C, P> = self.policies;
        let timeout = p.timeout.as_ref()?;
        if self.order.level(Stage::Timeout)? < level
            || !p.attempt_time(timeout, Some(started)).is_zero()
        {
            return None;
        }
        *self.cut = true;
        Some(Step::Exit(level, Err(no_time(timeout))))
    }

    /// The levels outside `level` take its result, innermost first, up to the caller (level
    /// 0's result) or to a retry that tries again.
    fn exit(&mut self, mut level: u8, out: Result<R, E>) -> Step<R, E> {
        while level > 0 {
            level -= 1;
            match self.order.at(level) {
                Some(Stage::Retry) => {
                    let verdict = self.verdict(&out);
                    if !self.attempts.first_success(verdict, out.is_err()) {
                        return self.after_attempt(level, out, verdict);
                    }
                }
                Some(Stage::CircuitBreaker) => self.record(&out),
                // A turn is spent once the levels inside it were entered: nothing goes back.
                Some(Stage::RateLimiter) => {}
                // The slot goes back as soon as the levels inside are done.
                Some(Stage::Bulkhead) => *self.slot = None,
                Some(Stage::Timeout) => self.end_timeout(),
                None => unreachable!("nothing is outside the call but the policies"),
            }
        }
        Step::Exit(0, out)
    }

    /// The breaker counts the attempt it admitted, unless the deadline cut it short.
    #[inline]
    fn record(&mut self, out: &Result<R, E>) {
        if let Some(permit) = self.permit.take() {
            permit.record(match *self.cut {
                true => Outcome::Ignore,
                false => self.policies.classifier.classify(out),
            });
        }
    }

    /// What the retry makes of an attempt's result.
    #[inline]
    fn verdict(&self, out: &Result<R, E>) -> Verdict {
        let p: &'a Policies<T, C, P> = self.policies;
        Verdict::of(&p.classifier, out, p.retry().retry_rejections())
    }

    /// The retry at `level` decides what follows an attempt other than a first success, as
    /// its own future does.
    fn after_attempt(&mut self, level: u8, out: Result<R, E>, verdict: Verdict) -> Step<R, E> {
        let retry = self.policies.retry();
        match retry.next(self.attempts, verdict, out.is_err(), None, true) {
            Next::Return => Step::Exit(level, out),
            Next::RetryAfter(delay) => {
                drop(out);
                if delay.is_zero() {
                    return Step::Enter(level);
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
            ActiveProj::Limiting { fut } => {
                let turn = ready!(fut.poll_turn(cx));
                let level = self.level(Stage::RateLimiter);
                match turn {
                    Ok(()) => Step::Enter(level + 1),
                    Err(limited) => Step::Refused(level, limited),
                }
            }
            ActiveProj::Acquiring { fut } => {
                let slot = ready!(fut.poll_slot(cx));
                let level = self.level(Stage::Bulkhead);
                match slot {
                    Ok(permit) => {
                        *self.slot = Some(permit);
                        Step::Enter(level + 1)
                    }
                    Err(full) => Step::Refused(level, full),
                }
            }
            ActiveProj::Refused { level, refusal } => Step::Refused(*level, *refusal),
            ActiveProj::Sleeping => {
                ready!(self.attempts.poll_sleep(cx));
                self.active.set(Active::Idle);
                return Poll::Ready(Step::Enter(self.level(Stage::Retry)));
            }
            ActiveProj::Start | ActiveProj::Idle => {
                panic!("palisade::pipeline::RunFuture polled after completion")
            }
        };
        // Done with at once: a finished call is dropped before any policy counts it.
        self.active.set(Active::Idle);
        Poll::Ready(step)
    }

    /// Polls the timeout, if the call is inside one (arming it at its first poll); when it
    /// fires, what the levels inside it hold is dropped, innermost first, and its level fails
    /// with the timeout's error.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Step<R, E>> {
        if let TimingProj::Due { time } = self.timer.as_mut().project() {
            let fut = self.policies.timeout().run_once_for(pending(), *time);
            self.timer.set(Timing::Armed { fut });
        }
        let TimingProj::Armed { fut } = self.timer.as_mut().project() else {
            return Poll::Pending;
        };
        let Err(elapsed) = ready!(fut.poll(cx)) else {
            unreachable!("the timer's inner future never finishes");
        };
        self.end_timeout();
        let level = self.level(Stage::Timeout);
        self.active.set(Active::Idle);
        for stage in self.order.inside(level).rev() {
            match stage {
                Stage::Retry => *self.attempts = Attempts::new(),
                Stage::Bulkhead => *self.slot = None,
                Stage::CircuitBreaker => *self.permit = None,
                // A turn being waited for went back as `active` was cleared above.
                Stage::RateLimiter | Stage::Timeout => {}
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

    fn limiter(&self) -> &crate::rate_limiter::RateLimiter<T, C> {
        match &self.limiter {
            Some(limiter) => limiter,
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
    /// retry's first attempt has `started` (which it only records with a deadline).
    #[inline]
    fn attempt_time(&self, timeout: &Timeout<T>, started: Option<Ticks>) -> Duration {
        let Some(started) = started else {
            return timeout.duration();
        };
        let Some(deadline) = self.deadline() else {
            return timeout.duration();
        };
        let spent = self.clock.now().saturating_duration_since(started);
        timeout.duration().min(deadline.saturating_sub(spent))
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
