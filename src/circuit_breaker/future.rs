//! The futures returned by [`CircuitBreaker`](super::CircuitBreaker) and
//! [`CircuitBreakerService`](super::CircuitBreakerService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::permit::{CallPermit, Permit};
use crate::classify::{Classifier, DefaultClassifier};
use crate::error::Rejected;

/// The future returned by [`CircuitBreaker::run`](super::CircuitBreaker::run): a
/// [`ResponseFuture`] holding a permit borrowed from the breaker.
pub type RunFuture<'a, F, C, Cl = DefaultClassifier> = ResponseFuture<F, CallPermit<'a, C>, Cl>;

pin_project! {
    /// A call through a circuit breaker: resolves to the call's own result, recording its
    /// classified outcome, or to `Err(E::from(Rejected::CircuitOpen(..)))` when the breaker
    /// refused it (the call was then never made).
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
    /// // `run` returns a `RunFuture`, a `ResponseFuture` borrowing a permit.
    /// let call = breaker.run(|| async { Ok::<_, Rejected>("pong") });
    /// assert_eq!(call.await, Ok("pong"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "tokio"))] fn main() {}
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, P, Cl = DefaultClassifier> {
        #[pin]
        inner: Option<F>,
        permit: Option<P>,
        rejected: Option<Rejected>,
        classifier: Cl,
    }
}

impl<F, P, Cl> ResponseFuture<F, P, Cl> {
    pub(crate) fn admitted(inner: F, permit: P, classifier: Cl) -> Self {
        ResponseFuture {
            inner: Some(inner),
            permit: Some(permit),
            rejected: None,
            classifier,
        }
    }

    pub(crate) fn rejected(rejected: Rejected, classifier: Cl) -> Self {
        ResponseFuture {
            inner: None,
            permit: None,
            rejected: Some(rejected),
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
    /// # #[cfg(all(feature = "tokio"))]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), palisade::ConfigError> {
    /// let breaker = CircuitBreaker::new(CircuitBreaker::builder().build()?);
    /// let out: Result<(), palisade::Error<std::io::Error>> =
    ///     breaker.run(|| async { Ok(()) }).classify(AllErrors).await;
    /// assert!(out.is_ok());
    /// # Ok(())
    /// # }
    /// # #[cfg(not(all(feature = "tokio")))] fn main() {}
    /// ```
    pub fn classify<Cl2>(self, classifier: Cl2) -> ResponseFuture<F, P, Cl2> {
        ResponseFuture {
            inner: self.inner,
            permit: self.permit,
            rejected: self.rejected,
            classifier,
        }
    }

    /// Whether the breaker refused this call.
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
        self.rejected.is_some()
    }
}

impl<F, P, Cl, T, E> Future for ResponseFuture<F, P, Cl>
where
    F: Future<Output = Result<T, E>>,
    P: Permit,
    Cl: Classifier<T, E>,
    E: From<Rejected>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(rejected) = this.rejected.take() {
            return Poll::Ready(Err(E::from(rejected)));
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            panic!("circuit breaker future polled after completion");
        };
        let out = ready!(inner.poll(cx));
        this.inner.set(None);
        if let Some(permit) = this.permit.take() {
            permit.record(this.classifier.classify(&out));
        }
        Poll::Ready(out)
    }
}

impl<F, P: std::fmt::Debug, Cl> std::fmt::Debug for ResponseFuture<F, P, Cl> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("permit", &self.permit)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}
