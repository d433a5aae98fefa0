//! The futures of a circuit breaker: [`RunFuture`] from
//! [`CircuitBreaker::run`](super::CircuitBreaker::run) and
//! [`run_once`](super::CircuitBreaker::run_once), and, with the `tower` feature, [`ResponseFuture`]
//! from [`CircuitBreakerService`](super::CircuitBreakerService).
//!
//! Both are one call in one of three states: admitted (the call's future and its permit,
//! together), refused (the rejection, the call never made), or done. The permit leaves the
//! admitted state exactly once: recorded when the call finishes, or released unrecorded when
//! the future is dropped first, which counts as nothing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

#[cfg(feature = "tower")]
use super::permit::OwnedCallPermit;
use super::permit::{CallPermit, Permit};
use crate::classify::{Classifier, DefaultClassifier};
use crate::clock::Clock;
#[cfg(feature = "tower")]
use crate::clock::DefaultClock;
use crate::error::Rejected;

pin_project! {
    /// One call through the breaker, shared by both surfaces' futures.
    ///
    /// When the future is dropped while `Called`, the call's future and its permit are
    /// dropped in either order: an unrecorded permit counts as nothing, so the breaker sees
    /// the same either way, and a panic in the call's destructor still drops the permit.
    #[project = CallProj]
    #[project_replace = CallReplace]
    enum Call<F, P> {
        Called {
            #[pin]
            fut: F,
            permit: P,
        },
        Rejected {
            error: Rejected,
        },
        Done,
    }
}

impl<F, P> Call<F, P> {
    // Only the tower path builds a call from one `Result` (see `ResponseFuture::new`).
    #[cfg(feature = "tower")]
    fn new(admission: Result<(F, P), Rejected>) -> Self {
        match admission {
            Ok((fut, permit)) => Call::Called { fut, permit },
            Err(error) => Call::Rejected { error },
        }
    }

    fn is_rejected(&self) -> bool {
        matches!(self, Call::Rejected { .. })
    }

    /// The refusal, which completes without awaiting anything: it takes a unit of tokio's
    /// budget first, so a loop over refused calls still yields (see `crate::coop`). Out of
    /// line, so the admitted call's poll stays small (inlined, the budget's bookkeeping added
    /// 48 instructions to `breaker_layer`'s happy path by callgrind).
    ///
    /// It hands back the rejection alone, and the caller's `Result` is built inline: built
    /// here, it came back through memory that the admitted call's output then shared, and was
    /// moved on in 16-byte loads straddling two 16-byte stores, which the CPU cannot forward
    /// from its store buffer (breaker_run on the icount driver: 11.8 -> 8.0 ns a call).
    #[cold]
    #[inline(never)]
    fn refuse(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Rejected> {
        ready!(crate::coop::poll_proceed(cx)).made_progress();
        let CallReplace::Rejected { error } = self.project_replace(Call::Done) else {
            unreachable!("the call was just refused");
        };
        Poll::Ready(error)
    }

    fn poll_call<T, E, Cl>(
        mut self: Pin<&mut Self>,
        classifier: &Cl,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        P: Permit,
        Cl: Classifier<T, E>,
        E: From<Rejected>,
    {
        match self.as_mut().project() {
            CallProj::Called { fut, .. } => {
                let out = ready!(fut.poll(cx));
                // The replace drops the finished call's future in place and hands its permit
                // out: the call is over before any user code (the classifier, a listener)
                // runs, and if that code panics the permit drops unrecorded, counting nothing.
                let CallReplace::Called { permit, .. } = self.project_replace(Call::Done) else {
                    unreachable!("the call was just polled");
                };
                permit.record(classifier.classify(&out));
                Poll::Ready(out)
            }
            CallProj::Rejected { .. } => self.refuse(cx).map(|error| Err(E::from(error))),
            CallProj::Done => panic!("circuit breaker future polled after completion"),
        }
    }
}

impl<F, P: fmt::Debug> fmt::Debug for Call<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Called { permit, .. } => f
                .debug_struct("Called")
                .field("permit", permit)
                .finish_non_exhaustive(),
            Call::Rejected { error } => f.debug_struct("Rejected").field("error", error).finish(),
            Call::Done => f.write_str("Done"),
        }
    }
}

pin_project! {
    /// The future returned by [`CircuitBreaker::run`](super::CircuitBreaker::run) and
    /// [`run_once`](super::CircuitBreaker::run_once): resolves to the call's own result, recording
    /// its classified outcome, or to `Err(E::from(Rejected::CircuitOpen(..)))` when the
    /// breaker refused it (the call was then never made). It holds a permit borrowed from the
    /// breaker.
    ///
    /// Dropped before completion, it releases its permit and counts nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, circuit_breaker::CircuitBreaker};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// let call = breaker.run(|| async { Ok::<_, Rejected>("pong") });
    /// assert_eq!(call.await, Ok("pong"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RunFuture<'a, F, C, Cl = DefaultClassifier>
    where
        C: Clock,
    {
        #[pin]
        call: Call<F, CallPermit<'a, C>>,
        classifier: Cl,
    }
}

// The admitted and the refused future are built apart, the refused one out of line. Built by
// one function from a `Result`, the two states' stores were merged into stores of every word
// of the state, the rejection's words too, so the admitted call's output sat among 8-byte
// stores that the 16-byte loads moving it out after `finish` could not be forwarded from
// (breaker_run on the icount driver: 7.3 ns a call before the states were one enum, 8.6
// after, 7.9 with this; 163 -> 180 instructions).
impl<'a, F, C: Clock, Cl> RunFuture<'a, F, C, Cl> {
    #[inline]
    pub(super) fn called(fut: F, permit: CallPermit<'a, C>, classifier: Cl) -> Self {
        RunFuture {
            call: Call::Called { fut, permit },
            classifier,
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn refused(error: Rejected, classifier: Cl) -> Self {
        RunFuture {
            call: Call::Rejected { error },
            classifier,
        }
    }

    /// Classifies this call's result with `classifier` instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{AllErrors, circuit_breaker::CircuitBreaker};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// let out: Result<(), palisade::Error<std::io::Error>> =
    ///     breaker.run(|| async { Ok(()) }).classify(AllErrors).await;
    /// assert!(out.is_ok());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> RunFuture<'a, F, C, Cl2> {
        RunFuture {
            call: self.call,
            classifier,
        }
    }

    /// Whether the breaker refused this call (until the future has been polled to its end).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, circuit_breaker::CircuitBreaker};
    ///
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// breaker.isolate();
    /// let call = breaker.run(|| async { Ok::<(), Rejected>(()) });
    /// assert!(call.is_rejected(), "decided before the first poll");
    /// # Ok::<(), palisade::ConfigError>(())
    /// ```
    pub fn is_rejected(&self) -> bool {
        self.call.is_rejected()
    }
}

impl<F, C, Cl, T, E> Future for RunFuture<'_, F, C, Cl>
where
    F: Future<Output = Result<T, E>>,
    C: Clock,
    Cl: Classifier<T, E>,
    E: From<Rejected>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.call.poll_call(this.classifier, cx)
    }
}

impl<F, C: Clock, Cl> fmt::Debug for RunFuture<'_, F, C, Cl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunFuture")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tower")]
pin_project! {
    /// The response future of [`CircuitBreakerService`](super::CircuitBreakerService): the
    /// inner call, recording its classified outcome, or the rejection when the breaker refused
    /// it (the inner service was then not called). It holds an owned permit, as a tower
    /// response future must be `'static`.
    ///
    /// Dropped before completion, it releases its permit and counts nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::{Rejected, circuit_breaker::CircuitBreaker};
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// breaker.isolate();
    /// let mut svc = breaker.layer().layer(tower::service_fn(|x: u8| async move { Ok::<_, BoxError>(x) }));
    /// let response = svc.ready().await?.call(1);
    /// assert!(response.is_rejected(), "the inner service was not called");
    /// assert!(response.await.is_err());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, C = DefaultClock, Cl = DefaultClassifier>
    where
        C: Clock,
    {
        #[pin]
        call: Call<F, OwnedCallPermit<C>>,
        classifier: Cl,
    }
}

#[cfg(feature = "tower")]
impl<F, C: Clock, Cl> ResponseFuture<F, C, Cl> {
    // From one `Result`, unlike `RunFuture`: built apart as that one is, the tower path got
    // slower (breaker_layer: 17 -> 22.5 ns a call on the icount driver).
    pub(super) fn new(
        admission: Result<(F, OwnedCallPermit<C>), Rejected>,
        classifier: Cl,
    ) -> Self {
        ResponseFuture {
            call: Call::new(admission),
            classifier,
        }
    }

    /// Whether the breaker refused this call (until the future has been polled to its end).
    ///
    /// # Examples
    ///
    /// ```
    /// use palisade::circuit_breaker::CircuitBreaker;
    /// use tower::{BoxError, Layer, Service, ServiceExt};
    ///
    /// # #[cfg(feature = "tokio")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// let mut svc = breaker.layer().layer(tower::service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    /// assert!(!svc.ready().await?.call(()).is_rejected(), "a closed breaker admits it");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    pub fn is_rejected(&self) -> bool {
        self.call.is_rejected()
    }
}

#[cfg(feature = "tower")]
impl<F, C, Cl, T, E> Future for ResponseFuture<F, C, Cl>
where
    F: Future<Output = Result<T, E>>,
    C: Clock,
    Cl: Classifier<T, E>,
    E: From<Rejected>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.call.poll_call(this.classifier, cx)
    }
}

#[cfg(feature = "tower")]
impl<F, C: Clock, Cl> fmt::Debug for ResponseFuture<F, C, Cl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}
