//! The step core: what a fallback chain does after the primary call, for both surfaces.
//!
//! [`RunFuture`](super::future::RunFuture) (closures) and
//! [`ResponseFuture`](super::future::ResponseFuture) (tower) hold a [`Chain`]: the primary
//! call, then a list of steps built by their `or_*` methods. The rules live here once:
//!
//! - the classifier grades a level's result at most once, and only to decide whether a
//!   later step runs: only a [`Failure`](Outcome::Failure) falls through, and the last
//!   level's result comes out ungraded, whatever it is (a failure passed on by an empty
//!   cache is not graded again);
//! - a primary result graded a success and `Ok` refreshes the cache (if a step serves it);
//!   no alternative's answer is ever cached;
//! - a step that answers or starts counts itself in the handle's metrics, then reports
//!   [`FallbackUsed`](crate::telemetry::EventKind::FallbackUsed) with its level (1 for the
//!   first alternative), and only then runs its user code (the alternative, the cached
//!   value's `Clone`): the policy's state is settled before any listener or alternative can
//!   panic. An empty or stale cache is not a level used: the failure passes on untouched.
//! - with no alternative at all, the primary's result is returned ungraded.
//!
//! The list is a left-nested type (`Then<Then<NoSteps, A>, B>`), so levels are known at
//! compile time and nothing is boxed. Its types are public only because they appear in the
//! public futures' and layer's type parameters; nothing outside this crate can name them.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::Fallback;
use super::cache::clone_held;
use crate::classify::{Classifier, Outcome};
use crate::clock::Clock;
use crate::sync::Ordering;
use crate::telemetry::EventKind;

/// What the steps of a chain see: the handle (counters, events, cache) and the classifier.
pub struct Ctx<'a, T, C, Cl> {
    pub(crate) fallback: &'a Fallback<T, C>,
    pub(crate) classifier: &'a Cl,
}

impl<T, C, Cl> Clone for Ctx<'_, T, C, Cl> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, C, Cl> Copy for Ctx<'_, T, C, Cl> {}

impl<T, C, Cl> fmt::Debug for Ctx<'_, T, C, Cl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("fallback", self.fallback)
            .finish_non_exhaustive()
    }
}

impl<T, C, Cl> Ctx<'_, T, C, Cl> {
    /// Whether `out`, graded `grade` so far, falls through to the next step; grades it if
    /// nobody has.
    #[inline]
    fn fails<E>(self, out: &Result<T, E>, grade: Grade) -> bool
    where
        Cl: Classifier<T, E>,
    {
        match grade {
            Grade::Failed => true,
            Grade::Answered => false,
            Grade::Ungraded => self.classifier.classify(out) == Outcome::Failure,
        }
    }
}

/// What is known of a step's result, so that no result is graded twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grade {
    /// Graded a failure (or a failure passed on untouched).
    Failed,
    /// Graded anything but a failure: it is the chain's answer.
    Answered,
    /// Fresh from a step.
    Ungraded,
}

/// A step's result and what is known of it.
pub(crate) type Graded<T, E> = (Result<T, E>, Grade);

/// The `Ok` and `Err` types of a future resolving to a `Result`, so that the futures can
/// name them from the future's type alone.
pub trait TryOutput: Future<Output = Result<Self::Ok, Self::Err>> {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
}

impl<F, T, E> TryOutput for F
where
    F: Future<Output = Result<T, E>>,
{
    type Ok = T;
    type Err = E;
}

/// A list of alternatives, tried in order once the primary call has failed.
pub trait Steps<In, T, E, C, Cl> {
    /// How many alternatives: the level of the last one.
    const LEVELS: u8;

    /// The list once started.
    type Running: RunSteps<T, E, C, Cl>;

    /// Starts the list with the primary's failed result; `input` is what an alternative is
    /// given (a copy of the request under tower, `()` for closures).
    fn start(self, input: In, failed: Result<T, E>, ctx: Ctx<'_, T, C, Cl>) -> Self::Running;

    /// Sees the primary's success (the cache step stores it).
    fn primary_succeeded(&self, value: &T, ctx: Ctx<'_, T, C, Cl>);
}

/// A started list of alternatives, polled with the chain's context.
pub trait RunSteps<T, E, C, Cl> {
    /// Polls the alternative running; ready with the list's result.
    fn poll_steps(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        ctx: Ctx<'_, T, C, Cl>,
    ) -> Poll<Graded<T, E>>;
}

/// One alternative.
pub trait Step<In, T, E, C, Cl> {
    /// Its answer, once started.
    type Future: Future<Output = Graded<T, E>>;

    /// Starts this alternative as level `level`, after everything before it failed with
    /// `failed`.
    fn start(
        self,
        input: In,
        failed: Result<T, E>,
        level: u8,
        ctx: Ctx<'_, T, C, Cl>,
    ) -> Self::Future;

    /// Sees the primary's success.
    #[inline]
    fn primary_succeeded(&self, _value: &T, _ctx: Ctx<'_, T, C, Cl>) {}
}

// ===== the rules each step applies =====

impl<T, C> Fallback<T, C> {
    /// Counts level `level` as used, then reports it: the count is in place when the
    /// listener runs.
    fn use_level(&self, level: u8) {
        self.shared.used.fetch_add(1, Ordering::Relaxed);
        self.shared
            .telemetry
            .emit(|| EventKind::FallbackUsed { level });
    }
}

impl<T: Clone, C: Clock> Fallback<T, C> {
    /// The cached value as level `level`, counted and reported before its `Clone` runs;
    /// `None` (nothing counted or reported) if the cache is empty or stale.
    fn serve_cached(&self, level: u8) -> Option<T> {
        let shared = &self.shared;
        let held = shared.cache.lookup(shared.clock.now())?;
        shared.cache_hits.fetch_add(1, Ordering::Relaxed);
        self.use_level(level);
        Some(clone_held(&held))
    }

    /// Stores a success of the primary call, if caching is on.
    fn store(&self, value: &T) {
        let shared = &self.shared;
        if shared.cache.is_on() {
            // Cloned before the cache is locked: a `Clone` that panics leaves it as it was.
            let value = value.clone();
            shared.cache.put(value, shared.clock.now());
        }
    }
}

// ===== the driver =====

pin_project! {
    /// The primary call, then the steps: the state machine both public futures drive.
    #[project = ChainProj]
    #[project_replace = ChainTaken]
    pub enum Chain<F, St, In, R> {
        Primary {
            #[pin]
            call: F,
            steps: St,
            input: In,
        },
        Steps {
            #[pin]
            running: R,
        },
        Done,
    }
}

impl<F, St, In, R> Chain<F, St, In, R> {
    pub(crate) fn new(call: F, steps: St, input: In) -> Self {
        Chain::Primary { call, steps, input }
    }

    /// The parts of a chain not yet polled, to add a step or change the classifier.
    ///
    /// # Panics
    ///
    /// If the chain was polled: alternatives are added before the future is first polled.
    pub(crate) fn into_parts(self) -> (F, St, In) {
        match self {
            Chain::Primary { call, steps, input } => (call, steps, input),
            _ => panic!("fallback: alternatives are added before the future is first polled"),
        }
    }

    pub(crate) fn poll_chain<T, E, C, Cl>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        ctx: Ctx<'_, T, C, Cl>,
    ) -> Poll<Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        St: Steps<In, T, E, C, Cl, Running = R>,
        R: RunSteps<T, E, C, Cl>,
        Cl: Classifier<T, E>,
    {
        loop {
            match self.as_mut().project() {
                ChainProj::Primary { call, .. } => {
                    let out = ready!(call.poll(cx));
                    let ChainTaken::Primary { steps, input, .. } =
                        self.as_mut().project_replace(Chain::Done)
                    else {
                        unreachable!("matched as the primary just above");
                    };
                    if St::LEVELS == 0 {
                        return Poll::Ready(out);
                    }
                    match ctx.classifier.classify(&out) {
                        Outcome::Failure => {
                            let running = steps.start(input, out, ctx);
                            self.set(Chain::Steps { running });
                        }
                        Outcome::Success => {
                            if let Ok(value) = &out {
                                steps.primary_succeeded(value, ctx);
                            }
                            return Poll::Ready(out);
                        }
                        Outcome::Ignore => return Poll::Ready(out),
                    }
                }
                ChainProj::Steps { running } => {
                    let (out, _) = ready!(running.poll_steps(cx, ctx));
                    self.set(Chain::Done);
                    return Poll::Ready(out);
                }
                ChainProj::Done => panic!("fallback future polled after completion"),
            }
        }
    }
}

// ===== the list =====

/// No alternative: the primary's result is final.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSteps;

/// The steps `P`, then the step `L` if they failed too.
#[derive(Debug, Clone, Copy)]
pub struct Then<P, L>(pub(crate) P, pub(crate) L);

impl<In, T, E, C, Cl> Steps<In, T, E, C, Cl> for NoSteps {
    const LEVELS: u8 = 0;
    type Running = Ready<Graded<T, E>>;

    #[inline]
    fn start(self, _: In, failed: Result<T, E>, _: Ctx<'_, T, C, Cl>) -> Self::Running {
        ready((failed, Grade::Failed))
    }

    #[inline]
    fn primary_succeeded(&self, _: &T, _: Ctx<'_, T, C, Cl>) {}
}

impl<T, E, C, Cl> RunSteps<T, E, C, Cl> for Ready<Graded<T, E>> {
    #[inline]
    fn poll_steps(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _: Ctx<'_, T, C, Cl>,
    ) -> Poll<Graded<T, E>> {
        self.poll(cx)
    }
}

impl<In, T, E, C, Cl, P, L> Steps<In, T, E, C, Cl> for Then<P, L>
where
    In: Clone,
    P: Steps<In, T, E, C, Cl>,
    L: Step<In, T, E, C, Cl>,
    Cl: Classifier<T, E>,
{
    const LEVELS: u8 = P::LEVELS.saturating_add(1);
    type Running = ThenRunning<P::Running, L, In, L::Future>;

    fn start(self, input: In, failed: Result<T, E>, ctx: Ctx<'_, T, C, Cl>) -> Self::Running {
        let Then(prev, last) = self;
        if P::LEVELS == 0 {
            // The first alternative: `failed` is the primary's, graded already.
            ThenRunning::Last {
                fut: last.start(input, failed, Self::LEVELS, ctx),
            }
        } else {
            ThenRunning::Prev {
                running: prev.start(input.clone(), failed, ctx),
                last,
                input,
                level: Self::LEVELS,
            }
        }
    }

    fn primary_succeeded(&self, value: &T, ctx: Ctx<'_, T, C, Cl>) {
        self.0.primary_succeeded(value, ctx);
        self.1.primary_succeeded(value, ctx);
    }
}

pin_project! {
    /// `Then`'s steps once started: the earlier ones, then the last.
    #[project = ThenProj]
    #[project_replace = ThenTaken]
    pub enum ThenRunning<R, L, In, G> {
        Prev {
            #[pin]
            running: R,
            last: L,
            input: In,
            level: u8,
        },
        Last {
            #[pin]
            fut: G,
        },
        Done,
    }
}

impl<T, E, C, Cl, R, L, In, G> RunSteps<T, E, C, Cl> for ThenRunning<R, L, In, G>
where
    R: RunSteps<T, E, C, Cl>,
    L: Step<In, T, E, C, Cl, Future = G>,
    G: Future<Output = Graded<T, E>>,
    Cl: Classifier<T, E>,
{
    fn poll_steps(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        ctx: Ctx<'_, T, C, Cl>,
    ) -> Poll<Graded<T, E>> {
        loop {
            match self.as_mut().project() {
                ThenProj::Prev { running, .. } => {
                    let (out, grade) = ready!(running.poll_steps(cx, ctx));
                    let ThenTaken::Prev {
                        last, input, level, ..
                    } = self.as_mut().project_replace(ThenRunning::Done)
                    else {
                        unreachable!("matched as the earlier steps just above");
                    };
                    if !ctx.fails(&out, grade) {
                        return Poll::Ready((out, Grade::Answered));
                    }
                    let fut = last.start(input, out, level, ctx);
                    self.set(ThenRunning::Last { fut });
                }
                ThenProj::Last { fut } => return fut.poll(cx),
                ThenProj::Done => panic!("fallback future polled after completion"),
            }
        }
    }
}

// ===== the steps =====

pin_project! {
    /// An alternative's own future, its result fresh for grading.
    pub struct Fresh<F> {
        #[pin]
        fut: F,
    }
}

impl<F> Fresh<F> {
    pub(crate) fn new(fut: F) -> Self {
        Fresh { fut }
    }
}

impl<F: TryOutput> Future for Fresh<F> {
    type Output = Graded<F::Ok, F::Err>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .fut
            .poll(cx)
            .map(|out| (out, Grade::Ungraded))
    }
}

impl<F> fmt::Debug for Fresh<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fresh").finish_non_exhaustive()
    }
}

/// An async closure given the failed result; [`RunFuture::or_else`](super::future::RunFuture::or_else).
#[derive(Debug, Clone, Copy)]
pub struct OrElse<A>(pub(crate) A);

impl<In, T, E, C, Cl, A, Fut> Step<In, T, E, C, Cl> for OrElse<A>
where
    A: FnOnce(Result<T, E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Future = Fresh<Fut>;

    fn start(self, _: In, failed: Result<T, E>, level: u8, ctx: Ctx<'_, T, C, Cl>) -> Self::Future {
        ctx.fallback.use_level(level);
        Fresh::new((self.0)(failed))
    }
}

/// The primary's last success while fresh; `or_cached` on either surface.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrCached;

impl<In, T: Clone, E, C: Clock, Cl> Step<In, T, E, C, Cl> for OrCached {
    type Future = Ready<Graded<T, E>>;

    fn start(self, _: In, failed: Result<T, E>, level: u8, ctx: Ctx<'_, T, C, Cl>) -> Self::Future {
        match ctx.fallback.serve_cached(level) {
            Some(value) => ready((Ok(value), Grade::Ungraded)),
            None => ready((failed, Grade::Failed)),
        }
    }

    fn primary_succeeded(&self, value: &T, ctx: Ctx<'_, T, C, Cl>) {
        ctx.fallback.store(value);
    }
}

/// A fixed value; `or_value` on either surface.
#[derive(Debug, Clone, Copy)]
pub struct OrValue<V>(pub(crate) V);

impl<In, T, E, C, Cl> Step<In, T, E, C, Cl> for OrValue<T> {
    type Future = Ready<Graded<T, E>>;

    fn start(self, _: In, _: Result<T, E>, level: u8, ctx: Ctx<'_, T, C, Cl>) -> Self::Future {
        ctx.fallback.use_level(level);
        ready((Ok(self.0), Grade::Ungraded))
    }
}

#[cfg(feature = "tower")]
pub(crate) use tower_steps::{OrElseWith, OrService};

#[cfg(feature = "tower")]
mod tower_steps {
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use pin_project_lite::pin_project;
    use tower::Service;

    use super::{Ctx, Fresh, Step};

    /// An async closure given the request and the failed result;
    /// [`FallbackLayer::or_else`](crate::fallback::FallbackLayer::or_else).
    #[derive(Debug, Clone, Copy)]
    pub struct OrElseWith<A>(pub(crate) A);

    impl<In, T, E, C, Cl, A, Fut> Step<In, T, E, C, Cl> for OrElseWith<A>
    where
        A: FnOnce(In, Result<T, E>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        type Future = Fresh<Fut>;

        fn start(
            self,
            input: In,
            failed: Result<T, E>,
            level: u8,
            ctx: Ctx<'_, T, C, Cl>,
        ) -> Self::Future {
            ctx.fallback.use_level(level);
            Fresh::new((self.0)(input, failed))
        }
    }

    /// Another service given the request; [`FallbackLayer::or_service`](crate::fallback::FallbackLayer::or_service).
    #[derive(Debug, Clone, Copy)]
    pub struct OrService<S>(pub(crate) S);

    impl<Req, T, E, C, Cl, S> Step<Req, T, E, C, Cl> for OrService<S>
    where
        S: Service<Req, Response = T, Error = E>,
    {
        type Future = Fresh<ServiceCall<S, Req>>;

        fn start(
            self,
            req: Req,
            _: Result<T, E>,
            level: u8,
            ctx: Ctx<'_, T, C, Cl>,
        ) -> Self::Future {
            ctx.fallback.use_level(level);
            Fresh::new(ServiceCall::Ready { svc: self.0, req })
        }
    }

    pin_project! {
        /// A call to an alternative service: its readiness, then the call (tower's
        /// `Oneshot`, which the `tower` features we depend on do not include).
        #[project = CallProj]
        #[project_replace = CallTaken]
        pub enum ServiceCall<S, Req>
        where
            S: Service<Req>,
        {
            Ready { svc: S, req: Req },
            Called { #[pin] fut: S::Future },
            Done,
        }
    }

    impl<S: Service<Req>, Req> Future for ServiceCall<S, Req> {
        type Output = Result<S::Response, S::Error>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            loop {
                match self.as_mut().project() {
                    CallProj::Ready { svc, .. } => {
                        if let Err(e) = ready!(svc.poll_ready(cx)) {
                            self.set(ServiceCall::Done);
                            return Poll::Ready(Err(e));
                        }
                        let CallTaken::Ready { mut svc, req } =
                            self.as_mut().project_replace(ServiceCall::Done)
                        else {
                            unreachable!("matched as ready just above");
                        };
                        let fut = svc.call(req);
                        self.set(ServiceCall::Called { fut });
                    }
                    CallProj::Called { fut } => return fut.poll(cx),
                    CallProj::Done => panic!("fallback service call polled after completion"),
                }
            }
        }
    }

    impl<S: Service<Req>, Req> fmt::Debug for ServiceCall<S, Req> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ServiceCall").finish_non_exhaustive()
        }
    }
}
