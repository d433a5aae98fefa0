//! Lifting a service's error into [`Error<E>`], so policies above it can add rejections to an
//! error type that cannot implement `From<Rejected>` itself.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::Error;

/// Wraps a service so its errors become [`Error::Inner`]; put it innermost.
///
/// # Examples
///
/// ```
/// use palisade::{Error, LiftLayer, timeout::{Timeout, TimeoutConfig}};
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[cfg(all(feature = "tokio", feature = "tower"))]
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?);
/// // std::io::Error cannot implement From<Rejected> (orphan rule): lift it.
/// let mut svc = ServiceBuilder::new()
///     .layer(timeout.layer())
///     .layer(LiftLayer)
///     .service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("reset")) });
/// let err: Error<std::io::Error> = svc.ready().await?.call(()).await.unwrap_err();
/// assert!(matches!(err, Error::Inner(_)));
/// # Ok(())
/// # }
/// # #[cfg(not(all(feature = "tokio", feature = "tower")))] fn main() {}
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LiftLayer;

impl<S> Layer<S> for LiftLayer {
    type Service = Lift<S>;

    fn layer(&self, inner: S) -> Lift<S> {
        Lift { inner }
    }
}

/// A service whose errors are wrapped in [`Error::Inner`]; made by [`LiftLayer`].
#[derive(Debug, Clone)]
pub struct Lift<S> {
    inner: S,
}

impl<S> Lift<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Lift { inner }
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for Lift<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = LiftFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        LiftFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`Lift`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct LiftFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for LiftFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(Error::Inner))
    }
}
