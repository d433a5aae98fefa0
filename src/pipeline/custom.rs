//! A pipeline in a [`custom_order`](super::PipelineBuilder::custom_order): one level per
//! place in the order, each a [`StageFuture`] that becomes the policy named there. The
//! recommended order is in the parent module; both share its per-attempt pieces (the
//! deadline's cut of the timeout, the breaker's view of a cut attempt).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use super::{Pipeline, Stage};
use crate::classify::{ByRef, Classifier, Outcome};
use crate::clock::{Clock, Ticks};
use crate::error::{AsRejected, Rejected};
use crate::timer::Timer;

impl<T, C, Fb, P> Pipeline<T, C, Fb, P>
where
    T: Timer + Clone,
    C: Clock,
{
    /// The policies of `order` around the call, outermost first (a custom order).
    ///
    /// One level per place in the order (a stage names each policy at most once, so there
    /// are at most four), each a [`StageFuture`] that becomes the policy named there: the
    /// nesting is decided at run time, but every future has a type the compiler sees, so
    /// the whole is `Send` when the call is.
    pub(super) async fn run_custom<G, F, R, E>(
        &self,
        order: &[Stage],
        make: &G,
        deadline: Option<Duration>,
    ) -> Result<R, E>
    where
        G: Fn() -> F,
        F: Future<Output = Result<R, E>>,
        E: From<Rejected> + AsRejected,
        P: Classifier<R, E>,
    {
        let shared = Custom {
            deadline,
            started: &AtomicU64::new(NOT_STARTED),
            cut: &AtomicBool::new(false),
        };
        let at = |i: usize| order.get(i).copied();
        let call = || make();
        let fourth = || self.stage(at(3), shared, call);
        let third = || self.stage(at(2), shared, fourth);
        let second = || self.stage(at(1), shared, third);
        self.stage(at(0), shared, second).await
    }

    /// The policy named by `stage` around the futures `inner` makes; none for `None` or a
    /// policy the pipeline does not have.
    fn stage<'a, G, F, R, E>(
        &'a self,
        stage: Option<Stage>,
        shared: Custom<'a>,
        inner: G,
    ) -> impl Future<Output = Result<R, E>> + 'a
    where
        G: Fn() -> F + Copy + 'a,
        F: Future<Output = Result<R, E>> + 'a,
        E: From<Rejected> + AsRejected + 'a,
        R: 'a,
        P: Classifier<R, E>,
    {
        match stage {
            Some(Stage::Retry) if self.retry.is_some() => {
                let attempt = move |n: u32| {
                    // The deadline counts from the retry's first attempt, which in a custom
                    // order may come after a wait for a slot: read after the retry's own
                    // reading, as in the recommended order.
                    if n == 1 && shared.deadline.is_some() {
                        let now = self.clock.now().as_nanos();
                        shared.started.store(now, Ordering::Relaxed);
                    }
                    inner()
                };
                StageFuture::Retry {
                    fut: self.retry.as_ref().map(|r| {
                        r.run_with_attempt(attempt)
                            .classify(ByRef(&self.classifier))
                    }),
                }
            }
            Some(Stage::CircuitBreaker) if self.breaker.is_some() => {
                let admitted = move || {
                    shared.cut.store(false, Ordering::Relaxed);
                    inner()
                };
                StageFuture::Breaker {
                    fut: self.breaker.as_ref().map(|cb| {
                        cb.run(admitted)
                            .classify(BreakerView(shared.cut, &self.classifier))
                    }),
                }
            }
            Some(Stage::Bulkhead) if self.bulkhead.is_some() => StageFuture::Bulkhead {
                fut: self.bulkhead.as_ref().map(|b| b.run(inner)),
            },
            Some(Stage::Timeout) if self.timeout.is_some() => StageFuture::Timeout {
                fut: async move {
                    let Some(t) = &self.timeout else {
                        unreachable!("the stage is only chosen with a timeout");
                    };
                    // Before the retry's first attempt (the timeout is outside the retry), its
                    // deadline has not begun: the timeout is the configured one.
                    let started = match shared.started.load(Ordering::Relaxed) {
                        NOT_STARTED => None,
                        nanos => Some(Ticks::from_nanos(nanos)),
                    };
                    let (out, was_cut) = self.timed(t, self.attempt_time(t, started), inner).await;
                    if was_cut {
                        shared.cut.store(true, Ordering::Relaxed);
                    }
                    out
                },
            },
            _ => StageFuture::Through { fut: inner() },
        }
    }
}

/// What the levels of a custom order share during one call.
///
/// Atomics only so that the levels can share them by reference and stay `Send`: the levels
/// run one inside the other in one task, so `Relaxed` is enough.
#[derive(Clone, Copy)]
struct Custom<'a> {
    deadline: Option<Duration>,
    /// The clock at the retry's first attempt, in nanoseconds; [`NOT_STARTED`] until then.
    started: &'a AtomicU64,
    /// Set when the timeout level's deadline cut fires, for the breaker level around it
    /// (see `attempt`); reset when the breaker admits an attempt.
    cut: &'a AtomicBool,
}

const NOT_STARTED: u64 = u64::MAX;

pin_project! {
    /// One level of a custom order: the policy at that place, or none.
    #[project = StageProj]
    enum StageFuture<A, B, Bh, Tm, Th> {
        Retry { #[pin] fut: Option<A> },
        Breaker { #[pin] fut: Option<B> },
        Bulkhead { #[pin] fut: Option<Bh> },
        Timeout { #[pin] fut: Tm },
        Through { #[pin] fut: Th },
    }
}

impl<A, B, Bh, Tm, Th, O> Future for StageFuture<A, B, Bh, Tm, Th>
where
    A: Future<Output = O>,
    B: Future<Output = O>,
    Bh: Future<Output = O>,
    Tm: Future<Output = O>,
    Th: Future<Output = O>,
{
    type Output = O;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let Some(out) = (match self.project() {
            StageProj::Retry { fut } => fut.as_pin_mut().map(|f| f.poll(cx)),
            StageProj::Breaker { fut } => fut.as_pin_mut().map(|f| f.poll(cx)),
            StageProj::Bulkhead { fut } => fut.as_pin_mut().map(|f| f.poll(cx)),
            StageProj::Timeout { fut } => Some(fut.poll(cx)),
            StageProj::Through { fut } => Some(fut.poll(cx)),
        }) else {
            unreachable!("a stage is only chosen with its policy");
        };
        out
    }
}

/// The breaker's classifier in a custom order: the pipeline's, except for an attempt the
/// deadline cut short.
struct BreakerView<'a, Cl>(&'a AtomicBool, &'a Cl);

impl<R, E, Cl: Classifier<R, E>> Classifier<R, E> for BreakerView<'_, Cl> {
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        if self.0.load(Ordering::Relaxed) {
            return Outcome::Ignore;
        }
        self.1.classify(result)
    }
}
