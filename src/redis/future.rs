//! The futures of the fleet-wide limits.
//!
//! A decision is a round trip through the redis crate, whose own futures are boxed; the
//! admission future keeps that one box (named here, so it can be stored and its `Send`
//! checked), and the run future adds none.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::error::Rejected;

/// An admission decision for one call: `G` is what holds the admission (`()` for a rate
/// limit, a [`SessionLease`](super::SessionLease) for a session limit).
///
/// Dropped before it resolves: a round trip in flight is abandoned (counted as nothing
/// against the link), a turn taken while waiting is given back, a lease taken in Redis is
/// released; a rate decision the server had already made stays made (see the
/// [module docs](super#cancellation)).
///
/// # Examples
///
/// ```
/// use palisade::redis::future::Admit;
/// fn is_send<T: Send + 'static>() {}
/// is_send::<Admit<()>>();
/// is_send::<Admit<palisade::redis::SessionLease>>();
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Admit<G> {
    fut: Pin<Box<dyn Future<Output = Result<G, Rejected>> + Send>>,
}

impl<G> Admit<G> {
    pub(crate) fn new(fut: impl Future<Output = Result<G, Rejected>> + Send + 'static) -> Self {
        Admit { fut: Box::pin(fut) }
    }
}

impl<G> Future for Admit<G> {
    type Output = Result<G, Rejected>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

impl<G> fmt::Debug for Admit<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admit").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of a fleet-wide limit's `run`: the admission, then the call, holding the
    /// admission (a session lease) until the call's future finishes or is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::redis::future::RunFuture;
    /// use std::future::Ready;
    /// fn is_send<T: Send>() {}
    /// is_send::<RunFuture<fn() -> Ready<Result<(), palisade::Rejected>>, Ready<Result<(), palisade::Rejected>>, palisade::redis::SessionLease>>();
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RunFuture<M, F, G> {
        #[pin]
        state: State<M, F, G>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<M, F, G> {
        Admitting { admit: Admit<G>, make: Option<M> },
        // The call's future first: dropped before the guard, so a lease outlives the call.
        Running { #[pin] fut: F, guard: G },
        Done,
    }
}

impl<M, F, G> RunFuture<M, F, G> {
    pub(crate) fn new(admit: Admit<G>, make: M) -> Self {
        RunFuture {
            state: State::Admitting {
                admit,
                make: Some(make),
            },
        }
    }
}

impl<M, F, G> fmt::Debug for RunFuture<M, F, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunFuture").finish_non_exhaustive()
    }
}

impl<M, F, G, R, E> Future for RunFuture<M, F, G>
where
    M: FnOnce() -> F,
    F: Future<Output = Result<R, E>>,
    E: From<Rejected>,
{
    type Output = Result<R, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Admitting { admit, make } => {
                    let admitted = ready!(Pin::new(admit).poll(cx));
                    let make = make.take().expect("polled after completion");
                    match admitted {
                        Ok(guard) => {
                            let fut = make();
                            self.as_mut()
                                .project()
                                .state
                                .set(State::Running { fut, guard });
                        }
                        Err(rejected) => {
                            self.as_mut().project().state.set(State::Done);
                            return Poll::Ready(Err(E::from(rejected)));
                        }
                    }
                }
                StateProj::Running { fut, .. } => {
                    let out = ready!(fut.poll(cx));
                    // Ends the call before the guard: its lease is released now.
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Done => panic!("RunFuture polled after completion"),
            }
        }
    }
}
