//! Server-side load shedding: rejections become `503 Service Unavailable` + `Retry-After`.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::{AsRejected, Rejected};

/// Turns the errors of the services under it into responses, so a server's policies shed
/// load in the terms clients and load balancers understand:
///
/// - a [`Rejected`] (bulkhead full, circuit open, timeout) becomes `503 Service Unavailable`
///   with `Retry-After`: the rejection's own [`retry_after`](Rejected::retry_after) where it
///   has one (an open breaker knows when it will probe), else the layer's default (1 s),
///   in whole seconds rounded up;
/// - any other error becomes `500 Internal Server Error`.
///
/// Its error type is `Infallible`, as axum's `Router::layer` and hyper require. Put it
/// outermost, above [`timeout.layer()`](crate::timeout::Timeout::layer) and
/// [`bulkhead.layer()`](crate::bulkhead::Bulkhead::layer), with a
/// [`LiftLayer`](crate::LiftLayer) innermost when the handlers' error type cannot hold a
/// rejection (axum's is `Infallible`). Responses get an empty body (`B::default()`).
///
/// A readiness error from the inner service is kept and answered by the next `call`, so the
/// server stays up.
///
/// # Examples
///
/// ```
/// use palisade::http::ShedLayer;
/// use palisade::{Error, LiftLayer, bulkhead::Bulkhead};
/// use std::convert::Infallible;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[cfg(feature = "tokio")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bulkhead = Bulkhead::new(Bulkhead::builder().max_concurrent(1).build()?);
/// let held = bulkhead.try_acquire()?; // the only slot is busy
/// let mut server = ServiceBuilder::new()
///     .layer(ShedLayer::new())
///     .layer(bulkhead.layer())
///     .layer(LiftLayer)
///     .service_fn(|_req: http::Request<()>| async {
///         Ok::<_, Infallible>(http::Response::new(String::from("hello")))
///     });
/// let resp = server.ready().await?.call(http::Request::new(())).await?;
/// assert_eq!(resp.status(), 503);
/// assert_eq!(resp.headers()["retry-after"], "1");
/// # drop(held);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "tokio"))] fn main() {}
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ShedLayer {
    retry_after: Duration,
}

impl Default for ShedLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ShedLayer {
    /// A layer whose `Retry-After` is 1 s when a rejection does not say.
    pub const fn new() -> Self {
        ShedLayer {
            retry_after: Duration::from_secs(1),
        }
    }

    /// The `Retry-After` for rejections that do not carry one (bulkhead full, timeout).
    /// Sent in whole seconds, rounded up; zero sends `0` ("retry now").
    pub const fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
        self
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = ShedService<S>;

    fn layer(&self, inner: S) -> ShedService<S> {
        ShedService {
            inner,
            retry_after: self.retry_after,
            not_ready: None,
        }
    }
}

/// The service of a [`ShedLayer`].
pub struct ShedService<S> {
    inner: S,
    retry_after: Duration,
    /// A readiness error, already graded (`Some(None)`: not a rejection), for the next call.
    not_ready: Option<Option<Rejected>>,
}

impl<S: Clone> Clone for ShedService<S> {
    fn clone(&self) -> Self {
        // A kept readiness error belongs to this handle's next call, not to a clone.
        ShedService {
            inner: self.inner.clone(),
            retry_after: self.retry_after,
            not_ready: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ShedService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedService")
            .field("inner", &self.inner)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl<S> ShedService<S> {
    /// Wraps `inner` (what [`ShedLayer::layer`](Layer::layer) does).
    pub fn new(inner: S, layer: ShedLayer) -> Self {
        layer.layer(inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The response for an error: 503 + `Retry-After` for rejections, 500 otherwise.
fn answer<B: Default>(error: Option<&Rejected>, default_retry_after: Duration) -> Response<B> {
    let mut resp = Response::new(B::default());
    match error {
        Some(rejected) => {
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            let after = rejected.retry_after().unwrap_or(default_retry_after);
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        None => *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    resp
}

impl<S, Req, B> Service<Req> for ShedService<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: AsRejected,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_none() {
            if let Err(e) = ready!(self.inner.poll_ready(cx)) {
                self.not_ready = Some(e.as_rejected().copied());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let state = match self.not_ready.take() {
            Some(graded) => Answer::Now { graded },
            None => Answer::Inner {
                fut: self.inner.call(req),
            },
        };
        ShedFuture {
            state,
            retry_after: self.retry_after,
        }
    }
}

pin_project! {
    /// The response future of a [`ShedService`].
    pub struct ShedFuture<F> {
        #[pin]
        state: Answer<F>,
        retry_after: Duration,
    }
}

pin_project! {
    #[project = AnswerProj]
    enum Answer<F> {
        Inner { #[pin] fut: F },
        Now { graded: Option<Rejected> },
    }
}

impl<F> fmt::Debug for ShedFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedFuture").finish_non_exhaustive()
    }
}

impl<F, E, B> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: AsRejected,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let graded = match this.state.project() {
            AnswerProj::Inner { fut } => match ready!(fut.poll(cx)) {
                Ok(resp) => return Poll::Ready(Ok(resp)),
                Err(e) => e.as_rejected().copied(),
            },
            AnswerProj::Now { graded } => *graded,
        };
        Poll::Ready(Ok(answer(graded.as_ref(), *this.retry_after)))
    }
}
