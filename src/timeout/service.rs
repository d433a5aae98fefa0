use std::task::{Context, Poll};

use tower::Service;

use super::future::ResponseFuture;
use super::{ConfiguredDuration, RequestDuration, Timeout};
use crate::error::Rejected;
use crate::timer::{DefaultTimer, Timer};

/// A tower service whose response futures time out; made by
/// [`TimeoutLayer`](super::TimeoutLayer).
///
/// Readiness passes through untouched: the timeout covers the response future only.
///
/// # Examples
///
/// ```
/// use palisade::timeout::{Timeout, TimeoutConfig, TimeoutService};
/// use std::time::Duration;
///
/// let timeout = Timeout::new(TimeoutConfig::builder().duration(Duration::from_secs(1)).build()?);
/// let svc = TimeoutService::new(
///     tower::service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }),
///     timeout,
///     palisade::timeout::ConfiguredDuration,
/// );
/// # let _ = svc;
/// # Ok::<(), palisade::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TimeoutService<S, T = DefaultTimer, D = ConfiguredDuration> {
    inner: S,
    timeout: Timeout<T>,
    per_request: D,
}

impl<S, T, D> TimeoutService<S, T, D> {
    /// Wraps `inner`; `per_request` chooses each request's duration.
    pub fn new(inner: S, timeout: Timeout<T>, per_request: D) -> Self {
        TimeoutService {
            inner,
            timeout,
            per_request,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, T, D> Service<Req> for TimeoutService<S, T, D>
where
    S: Service<Req>,
    S::Error: From<Rejected>,
    T: Timer + Clone,
    D: RequestDuration<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, T>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // The configured duration is the most any request gets: a duration taken from the
        // request (a client's deadline header) may shorten it, never lengthen it.
        let duration = self
            .per_request
            .duration_for(&req)
            .map_or(self.timeout.duration, |d| d.min(self.timeout.duration));
        self.timeout.run_once_for(self.inner.call(req), duration)
    }
}
